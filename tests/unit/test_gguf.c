/* tests/unit/test_gguf.c: the GGUF reader on the stories260K fixtures (every metadata value and
 * tensor the SOURCE.md describes), on llama.cpp vocab files, on files built here (v2, nested
 * arrays, every scalar type, custom alignment), and on broken input: truncations, flipped bytes
 * in the header and tensor table, bad fields, and a failure of every allocation. */
#include "testutil.h"

#include "compute/backend.h"
#include "formats/formats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define F32_PATH "stories260K/stories260K-f32.gguf"
#define Q8_PATH "stories260K/stories260K-q8_0.gguf"

/* ---- a small GGUF writer ---- */

typedef struct wb {
    uint8_t *p;
    size_t n, cap;
} wb;

static void put(wb *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_le(wb *b, uint64_t v, int n) {
    uint8_t t[8];
    for (int i = 0; i < n; i++) t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)n);
}
static void u8(wb *b, uint8_t v) { put_le(b, v, 1); }
static void u16(wb *b, uint16_t v) { put_le(b, v, 2); }
static void u32(wb *b, uint32_t v) { put_le(b, v, 4); }
static void u64(wb *b, uint64_t v) { put_le(b, v, 8); }
static void f32(wb *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u32(b, u);
}
static void f64(wb *b, double f) {
    uint64_t u;
    memcpy(&u, &f, 8);
    u64(b, u);
}
static void str(wb *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(wb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void key(wb *b, const char *k, uint32_t type) {
    str(b, k);
    u32(b, type);
}
static void tinfo(wb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset) {
    str(b, name);
    u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) u64(b, ne[i]);
    u32(b, type);
    u64(b, offset);
}
static void pad(wb *b, size_t align) {
    while (b->n % align) u8(b, 0);
}

/* The exact-size copy behind the last successful parse_buf, freed by close_buf. */
static void *g_copy;

/* Parses a copy of the bytes in a buffer of exactly their size, so ASan sees any over-read. */
static lm_status parse_buf(const void *data, size_t n, gguf_file **g, lm_error *err) {
    void *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, data, n);
    memset(err, 0, sizeof *err);
    lm_status st = gguf_parse(copy, n, "mem.gguf", g, err);
    if (st == LM_OK) {
        free(g_copy); /* left by a test that failed before close_buf */
        g_copy = copy;
    } else {
        free(copy);
    }
    return st;
}
static const uint8_t *buf_base(void) { return g_copy; }
static void close_buf(gguf_file *g) {
    gguf_close(g);
    free(g_copy);
    g_copy = NULL;
}

/* Expects parsing to fail with code and a message containing piece; returns nothing. */
static void expect_fail(const wb *b, lm_status code, const char *piece) {
    gguf_file *g = NULL;
    lm_error err;
    lm_status st = parse_buf(b->p, b->n, &g, &err);
    if (st != code || !strstr(err.msg, piece))
        fail_msg("expected %s with '%s', got %s: '%s'", lm_status_str(code), piece,
                 lm_status_str(st), err.msg);
    assert_null(g);
    assert_non_null(strstr(err.msg, "mem.gguf"));
}

/* ---- stories260K ---- */

static const char *const BLK_NAMES[9] = {"attn_norm", "attn_q", "attn_k", "attn_v",
                                         "attn_output", "ffn_norm", "ffn_gate", "ffn_down",
                                         "ffn_up"};

static void check_u32(const gguf_file *g, const char *k, uint32_t want) {
    uint32_t v = 0xdeadbeef;
    if (!gguf_get_u32(g, k, &v)) fail_msg("missing u32 %s", k);
    if (v != want) fail_msg("%s = %u, want %u", k, v, want);
}

