/* tests/unit/test_safetensors.c: safetensors files and sets against the fixtures in
 * tests/data/models and tests/data/stories260K/hf, corrupt headers built in memory, truncated
 * copies of real files, and allocation failures. Expected values were read with python3's
 * json/struct modules from the same files. */
#include "testutil.h"

#include "formats/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Reads element i of a little-endian float tensor of any float dtype (unaligned-safe). */
static float tensor_f(const st_tensor *t, size_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case ST_BF16: return lm_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    case ST_F16: return lm_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    default: fail_msg("not a float tensor"); return 0;
    }
}

static uint32_t tensor_u32(const st_tensor *t, size_t i) {
    uint32_t v;
    memcpy(&v, (const uint8_t *)t->data + 4 * i, 4);
    return v;
}

static void assert_shape2(const st_tensor *t, uint64_t a, uint64_t b) {
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->shape[0], a);
    assert_int_equal(t->shape[1], b);
}

static const st_tensor *must_find(const st_set *s, const char *name) {
    const st_tensor *t = st_find(s, name);
    if (!t) fail_msg("tensor %s not found", name);
    return t;
}

static void assert_sorted(const st_set *s) {
    for (uint64_t i = 1; i < s->n_tensors; i++)
        assert_true(strcmp(s->tensors[i - 1].name, s->tensors[i].name) < 0);
    for (uint64_t i = 0; i < s->n_tensors; i++)
        assert_ptr_equal(st_find(s, s->tensors[i].name), &s->tensors[i]);
}

static void test_dtypes(void **state) {
    (void)state;
    assert_int_equal(st_dtype_size(ST_F32), 4);
    assert_int_equal(st_dtype_size(ST_BF16), 2);
    assert_int_equal(st_dtype_size(ST_F64), 8);
    assert_int_equal(st_dtype_size(ST_F8_E5M2), 1);
    assert_int_equal(st_dtype_size(999), 0);
    assert_string_equal(st_dtype_name(ST_F8_E4M3), "F8_E4M3");
    assert_string_equal(st_dtype_name(ST_U64), "U64");
}

/* llama2-f32: two shards and an index. */
static void test_sharded(void **state) {
    (void)state;
    for (int mm = 0; mm < 2; mm++) {
        st_set *s = NULL;
        lm_error err = {0};
        lm_status st = st_open_dir(tu_data("models/llama2-f32"), mm == 1, &s, &err);
        if (st) fail_msg("%s", err.msg);
        assert_int_equal(s->n_files, 2);
        assert_non_null(strstr(s->paths[0], "model-00001-of-00002.safetensors"));
        assert_non_null(strstr(s->paths[1], "model-00002-of-00002.safetensors"));
        assert_int_equal(s->n_tensors, 21);
        assert_sorted(s);
        const st_tensor *t = must_find(s, "lm_head.weight");
        assert_int_equal(t->file, 1);
        assert_int_equal(t->dtype, ST_F32);
        assert_shape2(t, 512, 128);
        assert_int_equal(t->nbytes, 512 * 128 * 4);
        assert_ptr_equal(t->data, s->files[1].data + 1040);
        assert_true(tensor_f(t, 0) == 0.04737856984138489f);
        t = must_find(s, "model.embed_tokens.weight");
        assert_int_equal(t->file, 0);
        assert_true(tensor_f(t, 0) == 0.2717580497264862f);
        t = must_find(s, "model.norm.weight");
        assert_int_equal(t->file, 1);
        assert_int_equal(t->n_dims, 1);
        assert_int_equal(t->shape[0], 128);
        assert_true(tensor_f(t, 0) == 0.968940616f);
        assert_true(tensor_f(t, 1) == 1.17512178f);
        assert_true(tensor_f(t, 2) == 1.2543937f);
        assert_null(st_find(s, "model.layers.2.input_layernorm.weight"));
        assert_null(st_find(s, ""));
        assert_non_null(s->metadata);
        assert_string_equal(cJSON_GetObjectItem(s->metadata, "format")->valuestring, "pt");
        st_close(s);
    }
}

