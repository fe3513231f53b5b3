/* tests/fuzz/fuzz_safetensors_index.c: open_index of formats/safetensors.c (a sharded model's
 * model.safetensors.index.json: weight_map names, shard paths kept inside the folder, each tensor
 * in the shard the map names) over arbitrary index text, in a temporary folder holding two valid
 * shards (tensors a, b in model-00001-of-00002.safetensors; c in model-00002-of-00002). A set that
 * opens must hold findable tensors inside their own shard's mapping. Seeds:
 * tests/fuzz/corpus/safetensors_index (tools/make_fuzz_corpus.py). */
#include "formats/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64], g_index[128], g_shard[2][128];

static void put(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) abort();
}

/* A safetensors file of F32 tensors: header (length-prefixed JSON) then the data. */
static void shard(const char *path, const char *header, const float *vals, size_t n) {
    char buf[1024];
    size_t hl = strlen(header), pad = (8 - hl % 8) % 8;
    uint64_t len = hl + pad;
    for (int i = 0; i < 8; i++) buf[i] = (char)(len >> (8 * i));
    memcpy(buf + 8, header, hl);
    memset(buf + 8 + hl, ' ', pad);
    memcpy(buf + 8 + len, vals, n * sizeof *vals);
    put(path, buf, 8 + len + n * sizeof *vals);
}

static void cleanup(void) {
    unlink(g_index);
    unlink(g_shard[0]);
    unlink(g_shard[1]);
    rmdir(g_dir);
}

static void setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/fuzz_st_index_XXXXXX");
    if (!mkdtemp(g_dir)) abort();
    snprintf(g_index, sizeof g_index, "%s/model.safetensors.index.json", g_dir);
    snprintf(g_shard[0], sizeof g_shard[0], "%s/model-00001-of-00002.safetensors", g_dir);
    snprintf(g_shard[1], sizeof g_shard[1], "%s/model-00002-of-00002.safetensors", g_dir);
    static const float v1[] = {1, 2, 3, 4, 5, 6, 7, 8}, v2[] = {9, 10, 11, 12};
    shard(g_shard[0],
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}",
          v1, 8);
    shard(g_shard[1], "{\"c\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", v2, 4);
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) setup();
    put(g_index, data, size);
    st_set *s = NULL;
    lm_error err = {0};
    if (st_open_dir(g_dir, true, &s, &err) != LM_OK) {
        if (!err.msg[0] || s) abort();
        return 0;
    }
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < s->n_tensors; i++) {
        const st_tensor *t = &s->tensors[i];
        if (st_find(s, t->name) != t || t->file >= s->n_files) abort();
        const lm_file *f = &s->files[t->file];
        const uint8_t *p = t->data;
        if (p < f->data || t->nbytes > f->size || p + t->nbytes > f->data + f->size) abort();
        if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1];
    }
    (void)sink;
    st_close(s);
    return 0;
}