static void check_common(const gguf_file *g, bool q8) {
    assert_int_equal(g->version, 3);
    assert_int_equal(g->alignment, 32);
    assert_int_equal(g->n_tensors, 47);
    assert_int_equal(g->n_kv, q8 ? 27 : 26);
    assert_int_equal(g->data_offset % 32, 0);

    gguf_str s;
    assert_true(gguf_get_str(g, "general.architecture", &s));
    assert_true(gguf_str_eq(s, "llama"));
    assert_true(gguf_get_str(g, "general.name", &s));
    assert_true(gguf_str_eq(s, "stories260K"));
    assert_false(gguf_str_eq(s, "stories260"));
    assert_true(gguf_get_str(g, "tokenizer.ggml.model", &s));
    assert_true(gguf_str_eq(s, "llama"));

    check_u32(g, "general.file_type", q8 ? 7 : 0);
    check_u32(g, "llama.vocab_size", 512);
    check_u32(g, "llama.context_length", 512);
    check_u32(g, "llama.embedding_length", 64);
    check_u32(g, "llama.block_count", 5);
    check_u32(g, "llama.feed_forward_length", 172);
    check_u32(g, "llama.attention.head_count", 8);
    check_u32(g, "llama.attention.head_count_kv", 4);
    check_u32(g, "llama.rope.dimension_count", 8);
    check_u32(g, "tokenizer.ggml.bos_token_id", 1);
    check_u32(g, "tokenizer.ggml.eos_token_id", 2);
    check_u32(g, "tokenizer.ggml.unknown_token_id", 0);
    if (q8) check_u32(g, "general.quantization_version", 2);

    float f = 0;
    assert_true(gguf_get_f32(g, "llama.rope.freq_base", &f));
    assert_true(f == 10000.0f);
    assert_true(gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f));
    assert_true(f == 1e-5f);
    int64_t i64 = 0;
    assert_true(gguf_get_i64(g, "llama.block_count", &i64));
    assert_int_equal(i64, 5);
    /* integers read as floats too; floats are not integers */
    assert_true(gguf_get_f32(g, "llama.block_count", &f));
    assert_true(f == 5.0f);
    assert_false(gguf_get_u32(g, "llama.rope.freq_base", &(uint32_t){0}));

    bool b = false;
    assert_true(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b));
    assert_true(b);
    assert_true(gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b));
    assert_false(b);
    assert_true(gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b));
    assert_true(b);
    assert_false(gguf_get_bool(g, "llama.block_count", &b));
    assert_false(gguf_get_str(g, "llama.block_count", &s));
    assert_false(gguf_get_u32(g, "llama.no_such_key", &(uint32_t){0}));
    assert_null(gguf_find(g, "llama"));
    assert_null(gguf_find(g, ""));
    assert_null(gguf_get_arr(g, "general.name"));

    const gguf_value *tok = gguf_get_arr(g, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->v.arr.elem_type, GGUF_STRING);
    assert_int_equal(tok->v.arr.n, 512);
    assert_non_null(tok->v.arr.items);
    assert_true(gguf_str_eq(tok->v.arr.items[0].v.s, "<unk>"));
    assert_true(gguf_str_eq(tok->v.arr.items[1].v.s, "<s>"));
    assert_true(gguf_str_eq(tok->v.arr.items[2].v.s, "</s>"));
    assert_true(gguf_str_eq(tok->v.arr.items[3].v.s, "<0x00>"));
    assert_true(gguf_str_eq(tok->v.arr.items[258].v.s, "<0xFF>"));
    for (int i = 0; i < 512; i++) assert_int_equal(tok->v.arr.items[i].type, GGUF_STRING);
    /* pieces use U+2581 as the space marker */
    bool has_marker = false;
    for (int i = 259; i < 512; i++) {
        gguf_str p = tok->v.arr.items[i].v.s;
        if (p.len >= 3 && memcmp(p.ptr, "\xe2\x96\x81", 3) == 0) has_marker = true;
    }
    assert_true(has_marker);
    double d;
    assert_false(gguf_arr_f64(tok, 0, &d)); /* strings are not numbers */

    const gguf_value *tt = gguf_get_arr(g, "tokenizer.ggml.token_type");
    assert_non_null(tt);
    assert_int_equal(tt->v.arr.elem_type, GGUF_I32);
    assert_int_equal(tt->v.arr.n, 512);
    assert_null(tt->v.arr.items);
    /* llama.cpp token types: 1 NORMAL, 2 UNKNOWN, 3 CONTROL, 6 BYTE */
    for (uint64_t i = 0; i < 512; i++) {
        int64_t want = i == 0 ? 2 : i <= 2 ? 3 : i <= 258 ? 6 : 1;
        int64_t v = -1;
        assert_true(gguf_arr_i64(tt, i, &v));
        if (v != want) fail_msg("token_type[%d] = %d, want %d", (int)i, (int)v, (int)want);
    }
    int64_t v;
    assert_false(gguf_arr_i64(tt, 512, &v));
    const gguf_value *sc = gguf_get_arr(g, "tokenizer.ggml.scores");
    assert_non_null(sc);
    assert_int_equal(sc->v.arr.elem_type, GGUF_F32);
    assert_int_equal(sc->v.arr.n, 512);
    for (uint64_t i = 0; i < 512; i++) {
        assert_true(gguf_arr_f64(sc, i, &d));
        assert_true(isfinite(d));
    }
    assert_false(gguf_arr_i64(sc, 0, &v)); /* floats are not integers */

    /* tensors, in file order: token_embd, 5 blocks of 9, output_norm; no output.weight */
    const gguf_tensor *t = &g->tensors[0];
    assert_string_equal(t->name, "token_embd.weight");
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->type, q8 ? CM_Q8_0 : CM_F32);
    assert_int_equal(t->nbytes, q8 ? 512 * 2 * 34 : 512 * 64 * 4);
    assert_ptr_equal(gguf_find_tensor(g, "token_embd.weight"), t);
    assert_null(gguf_find_tensor(g, "output.weight"));
    assert_null(gguf_find_tensor(g, "token_embd"));
    for (int l = 0; l < 5; l++) {
        for (int k = 0; k < 9; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, BLK_NAMES[k]);
            t = &g->tensors[1 + l * 9 + k];
            assert_string_equal(t->name, name);
            assert_ptr_equal(gguf_find_tensor(g, name), t);
            bool norm = k == 0 || k == 5;
            uint64_t ne0 = 64, ne1 = 1;
            if (norm) ne1 = 1;
            else if (k == 1 || k == 4) ne1 = 64;
            else if (k == 2 || k == 3) ne1 = 32;
            else if (k == 6 || k == 8) ne1 = 172;
            else { ne0 = 172; ne1 = 64; } /* ffn_down */
            assert_int_equal(t->n_dims, norm ? 1 : 2);
            assert_int_equal(t->ne[0], ne0);
            assert_int_equal(t->ne[1], ne1);
            assert_int_equal(t->ne[2], 1);
            assert_int_equal(t->ne[3], 1);
            /* q8_0 quantizes the matrices whose rows are whole blocks; ffn_down (rows of 172)
             * and the norms stay F32 */
            uint32_t want = (!q8 || norm || k == 7) ? CM_F32 : CM_Q8_0;
            assert_int_equal(t->type, want);
            uint64_t nb = want == CM_F32 ? ne0 * ne1 * 4 : ne0 / 32 * 34 * ne1;
            assert_int_equal(t->nbytes, nb);
        }
    }
    t = &g->tensors[46];
    assert_string_equal(t->name, "output_norm.weight");
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->type, CM_F32);

    /* every tensor lies inside the file, aligned, and they do not overlap */
    const uint8_t *base = g->file.data;
    uint64_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        t = &g->tensors[i];
        assert_int_equal(t->offset % 32, 0);
        assert_ptr_equal(t->data, base + g->data_offset + t->offset);
        assert_true((const uint8_t *)t->data + t->nbytes <= base + g->file.size);
        if (i) assert_true(t->offset >= g->tensors[i - 1].offset + g->tensors[i - 1].nbytes);
        total += t->nbytes;
    }
    assert_true(g->data_offset + total <= g->file.size);
    /* the norm weights of a trained model are finite and not all zero */
    t = gguf_find_tensor(g, "blk.0.attn_norm.weight");
    float w[64];
    memcpy(w, t->data, sizeof w);
    float sum = 0;
    for (int i = 0; i < 64; i++) {
        assert_true(isfinite(w[i]));
        sum += fabsf(w[i]);
    }
    assert_true(sum > 1.0f);
}