/* MLX files: data section at an odd offset, blocks not in key order. */
static void test_mlx_unaligned(void **state) {
    (void)state;
    st_set *s = NULL;
    lm_error err = {0};
    if (st_open_dir(tu_data("models/llama3-mlx-q4"), true, &s, &err)) fail_msg("%s", err.msg);
    assert_int_equal(s->n_files, 1);
    assert_int_equal(s->n_tensors, 73);
    assert_sorted(s);
    const st_tensor *t = must_find(s, "model.layers.0.self_attn.q_proj.weight");
    assert_int_equal(t->dtype, ST_U32);
    assert_shape2(t, 128, 16);
    assert_ptr_equal(t->data, s->files[0].data + 159253);
    assert_int_equal((uintptr_t)t->data % 4, 1);
    assert_int_equal(tensor_u32(t, 0), 3994432452u);
    assert_int_equal(tensor_u32(t, 1), 1734694010u);
    t = must_find(s, "model.layers.0.self_attn.q_proj.scales");
    assert_int_equal(t->dtype, ST_BF16);
    assert_shape2(t, 128, 2);
    t = must_find(s, "model.norm.weight");
    assert_int_equal(t->dtype, ST_BF16);
    assert_true(tensor_f(t, 0) == 1.265625f);
    assert_true(tensor_f(t, 1) == 1.1015625f);
    assert_true(tensor_f(t, 2) == 1.3046875f);
    assert_null(st_find(s, "lm_head.weight")); /* tied */
    assert_string_equal(cJSON_GetObjectItem(s->metadata, "format")->valuestring, "mlx");
    st_close(s);

    if (st_open_dir(tu_data("models/llama2-mlx-oddbits"), false, &s, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(s->n_tensors, 51);
    t = must_find(s, "model.layers.0.mlp.down_proj.weight");
    assert_int_equal(t->dtype, ST_F16);
    assert_shape2(t, 128, 256);
    assert_null(st_find(s, "model.layers.0.mlp.down_proj.scales"));
    {
        uint16_t h;
        memcpy(&h, t->data, 2);
        assert_int_equal(h, 0xaba6);
    }
    t = must_find(s, "model.layers.0.self_attn.q_proj.weight");
    assert_shape2(t, 128, 8); /* 2 bits: 128 cols / 16 per u32 */
    assert_int_equal(tensor_u32(t, 0), 3467372953u);
    t = must_find(s, "model.norm.weight");
    assert_true(tensor_f(t, 0) == 0.96875f);
    assert_true(tensor_f(t, 1) == 1.17480469f);
    st_close(s);
}

typedef struct fixture {
    const char *dir;
    uint64_t n_tensors;
    uint32_t norm_dtype;
    float norm0;
} fixture;

static void test_all_fixtures(void **state) {
    (void)state;
    static const fixture F[] = {
        {"models/llama2-bf16", 21, ST_BF16, 0.96875f},
        {"models/llama2-f16", 21, ST_F16, 0.96875f},
        {"models/llama2-f32", 21, ST_F32, 0.968940616f},
        {"models/llama2-mlx-oddbits", 51, ST_F16, 0.96875f},
        {"models/llama3-bf16", 29, ST_BF16, 1.265625f},
        {"models/llama3-f32", 29, ST_F32, 1.26943099f},
        {"models/llama3-mlx-q4", 73, ST_BF16, 1.265625f},
        {"models/llama3-mlx-q8", 73, ST_BF16, 1.265625f},
        {"models/mistral-bf16", 21, ST_BF16, 1.234375f},
        {"models/mistral-f32", 21, ST_F32, 1.23226404f},
        {"models/mistral-mlx-mixed46", 53, ST_BF16, 1.234375f},
        {"models/phi3-bf16", 15, ST_BF16, 1.3515625f},
        {"models/phi3-f32", 15, ST_F32, 1.34921539f},
        {"models/qwen2-bf16", 27, ST_BF16, 0.97265625f},
        {"models/qwen2-f32", 27, ST_F32, 0.971851051f},
        {"models/qwen2-mlx-q4", 59, ST_F16, 0.971679688f},
        {"stories260K/hf", 47, ST_F32, 2.45830894f},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(F); i++) {
        st_set *s = NULL;
        lm_error err = {0};
        if (st_open_dir(tu_data(F[i].dir), true, &s, &err)) fail_msg("%s: %s", F[i].dir, err.msg);
        assert_int_equal(s->n_tensors, F[i].n_tensors);
        assert_sorted(s);
        const st_tensor *t = must_find(s, "model.norm.weight");
        assert_int_equal(t->dtype, F[i].norm_dtype);
        if (tensor_f(t, 0) != F[i].norm0) fail_msg("%s: norm[0] %.9g", F[i].dir, tensor_f(t, 0));
        const st_tensor *e = must_find(s, "model.embed_tokens.weight");
        assert_int_equal(e->shape[0], 512);
        st_close(s);
    }
    /* phi3's fused projections */
    st_set *s = NULL;
    lm_error err = {0};
    if (st_open_dir(tu_data("models/phi3-f32"), true, &s, &err)) fail_msg("%s", err.msg);
    assert_shape2(must_find(s, "model.layers.0.self_attn.qkv_proj.weight"), 128 + 2 * 64, 128);
    assert_shape2(must_find(s, "model.layers.1.mlp.gate_up_proj.weight"), 512, 128);
    st_close(s);
    /* qwen2 biases */
    if (st_open_file(tu_data("models/qwen2-f32/model.safetensors"), false, &s, &err))
        fail_msg("%s", err.msg);
    const st_tensor *b = must_find(s, "model.layers.0.self_attn.q_proj.bias");
    assert_int_equal(b->n_dims, 1);
    assert_int_equal(b->shape[0], 128);
    assert_true(tensor_f(b, 0) == 0.07774458080530167f);
    st_close(s);
    /* stories260K */
    if (st_open_file(tu_data("stories260K/hf/model.safetensors"), true, &s, &err))
        fail_msg("%s", err.msg);
    assert_shape2(must_find(s, "model.embed_tokens.weight"), 512, 64);
    assert_true(tensor_f(must_find(s, "model.embed_tokens.weight"), 0) == -0.29474878311157227f);
    st_close(s);
}

/* ---- corrupt inputs built in memory ---- */

/* 8-byte length + header + data_len bytes of data (value i & 0xff). */
static uint8_t *make_st(const char *header, size_t data_len, size_t *size) {
    size_t n = strlen(header);
    *size = 8 + n + data_len;
    uint8_t *b = malloc(*size);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (uint8_t)i;
    return b;
}

static void expect_bad(const char *header, size_t data_len, const char *piece1,
                       const char *piece2) {
    size_t size;
    uint8_t *b = make_st(header, data_len, &size);
    st_set *s = (st_set *)1;
    lm_error err = {0};
    lm_status st = st_parse(b, size, "bad.safetensors", &s, &err);
    if (st != LM_ERR_FORMAT) fail_msg("expected FORMAT for %s, got %d (%s)", header, st, err.msg);
    assert_null(s);
    assert_int_equal(err.code, LM_ERR_FORMAT);
    if (!strstr(err.msg, "bad.safetensors") || !strstr(err.msg, piece1) ||
        (piece2 && !strstr(err.msg, piece2)))
        fail_msg("message '%s' lacks '%s' / '%s'", err.msg, piece1, piece2 ? piece2 : "");
    free(b);
}

static void test_parse_ok(void **state) {
    (void)state;
    size_t size;
    uint8_t *b = make_st("{\"b\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[8,14]},"
                         "\"a\":{\"dtype\":\"I32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
                         "\"z\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[14,14]},"
                         "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[14,22]},"
                         "\"__metadata__\":{\"k\":\"v\"}}  ",
                         22, &size);
    st_set *s = NULL;
    lm_error err = {0};
    if (st_parse(b, size, "ok.safetensors", &s, &err)) fail_msg("%s", err.msg);
    assert_int_equal(s->n_tensors, 4);
    assert_null(s->files);
    assert_string_equal(s->tensors[0].name, "a");
    assert_string_equal(s->tensors[1].name, "b");
    assert_string_equal(s->tensors[2].name, "s");
    assert_string_equal(s->tensors[3].name, "z");
    const st_tensor *t = must_find(s, "b");
    assert_int_equal(t->dtype, ST_F16);
    assert_ptr_equal(t->data, b + size - 22 + 8);
    assert_int_equal(t->nbytes, 6);
    assert_int_equal(must_find(s, "s")->n_dims, 0);
    assert_int_equal(must_find(s, "z")->nbytes, 0);
    assert_string_equal(cJSON_GetObjectItem(s->metadata, "k")->valuestring, "v");
    st_close(s);
    free(b);
    st_close(NULL);
}

static void test_parse_bad(void **state) {
    (void)state;
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, "invalid JSON",
               NULL);
    expect_bad("[1,2]", 0, "expected a JSON object", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "unknown dtype 'F31'", "'a'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]",
               "non-negative");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,10]}}", 10,
               "shape[0]", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
               4, "9 dims", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
               "data_offsets", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
               "begin is after end", NULL);
    expect_bad("{\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[128],"
               "\"data_offsets\":[0,254]}}",
               256, "tensor 'model.norm.weight': shape [128] x BF16 is 256 bytes but "
                    "data_offsets span 254", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
               "data ends at byte 16, data section has 12", "'a'");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "'b'", "overlaps tensor 'a'");
    expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],"
               "\"data_offsets\":[0,0]}}", 0, "overflows", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
               16, "'a' appears twice", NULL);
    expect_bad("{\"a\":7}", 0, "'a'", "expected an object");
    expect_bad("{\"__metadata__\":[1]}", 0, "__metadata__", NULL);
    expect_bad("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype", NULL);
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "shape", NULL);

    /* header length problems */
    uint8_t small[7] = {0};
    st_set *s = NULL;
    lm_error err = {0};
    assert_int_equal(st_parse(small, sizeof small, "x.safetensors", &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "too short"));
    uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(st_parse(big, sizeof big, "x.safetensors", &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "x.safetensors: header length 4294967295 exceeds the file "
                                    "size 16"));
    uint8_t huge[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(st_parse(huge, sizeof huge, "x.safetensors", &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "header length 18446744073709551615 exceeds"));
    uint8_t zero[9] = {1, 0, 0, 0, 0, 0, 0, 0, ' '};
    assert_int_equal(st_parse(zero, sizeof zero, "x.safetensors", &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "header length 1 is not between"));
    assert_null(s);
}