static void test_stories_f32(void **state) {
    (void)state;
    for (int m = 0; m < 2; m++) {
        gguf_file *g = NULL;
        lm_error err = {0};
        lm_status st = gguf_open(tu_data(F32_PATH), m == 0, &g, &err);
        if (st) fail_msg("%s", err.msg);
        assert_int_equal(g->file.size, 1054592);
        assert_non_null(strstr(g->path, "stories260K-f32.gguf"));
        check_common(g, false);
        gguf_close(g);
    }
    gguf_close(NULL);
}

static void test_stories_q8(void **state) {
    (void)state;
    gguf_file *g = NULL;
    lm_error err = {0};
    if (gguf_open(tu_data(Q8_PATH), true, &g, &err)) fail_msg("%s", err.msg);
    assert_int_equal(g->file.size, 454688);
    check_common(g, true);
    /* the data of the last tensor ends exactly at the end of the file */
    const gguf_tensor *t = &g->tensors[46];
    assert_int_equal(g->data_offset + t->offset + t->nbytes, g->file.size);
    gguf_close(g);
}

/* llama.cpp's vocab-only files: no tensors. The copies in tests/data went through a text
 * conversion that replaced every byte >= 0x80 by U+FFFD (EF BF BD), which breaks float values
 * and then the layout; such a copy must fail cleanly with LM_ERR_FORMAT, a good copy must parse. */
static void check_vocab(const char *rel, uint32_t n_tokens) {
    size_t n = 0;
    char *bytes = tu_read(tu_data(rel), &n);
    bool mangled = false;
    for (size_t i = 0; i + 3 <= LM_MIN(n, (size_t)4096); i++)
        if (memcmp(bytes + i, "\xef\xbf\xbd", 3) == 0) mangled = true;
    lm_free(bytes);
    gguf_file *g = NULL;
    lm_error err = {0};
    lm_status st = gguf_open(tu_data(rel), true, &g, &err);
    if (mangled) {
        assert_int_equal(st, LM_ERR_FORMAT);
        assert_non_null(strstr(err.msg, "ggml-vocab"));
        assert_non_null(strstr(err.msg, "file has"));
        assert_null(g);
        return;
    }
    if (st) fail_msg("%s", err.msg);
    assert_int_equal(g->n_tensors, 0);
    const gguf_value *tok = gguf_get_arr(g, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->v.arr.n, n_tokens);
    gguf_str s;
    assert_true(gguf_get_str(g, "tokenizer.ggml.model", &s));
    assert_true(gguf_str_eq(s, "llama"));
    gguf_close(g);
}

static void test_vocab_files(void **state) {
    (void)state;
    check_vocab("tokenizers/llama2/llamacpp/ggml-vocab-llama-spm.gguf", 32000);
    check_vocab("tokenizers/phi3/llamacpp/ggml-vocab-phi-3.gguf", 32064);
}

/* ---- files built here ---- */

/* One kv of every scalar type, with extreme values. */
static void write_scalars(wb *b) {
    key(b, "u8", GGUF_U8); u8(b, 255);
    key(b, "i8", GGUF_I8); u8(b, 0x80);
    key(b, "u16", GGUF_U16); u16(b, 65535);
    key(b, "i16", GGUF_I16); u16(b, 0x8000);
    key(b, "u32", GGUF_U32); u32(b, 4000000000u);
    key(b, "i32", GGUF_I32); u32(b, (uint32_t)-7);
    key(b, "f32", GGUF_F32); f32(b, -1.5f);
    key(b, "bool", GGUF_BOOL); u8(b, 1);
    key(b, "str", GGUF_STRING); str(b, "h\xc3\xa9llo");
    key(b, "u64", GGUF_U64); u64(b, UINT64_MAX);
    key(b, "i64", GGUF_I64); u64(b, (uint64_t)INT64_MIN);
    key(b, "f64", GGUF_F64); f64(b, 0.1);
    key(b, "empty", GGUF_STRING); str(b, "");
}
#define N_SCALARS 13