/* Truncated copies of a real shard, at offsets inside the length, the header and the data. */
static void test_truncated(void **state) {
    (void)state;
    size_t len;
    char *full = tu_read(tu_data("models/llama2-f32/model-00002-of-00002.safetensors"), &len);
    assert_int_equal(len, 854544);
    static const struct {
        size_t at;
        const char *piece;
    } cut[] = {
        {0, "too short"},      {5, "too short"},         {8, "exceeds the file size"},
        {500, "exceeds the file size"}, {1039, "exceeds the file size"},
        {1040, "data ends at byte"}, {1044, "data ends at byte"}, {854543, "data ends at byte"},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(cut); i++) {
        const char *p = tu_write_temp(full, cut[i].at, ".safetensors");
        st_set *s = (st_set *)1;
        lm_error err = {0};
        lm_status st = st_open_file(p, i % 2 == 0, &s, &err);
        if (st != LM_ERR_FORMAT || !strstr(err.msg, cut[i].piece) || !strstr(err.msg, p))
            fail_msg("cut at %zu: %d %s", cut[i].at, st, err.msg);
        assert_null(s);
        unlink(p);
    }
    lm_free(full);
}

static void test_sets(void **state) {
    (void)state;
    const char *s1 = tu_data("models/llama2-f32/model-00001-of-00002.safetensors");
    const char *s2 = tu_data("models/llama2-f32/model-00002-of-00002.safetensors");
    const char *idx = tu_data("models/llama2-f32/model.safetensors.index.json");
    char dir[4096];
    st_set *s = NULL;
    lm_error err = {0};

    /* no index: model*.safetensors sorted; other .safetensors ignored */
    snprintf(dir, sizeof dir, "%s", tu_temp_dir());
    tu_copy_in(s2, dir, "model-00002-of-00002.safetensors", SIZE_MAX);
    tu_copy_in(s1, dir, "model-00001-of-00002.safetensors", SIZE_MAX);
    tu_copy_in(tu_data("models/qwen2-f32/model.safetensors"), dir, "adapter.safetensors",
              SIZE_MAX);
    if (st_open_dir(dir, true, &s, &err)) fail_msg("%s", err.msg);
    assert_int_equal(s->n_files, 2);
    assert_non_null(strstr(s->paths[0], "00001"));
    assert_int_equal(s->n_tensors, 21);
    assert_int_equal(must_find(s, "lm_head.weight")->file, 1);
    st_close(s);

    /* the same shards with the index, shard 2 truncated: the error names the shard */
    tu_copy_in(idx, dir, "model.safetensors.index.json", SIZE_MAX);
    tu_copy_in(s2, dir, "model-00002-of-00002.safetensors", 100000);
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "model-00002-of-00002.safetensors: tensor '"));
    assert_non_null(strstr(err.msg, "data section has"));
    assert_null(s);

    /* shard named in the index is missing */
    char path[4200];
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", dir);
    unlink(path);
    assert_int_equal(st_open_dir(dir, false, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "model.safetensors.index.json"));
    assert_non_null(strstr(err.msg, "'model-00002-of-00002.safetensors', which is missing"));

    /* the index maps a tensor to the wrong shard */
    tu_copy_in(s2, dir, "model-00002-of-00002.safetensors", SIZE_MAX);
    tu_put_in(dir, "model.safetensors.index.json",
               "{\"weight_map\":{\"lm_head.weight\":\"model-00001-of-00002.safetensors\","
               "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}");
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tensor 'lm_head.weight' is not in shard "
                                    "'model-00001-of-00002.safetensors'"));
    /* a tensor of the index that no shard has */
    tu_put_in(dir, "model.safetensors.index.json",
               "{\"weight_map\":{\"nope\":\"model-00002-of-00002.safetensors\"}}");
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tensor 'nope' is not in shard"));
    /* only the shards the index names are opened */
    tu_put_in(dir, "model.safetensors.index.json",
               "{\"weight_map\":{\"model.norm.weight\":\"model-00002-of-00002.safetensors\"}}");
    if (st_open_dir(dir, true, &s, &err)) fail_msg("%s", err.msg);
    assert_int_equal(s->n_files, 1);
    assert_int_equal(s->n_tensors, 10);
    st_close(s);
    /* escaping the folder, bad JSON */
    tu_put_in(dir, "model.safetensors.index.json",
               "{\"weight_map\":{\"a\":\"../model-00002-of-00002.safetensors\"}}");
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "weight_map['a']"));
    tu_put_in(dir, "model.safetensors.index.json", "{\"weight_map\":");
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "invalid JSON"));
    tu_put_in(dir, "model.safetensors.index.json", "{\"weight_map\":[]}");
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "weight_map: expected an object"));
    tu_rm_rf(dir);

    /* a single file under another name; two such files are ambiguous; none is an error */
    snprintf(dir, sizeof dir, "%s", tu_temp_dir());
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "no .safetensors file"));
    tu_copy_in(tu_data("models/qwen2-f32/model.safetensors"), dir, "weights.safetensors",
              SIZE_MAX);
    if (st_open_dir(dir, true, &s, &err)) fail_msg("%s", err.msg);
    assert_int_equal(s->n_tensors, 27);
    st_close(s);
    tu_copy_in(tu_data("models/phi3-f32/model.safetensors"), dir, "other.safetensors", SIZE_MAX);
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "2 .safetensors files"));
    /* the same tensor in two shards */
    tu_copy_in(tu_data("models/qwen2-f32/model.safetensors"), dir, "model-a.safetensors",
              SIZE_MAX);
    tu_copy_in(tu_data("models/qwen2-f32/model.safetensors"), dir, "model-b.safetensors",
              SIZE_MAX);
    assert_int_equal(st_open_dir(dir, true, &s, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "appears twice"));
    assert_non_null(strstr(err.msg, "model-a.safetensors"));
    tu_rm_rf(dir);

    assert_int_equal(st_open_dir("/nonexistent/dir", true, &s, &err), LM_ERR_IO);
    assert_int_equal(st_open_file("/nonexistent/x.safetensors", true, &s, &err), LM_ERR_IO);
}

/* A folder, whether its data is checked, and the tensors it holds. */
typedef struct {
    const char *dir;
    bool check;
    size_t n_tensors;
} open_case;

static lm_status open_attempt(const void *arg, lm_error *err) {
    const open_case *c = arg;
    st_set *s = NULL;
    lm_status st = st_open_dir(tu_data(c->dir), c->check, &s, err);
    if (st) {
        assert_null(s);
        return st;
    }
    assert_int_equal(s->n_tensors, c->n_tensors);
    st_close(s);
    return LM_OK;
}

/* Every allocation of the loader may fail: NOMEM each time, nothing leaked (ASan checks). */
static void test_nomem(void **state) {
    (void)state;
    static const open_case cases[] = {{"models/llama2-f32", true, 21}, {"models/llama3-mlx-q4", false, 73}};
    for (size_t i = 0; i < LM_ARRAY_LEN(cases); i++)
        tu_alloc_sweep(cases[i].dir, open_attempt, &cases[i], false, 99999);
}

int main(void) {
    tu_json_use_lm_alloc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_mlx_unaligned), cmocka_unit_test(test_all_fixtures),
        cmocka_unit_test(test_parse_ok),      cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_truncated),     cmocka_unit_test(test_sets),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