static void test_scalars_v2(void **state) {
    (void)state;
    for (uint32_t version = 2; version <= 3; version++) {
        wb b = {0};
        header(&b, version, 0, N_SCALARS);
        write_scalars(&b);
        gguf_file *g = NULL;
        lm_error err;
        if (parse_buf(b.p, b.n, &g, &err)) fail_msg("%s", err.msg);
        assert_int_equal(g->version, version);
        assert_int_equal(g->n_kv, N_SCALARS);
        const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str",
                               "u64", "i64", "f64", "empty"};
        for (int i = 0; i < N_SCALARS; i++) {
            assert_true(gguf_str_eq(g->kv[i].key, names[i]));
            assert_ptr_equal(gguf_find(g, names[i]), &g->kv[i]);
        }
        assert_int_equal(gguf_find(g, "u8")->val.v.u, 255);
        assert_int_equal(gguf_find(g, "i8")->val.v.i, -128);
        assert_int_equal(gguf_find(g, "u16")->val.v.u, 65535);
        assert_int_equal(gguf_find(g, "i16")->val.v.i, -32768);
        assert_int_equal(gguf_find(g, "u32")->val.v.u, 4000000000u);
        assert_int_equal(gguf_find(g, "i32")->val.v.i, -7);
        assert_true(gguf_find(g, "f32")->val.v.f == -1.5);
        assert_true(gguf_find(g, "bool")->val.v.b);
        assert_true(gguf_find(g, "u64")->val.v.u == UINT64_MAX);
        assert_true(gguf_find(g, "i64")->val.v.i == INT64_MIN);
        assert_true(gguf_find(g, "f64")->val.v.f == 0.1);
        const uint32_t types[N_SCALARS] = {GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32,
                                           GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_U64,
                                           GGUF_I64, GGUF_F64, GGUF_STRING};
        for (int i = 0; i < N_SCALARS; i++) assert_int_equal(g->kv[i].val.type, types[i]);

        uint32_t u = 0;
        int64_t i64 = 0;
        float f = 0;
        gguf_str s;
        assert_true(gguf_get_u32(g, "u8", &u));
        assert_int_equal(u, 255);
        assert_true(gguf_get_u32(g, "u32", &u));
        assert_int_equal(u, 4000000000u);
        assert_false(gguf_get_u32(g, "i32", &u)); /* negative */
        assert_false(gguf_get_u32(g, "u64", &u)); /* does not fit */
        assert_false(gguf_get_i64(g, "u64", &i64));
        assert_true(gguf_get_i64(g, "i64", &i64));
        assert_true(i64 == INT64_MIN);
        assert_true(gguf_get_i64(g, "i16", &i64));
        assert_int_equal(i64, -32768);
        assert_true(gguf_get_f32(g, "f64", &f));
        assert_true(f == 0.1f);
        assert_true(gguf_get_f32(g, "i32", &f));
        assert_true(f == -7.0f);
        assert_false(gguf_get_f32(g, "str", &f));
        assert_false(gguf_get_f32(g, "bool", &f));
        assert_true(gguf_get_str(g, "str", &s));
        assert_true(gguf_str_eq(s, "h\xc3\xa9llo"));
        assert_true(gguf_get_str(g, "empty", &s));
        assert_true(gguf_str_eq(s, ""));
        assert_int_equal(g->alignment, 32);
        assert_int_equal(g->n_tensors, 0);
        close_buf(g);
        free(b.p);
    }
    assert_string_equal(gguf_vtype_name(GGUF_F64), "float64");
    assert_string_equal(gguf_vtype_name(GGUF_ARRAY), "array");
    assert_string_equal(gguf_vtype_name(13), "unknown");
}

static void test_nested_arrays(void **state) {
    (void)state;
    wb b = {0};
    header(&b, 3, 0, 5);
    /* [["a", "bc"], [], ["def"]] */
    key(&b, "aas", GGUF_ARRAY);
    u32(&b, GGUF_ARRAY); u64(&b, 3);
    u32(&b, GGUF_STRING); u64(&b, 2); str(&b, "a"); str(&b, "bc");
    u32(&b, GGUF_STRING); u64(&b, 0);
    u32(&b, GGUF_STRING); u64(&b, 1); str(&b, "def");
    /* [[1, -2], [[3]]] style: arrays of arrays of i32 and a third level */
    key(&b, "aai", GGUF_ARRAY);
    u32(&b, GGUF_ARRAY); u64(&b, 2);
    u32(&b, GGUF_I32); u64(&b, 2); u32(&b, 1); u32(&b, (uint32_t)-2);
    u32(&b, GGUF_ARRAY); u64(&b, 1);
    u32(&b, GGUF_U16); u64(&b, 3); u16(&b, 7); u16(&b, 8); u16(&b, 9);
    key(&b, "empty", GGUF_ARRAY); u32(&b, GGUF_F32); u64(&b, 0);
    key(&b, "f64s", GGUF_ARRAY); u32(&b, GGUF_F64); u64(&b, 2); f64(&b, 2.5); f64(&b, -1e300);
    key(&b, "bools", GGUF_ARRAY); u32(&b, GGUF_BOOL); u64(&b, 3); u8(&b, 1); u8(&b, 0); u8(&b, 1);
    gguf_file *g = NULL;
    lm_error err;
    if (parse_buf(b.p, b.n, &g, &err)) fail_msg("%s", err.msg);

    const gguf_value *a = gguf_get_arr(g, "aas");
    assert_non_null(a);
    assert_int_equal(a->v.arr.elem_type, GGUF_ARRAY);
    assert_int_equal(a->v.arr.n, 3);
    const gguf_value *e = a->v.arr.items;
    assert_int_equal(e[0].type, GGUF_ARRAY);
    assert_int_equal(e[0].v.arr.elem_type, GGUF_STRING);
    assert_int_equal(e[0].v.arr.n, 2);
    assert_true(gguf_str_eq(e[0].v.arr.items[0].v.s, "a"));
    assert_true(gguf_str_eq(e[0].v.arr.items[1].v.s, "bc"));
    assert_int_equal(e[1].v.arr.n, 0);
    assert_int_equal(e[2].v.arr.n, 1);
    assert_true(gguf_str_eq(e[2].v.arr.items[0].v.s, "def"));
    double d;
    assert_false(gguf_arr_f64(a, 0, &d));

    a = gguf_get_arr(g, "aai");
    assert_non_null(a);
    e = a->v.arr.items;
    int64_t v;
    assert_true(gguf_arr_i64(&e[0], 0, &v));
    assert_int_equal(v, 1);
    assert_true(gguf_arr_i64(&e[0], 1, &v));
    assert_int_equal(v, -2);
    assert_false(gguf_arr_i64(&e[0], 2, &v));
    const gguf_value *inner = &e[1].v.arr.items[0];
    assert_int_equal(inner->v.arr.elem_type, GGUF_U16);
    assert_true(gguf_arr_f64(inner, 2, &d));
    assert_true(d == 9.0);

    a = gguf_get_arr(g, "empty");
    assert_int_equal(a->v.arr.n, 0);
    assert_false(gguf_arr_f64(a, 0, &d));
    a = gguf_get_arr(g, "f64s");
    assert_true(gguf_arr_f64(a, 0, &d));
    assert_true(d == 2.5);
    assert_true(gguf_arr_f64(a, 1, &d));
    assert_true(d == -1e300);
    a = gguf_get_arr(g, "bools");
    assert_true(gguf_arr_i64(a, 1, &v));
    assert_int_equal(v, 0);
    assert_true(gguf_arr_i64(a, 2, &v));
    assert_int_equal(v, 1);
    assert_false(gguf_arr_f64(NULL, 0, &d));
    close_buf(g);
    free(b.p);
}

/* A file with tensors at alignment `align` (written as general.alignment when align != 32). */
static void write_tensor_file(wb *b, uint32_t version, uint32_t align) {
    header(b, version, 3, align != 32 ? 2 : 1);
    key(b, "general.architecture", GGUF_STRING); str(b, "llama");
    if (align != 32) { key(b, "general.alignment", GGUF_U32); u32(b, align); }
    uint64_t ne_a[2] = {4, 3}, ne_b[1] = {64}, ne_c[4] = {2, 1, 2, 3};
    uint64_t off_b = (48 + align - 1) / align * align;
    uint64_t off_c = off_b + 68 + (align - 68 % align) % align;
    tinfo(b, "a", 2, ne_a, CM_F32, 0);            /* 48 bytes */
    tinfo(b, "b", 1, ne_b, CM_Q8_0, off_b);        /* 2 blocks: 68 bytes */
    tinfo(b, "c", 4, ne_c, CM_F16, off_c);          /* 12 elements: 24 bytes */
    pad(b, align);
    size_t data = b->n;
    for (int i = 0; i < 12; i++) f32(b, (float)i);
    while (b->n < data + off_b) u8(b, 0xee);
    for (int i = 0; i < 68; i++) u8(b, (uint8_t)i);
    while (b->n < data + off_c) u8(b, 0xee);
    for (int i = 0; i < 12; i++) u16(b, lm_f32_to_f16((float)-i));
}

static void test_tensors_alignment(void **state) {
    (void)state;
    const uint32_t aligns[] = {32, 1, 8, 64, 256};
    for (size_t k = 0; k < LM_ARRAY_LEN(aligns); k++) {
        wb b = {0};
        write_tensor_file(&b, k % 2 ? 2 : 3, aligns[k]);
        gguf_file *g = NULL;
        lm_error err;
        if (parse_buf(b.p, b.n, &g, &err)) fail_msg("align %u: %s", aligns[k], err.msg);
        const uint8_t *base = buf_base();
        assert_int_equal(g->alignment, aligns[k]);
        assert_int_equal(g->data_offset % aligns[k], 0);
        const gguf_tensor *a = gguf_find_tensor(g, "a"), *tb = gguf_find_tensor(g, "b"),
                          *c = gguf_find_tensor(g, "c");
        assert_non_null(a);
        assert_non_null(tb);
        assert_non_null(c);
        assert_null(gguf_find_tensor(g, "d"));
        assert_int_equal(a->nbytes, 48);
        assert_int_equal(tb->nbytes, 68);
        assert_int_equal(tb->type, CM_Q8_0);
        assert_int_equal(c->nbytes, 24);
        assert_int_equal(c->n_dims, 4);
        assert_int_equal(c->ne[3], 3);
        assert_int_equal(a->ne[2], 1);
        assert_ptr_equal(a->data, base + g->data_offset);
        float x;
        memcpy(&x, (const float *)a->data + 11, 4);
        assert_true(x == 11.0f);
        assert_int_equal(((const uint8_t *)tb->data)[67], 67);
        uint16_t h;
        memcpy(&h, (const uint16_t *)c->data + 5, 2);
        assert_true(lm_f16_to_f32(h) == -5.0f);
        close_buf(g);
        /* the file also loads from disk, mapped */
        const char *p = tu_write_temp(b.p, b.n, ".gguf");
        lm_error e2 = {0};
        if (gguf_open(p, true, &g, &e2)) fail_msg("%s", e2.msg);
        assert_int_equal(g->n_tensors, 3);
        gguf_close(g);
        remove(p);
        free(b.p);
    }
}

/* ---- bad fields, one at a time ---- */

static void test_bad_header(void **state) {
    (void)state;
    wb b = {0};
    put(&b, "GGUX", 4); u32(&b, 3); u64(&b, 0); u64(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "magic");
    b.n = 0;
    expect_fail(&b, LM_ERR_FORMAT, "magic");
    put(&b, "GG", 2);
    expect_fail(&b, LM_ERR_FORMAT, "magic");
    b.n = 0;
    put(&b, "GGUF", 4);
    expect_fail(&b, LM_ERR_FORMAT, "version");
    b.n = 0;
    header(&b, 1, 0, 0);
    expect_fail(&b, LM_ERR_UNSUPPORTED, "version 1");
    b.n = 0;
    header(&b, 4, 0, 0);
    expect_fail(&b, LM_ERR_UNSUPPORTED, "version 4");
    b.n = 0;
    header(&b, 0x03000000, 0, 0);
    expect_fail(&b, LM_ERR_UNSUPPORTED, "big-endian");
    b.n = 0;
    header(&b, 3, 0, 0);
    b.n -= 3;
    expect_fail(&b, LM_ERR_FORMAT, "n_kv");
    /* counts the remaining bytes could never hold */
    b.n = 0;
    header(&b, 3, 0, 1000);
    key(&b, "x", GGUF_U8); u8(&b, 1);
    expect_fail(&b, LM_ERR_FORMAT, "n_kv is 1000");
    b.n = 0;
    header(&b, 3, UINT64_MAX, 0);
    expect_fail(&b, LM_ERR_FORMAT, "n_tensors is 18446744073709551615");
    b.n = 0;
    header(&b, 3, 0, UINT64_MAX / 2);
    expect_fail(&b, LM_ERR_FORMAT, "n_kv");
    /* an empty but valid file */
    b.n = 0;
    header(&b, 3, 0, 0);
    gguf_file *g = NULL;
    lm_error err;
    assert_int_equal(parse_buf(b.p, b.n, &g, &err), LM_OK);
    assert_int_equal(g->n_kv, 0);
    assert_null(gguf_find(g, "general.alignment"));
    assert_null(gguf_find_tensor(g, "x"));
    close_buf(g);
    free(b.p);
}

static void test_bad_metadata(void **state) {
    (void)state;
    wb b = {0};
    header(&b, 3, 0, 1);
    u64(&b, 1ull << 40); put(&b, "abc", 3); u32(&b, GGUF_U8); u8(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "metadata #0: key of 1099511627776 bytes");

    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "weird", 13); u64(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "key 'weird': unknown value type 13");

    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "s", GGUF_STRING); u64(&b, 100); put(&b, "short", 5);
    expect_fail(&b, LM_ERR_FORMAT, "key 's': string of 100 bytes");

    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "b", GGUF_BOOL); u8(&b, 2);
    expect_fail(&b, LM_ERR_FORMAT, "key 'b': bool value 2");

    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "v", GGUF_U64); u32(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "key 'v': uint64 value");

    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "arr", GGUF_ARRAY); u32(&b, GGUF_U32); u64(&b, 1ull << 62); u32(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "key 'arr': array of 4611686018427387904 uint32");

    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "arr", GGUF_ARRAY); u32(&b, GGUF_STRING); u64(&b, UINT64_MAX); str(&b, "x");
    expect_fail(&b, LM_ERR_FORMAT, "key 'arr': array of 18446744073709551615 strings");

    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "arr", GGUF_ARRAY); u32(&b, 77); u64(&b, 1); u32(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "key 'arr': unknown array element type 77");

    /* a nested array whose inner length is wrong */
    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "nest", GGUF_ARRAY); u32(&b, GGUF_ARRAY); u64(&b, 2);
    u32(&b, GGUF_STRING); u64(&b, 1); str(&b, "ok");
    u32(&b, GGUF_STRING); u64(&b, 1); u64(&b, 1000); put(&b, "xy", 2);
    expect_fail(&b, LM_ERR_FORMAT, "key 'nest': string of 1000 bytes");

    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "bools", GGUF_ARRAY); u32(&b, GGUF_BOOL); u64(&b, 2); u8(&b, 0); u8(&b, 9);
    expect_fail(&b, LM_ERR_FORMAT, "bool element 1 is 9");

    /* arrays nested deeper than the reader allows */
    b.n = 0;
    header(&b, 3, 0, 1);
    key(&b, "deep", GGUF_ARRAY);
    for (int i = 0; i < 40; i++) { u32(&b, GGUF_ARRAY); u64(&b, 1); }
    u32(&b, GGUF_U8); u64(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "key 'deep': arrays nested deeper than");

    b.n = 0;
    header(&b, 3, 0, 2);
    key(&b, "dup", GGUF_U8); u8(&b, 1);
    key(&b, "dup", GGUF_U8); u8(&b, 2);
    expect_fail(&b, LM_ERR_FORMAT, "key 'dup' appears more than once");

    const struct { uint32_t type; uint64_t v; const char *sv; } bad_align[] = {
        {GGUF_U32, 0, NULL}, {GGUF_U32, 48, NULL}, {GGUF_U32, 3, NULL}, {GGUF_STRING, 0, "32"},
        {GGUF_F32, 0, NULL},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(bad_align); i++) {
        b.n = 0;
        header(&b, 3, 0, 1);
        key(&b, "general.alignment", bad_align[i].type);
        if (bad_align[i].type == GGUF_STRING) str(&b, bad_align[i].sv);
        else if (bad_align[i].type == GGUF_F32) f32(&b, 32.0f);
        else u32(&b, (uint32_t)bad_align[i].v);
        expect_fail(&b, LM_ERR_FORMAT, "general.alignment: expected a non-zero power of two");
    }
    free(b.p);
}

static void test_bad_tensors(void **state) {
    (void)state;
    wb b = {0};
    uint64_t ne[5] = {4, 2, 1, 1, 1};

#define ONE_TENSOR(name_, nd_, ne_, type_, off_)                                                  \
    do {                                                                                          \
        b.n = 0;                                                                                  \
        header(&b, 3, 1, 0);                                                                      \
        tinfo(&b, name_, nd_, ne_, type_, off_);                                                  \
        pad(&b, 32);                                                                              \
        for (int i_ = 0; i_ < 64; i_++) u8(&b, 0);                                                \
    } while (0)

    ONE_TENSOR("t", 2, ne, CM_F32, 0);
    gguf_file *g = NULL;
    lm_error err;
    assert_int_equal(parse_buf(b.p, b.n, &g, &err), LM_OK);
    close_buf(g);

    ONE_TENSOR("blk.3.attn_q.weight", 5, ne, CM_F32, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 'blk.3.attn_q.weight': n_dims is 5");
    ONE_TENSOR("blk.3.attn_q.weight", 2, ne, 99, 0);
    expect_fail(&b, LM_ERR_UNSUPPORTED, "tensor 'blk.3.attn_q.weight': unknown tensor type id 99");
    ONE_TENSOR("t", 2, ne, CM_MLX, 0);
    expect_fail(&b, LM_ERR_UNSUPPORTED, "unknown tensor type id 1000");
    /* our internal activation layout has a type id too; never a file's */
    ONE_TENSOR("t", 2, ne, CM_Q8_0X4, 0);
    expect_fail(&b, LM_ERR_UNSUPPORTED, "unknown tensor type id 1001");
    ONE_TENSOR("t", 2, ne, CM_Q8_0, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 't': rows of 4 elements are not a whole number of");
    ONE_TENSOR("t", 2, ne, CM_F32, 16);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 't': offset 16 is not a multiple of the alignment 32");
    ONE_TENSOR("t", 2, ne, CM_F32, 64);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 't': data ends at byte");
    ONE_TENSOR("t", 2, ne, CM_F32, UINT64_MAX - 31);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 't'");
    uint64_t zero[2] = {4, 0};
    ONE_TENSOR("t", 2, zero, CM_F32, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 't': ne[1] is 0");
    uint64_t huge[3] = {1ull << 32, 1ull << 30, 2};
    ONE_TENSOR("t", 3, huge, CM_F32, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 't': ne[2] is 2");
    uint64_t big[2] = {1ull << 20, 1ull << 20};
    ONE_TENSOR("big", 2, big, CM_F32, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 'big': data ends at byte 4398046511200, file has 160");
    b.n = 0;
    header(&b, 3, 1, 0);
    u64(&b, 3); put(&b, "a\0b", 3); u32(&b, 1); u64(&b, 4); u32(&b, 0); u64(&b, 0);
    pad(&b, 32);
    for (int i = 0; i < 16; i++) u8(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor #0: name contains a NUL byte");
    b.n = 0;
    header(&b, 3, 1, 0);
    u64(&b, 1u << 30); put(&b, "abc", 3);
    for (int i = 0; i < 40; i++) u8(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor #0: name of 1073741824 bytes");
    b.n = 0;
    header(&b, 3, 1, 0);
    str(&b, "cut");
    u32(&b, 2); u64(&b, 4);
    for (int i = 0; i < 17; i++) u8(&b, 0); /* enough for the count check, not the fields */
    b.n -= 17;
    u64(&b, 0); u64(&b, 0); u8(&b, 0); /* ne[1] = 0 then garbage */
    expect_fail(&b, LM_ERR_FORMAT, "tensor 'cut'");

    /* two tensors: overlapping, and duplicate names */
    uint64_t ne1[1] = {16};
    b.n = 0;
    header(&b, 3, 2, 0);
    tinfo(&b, "x", 1, ne1, CM_F32, 0);
    tinfo(&b, "y", 1, ne1, CM_F32, 32);
    pad(&b, 32);
    for (int i = 0; i < 128; i++) u8(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 'x' (bytes 0..64 of the data section) overlaps tensor "
                "'y'");
    b.n = 0;
    header(&b, 3, 2, 0);
    tinfo(&b, "x", 1, ne1, CM_F32, 0);
    tinfo(&b, "x", 1, ne1, CM_F32, 64);
    pad(&b, 32);
    for (int i = 0; i < 128; i++) u8(&b, 0);
    expect_fail(&b, LM_ERR_FORMAT, "tensor 'x' appears more than once");
    free(b.p);
#undef ONE_TENSOR
}

/* ---- corruption of the real file ---- */

typedef struct {
    uint8_t *data;
    size_t size;
} blob;

static blob load_f32(void) {
    blob f;
    f.data = (uint8_t *)tu_read(tu_data(F32_PATH), &f.size);
    return f;
}

/* Parses the first n bytes of f from an exact-size copy; returns the status, checks that errors
 * have a message naming the buffer and that success holds only in-bounds tensors. */
static lm_status try_parse(const uint8_t *data, size_t n, lm_error *err) {
    gguf_file *g = NULL;
    lm_status st = parse_buf(data, n, &g, err);
    if (st == LM_OK) {
        const uint8_t *base = buf_base();
        for (uint64_t i = 0; i < g->n_tensors; i++)
            assert_true((const uint8_t *)g->tensors[i].data + g->tensors[i].nbytes <= base + n);
        close_buf(g);
    } else {
        assert_null(g);
        assert_int_equal(err->code, st);
        assert_true(strlen(err->msg) > 10);
        assert_non_null(strstr(err->msg, "mem.gguf: "));
    }
    return st;
}

static void test_truncated(void **state) {
    (void)state;
    blob f = load_f32();
    gguf_file *g = NULL;
    lm_error err;
    assert_int_equal(gguf_parse(f.data, f.size, "full", &g, &err), LM_OK);
    uint64_t end = 0, data_offset = g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        end = LM_MAX(end, g->data_offset + g->tensors[i].offset + g->tensors[i].nbytes);
    gguf_close(g);
    assert_int_equal(end, f.size);
    /* every length through the header, the metadata, the tensor table and the first data */
    for (size_t n = 0; n < data_offset + 200; n++) {
        lm_status st = try_parse(f.data, n, &err);
        if (st != LM_ERR_FORMAT) fail_msg("truncated at %zu: %s", n, err.msg);
    }
    /* a spread through the data section: the tensor bounds check catches these */
    for (size_t n = data_offset + 200; n < f.size; n += 7919) {
        lm_status st = try_parse(f.data, n, &err);
        assert_int_equal(st, LM_ERR_FORMAT);
        assert_non_null(strstr(err.msg, "data ends at byte"));
        assert_non_null(strstr(err.msg, "file has"));
    }
    assert_int_equal(try_parse(f.data, f.size - 1, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "tensor 'output_norm.weight': data ends at byte 1054592, "
                                    "file has 1054591"));
    assert_int_equal(try_parse(f.data, f.size, &err), LM_OK);
    lm_free(f.data);
}

/* Walks the f32 file's layout and records where each structural field lives. */
typedef struct {
    size_t off;
    int width;
} field;

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static size_t skip_value(const uint8_t *d, size_t pos, uint32_t t) {
    static const int sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == GGUF_STRING) return pos + 8 + rd64(d + pos);
    if (t != GGUF_ARRAY) return pos + (size_t)sz[t];
    uint32_t et = d[pos] | d[pos + 1] << 8;
    uint64_t n = rd64(d + pos + 4);
    pos += 12;
    if (et != GGUF_STRING && et != GGUF_ARRAY) return pos + n * (size_t)sz[et];
    for (uint64_t i = 0; i < n; i++) pos = skip_value(d, pos, et);
    return pos;
}

static void test_flipped(void **state) {
    (void)state;
    blob f = load_f32();
    const uint8_t *d = f.data;
    /* fields, with the byte to set in each and the status it must give */
    typedef struct { size_t off; uint8_t val; lm_status want; const char *piece; } flip;
    flip flips[1024];
    size_t n_flips = 0;
#define FLIP(o, v, w, p) flips[n_flips++] = (flip){(o), (v), (w), (p)}
    FLIP(0, 'X', LM_ERR_FORMAT, "magic");
    FLIP(4, 1, LM_ERR_UNSUPPORTED, "version 1");
    FLIP(5, 1, LM_ERR_UNSUPPORTED, "version");
    FLIP(8 + 6, 0x40, LM_ERR_FORMAT, "n_tensors");
    FLIP(16 + 5, 0x40, LM_ERR_FORMAT, "n_kv");
    size_t pos = 24;
    for (int k = 0; k < 26; k++) {
        uint64_t klen = rd64(d + pos);
        FLIP(pos + 6, 0x40, LM_ERR_FORMAT, "key of");
        size_t tpos = pos + 8 + klen;
        uint32_t t = d[tpos];
        FLIP(tpos, 0x2a, LM_ERR_FORMAT, "unknown value type 42");
        if (t == GGUF_STRING) FLIP(tpos + 4 + 5, 0x40, LM_ERR_FORMAT, "string of");
        if (t == GGUF_ARRAY) {
            FLIP(tpos + 4, 0x2a, LM_ERR_FORMAT, "unknown array element type 42");
            FLIP(tpos + 8 + 6, 0x40, LM_ERR_FORMAT, "array of");
        }
        if (t == GGUF_BOOL) FLIP(tpos + 4, 0x02, LM_ERR_FORMAT, "bool value 2");
        pos = skip_value(d, tpos + 4, t);
    }
    for (int i = 0; i < 47; i++) {
        uint64_t nlen = rd64(d + pos);
        FLIP(pos + 6, 0x40, LM_ERR_FORMAT, "name of");
        size_t dpos = pos + 8 + nlen;
        uint32_t nd = d[dpos];
        FLIP(dpos, 0x05, LM_ERR_FORMAT, "n_dims is 5");
        FLIP(dpos + 4, 0x00, LM_ERR_FORMAT, "ne[0] is 0");
        FLIP(dpos + 4 + 7, 0x7f, LM_ERR_FORMAT, "tensor '");
        size_t typ = dpos + 4 + 8 * nd;
        FLIP(typ, 0x63, LM_ERR_UNSUPPORTED, "unknown tensor type id 99");
        FLIP(typ + 4, d[typ + 4] ^ 0x04, LM_ERR_FORMAT, "not a multiple of the alignment 32");
        FLIP(typ + 4 + 6, 0x10, LM_ERR_FORMAT, "data ends at byte");
        pos = typ + 12;
    }
#undef FLIP
    assert_true(n_flips < LM_ARRAY_LEN(flips));
    /* the walk ended at the tensor table's end: the data starts at the next multiple of 32 */
    gguf_file *g = NULL;
    lm_error err;
    assert_int_equal(gguf_parse(d, f.size, "full", &g, &err), LM_OK);
    assert_int_equal(g->data_offset, (pos + 31) / 32 * 32);
    gguf_close(g);

    for (size_t i = 0; i < n_flips; i++) {
        uint8_t old = f.data[flips[i].off];
        f.data[flips[i].off] = flips[i].val;
        lm_status st = try_parse(f.data, f.size, &err);
        f.data[flips[i].off] = old;
        if (st != flips[i].want || !strstr(err.msg, flips[i].piece))
            fail_msg("byte %zu = 0x%02x: expected %s '%s', got %s '%s'", flips[i].off,
                     flips[i].val, lm_status_str(flips[i].want), flips[i].piece,
                     lm_status_str(st), st ? err.msg : "");
    }
    /* random single-byte changes anywhere before the data: never a crash or an over-read; a
     * failure always carries a message (checked in try_parse) */
    lm_rng r;
    lm_rng_seed(&r, 1234);
    int n_fail = 0;
    for (int i = 0; i < 1500; i++) {
        size_t off = (size_t)(lm_rng_next(&r) % (pos + 16));
        uint8_t old = f.data[off];
        f.data[off] = (uint8_t)lm_rng_next(&r);
        lm_status st = try_parse(f.data, f.size, &err);
        assert_true(st == LM_OK || st == LM_ERR_FORMAT || st == LM_ERR_UNSUPPORTED);
        n_fail += st != LM_OK;
        f.data[off] = old;
    }
    assert_true(n_fail > 0);
    lm_free(f.data);
}

/* ---- allocation failures ---- */

static lm_status open_attempt(const void *arg, lm_error *err) {
    gguf_file *g = NULL;
    lm_status st = gguf_open(tu_data(F32_PATH), *(const bool *)arg, &g, err);
    if (st) {
        assert_null(g);
        assert_true(strlen(err->msg) > 0);
        return st;
    }
    gguf_close(g);
    return LM_OK;
}

static lm_status parse_attempt(const void *arg, lm_error *err) {
    const wb *b = arg;
    gguf_file *g = NULL;
    lm_status st = gguf_parse(b->p, b->n, "nested", &g, err);
    if (st) {
        assert_null(g);
        assert_non_null(strstr(err->msg, "nested"));
        return st;
    }
    gguf_close(g);
    return LM_OK;
}

static void test_nomem(void **state) {
    (void)state;
    for (int m = 0; m < 2; m++) {
        bool use_mmap = m == 0;
        /* at least the path, handle, metadata, names and tables */
        assert_true(tu_alloc_sweep(F32_PATH, open_attempt, &use_mmap, false, 9999) > 5);
    }
    /* the same over a buffer with nested arrays */
    wb b = {0};
    header(&b, 3, 0, 1);
    key(&b, "aas", GGUF_ARRAY);
    u32(&b, GGUF_ARRAY); u64(&b, 2);
    u32(&b, GGUF_STRING); u64(&b, 1); str(&b, "a");
    u32(&b, GGUF_ARRAY); u64(&b, 1);
    u32(&b, GGUF_STRING); u64(&b, 2); str(&b, "b"); str(&b, "c");
    assert_true(tu_alloc_sweep("nested", parse_attempt, &b, false, 99) >= 6);
    free(b.p);
}

int main(void) {
    tu_json_use_lm_alloc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_f32),
        cmocka_unit_test(test_stories_q8),
        cmocka_unit_test(test_vocab_files),
        cmocka_unit_test(test_scalars_v2),
        cmocka_unit_test(test_nested_arrays),
        cmocka_unit_test(test_tensors_alignment),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_flipped),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
