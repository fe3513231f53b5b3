/* tests/fuzz/fuzz_gguf.c: the GGUF reader over arbitrary bytes. A file that parses must hold
 * findable keys and tensors, numeric array elements readable through the getters, and tensor data
 * inside the buffer. */
#include "formats/formats.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Touches every element of a value, nested arrays included. */
static void walk(const gguf_value *v, volatile uint8_t *sink) {
    if (v->type == GGUF_STRING) {
        if (v->v.s.len) *sink ^= (uint8_t)(v->v.s.ptr[0] ^ v->v.s.ptr[v->v.s.len - 1]);
        return;
    }
    if (v->type != GGUF_ARRAY) return;
    if (v->v.arr.items) {
        for (uint64_t i = 0; i < v->v.arr.n; i++) walk(&v->v.arr.items[i], sink);
        return;
    }
    for (uint64_t i = 0; i < v->v.arr.n; i++) {
        double d;
        int64_t x;
        if (gguf_arr_f64(v, i, &d)) *sink ^= (uint8_t)(d != d);
        if (gguf_arr_i64(v, i, &x)) *sink ^= (uint8_t)x;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *g = NULL;
    lm_error err = {0};
    if (gguf_parse(data, size, "fuzz.gguf", &g, &err) != LM_OK) {
        if (!err.msg[0]) abort(); /* every failure explains itself */
        return 0;
    }
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        /* keys with a NUL inside cannot be looked up by C string */
        if (!memchr(kv->key.ptr, 0, (size_t)kv->key.len) && kv->key.len < 4096) {
            char k[4096];
            memcpy(k, kv->key.ptr, (size_t)kv->key.len);
            k[kv->key.len] = 0;
            if (gguf_find(g, k) != kv) abort();
            uint32_t u;
            int64_t x;
            float f;
            bool b;
            gguf_str s;
            sink ^= (uint8_t)(gguf_get_u32(g, k, &u) + gguf_get_i64(g, k, &x) +
                              gguf_get_f32(g, k, &f) + gguf_get_bool(g, k, &b) +
                              gguf_get_str(g, k, &s) + (gguf_get_arr(g, k) != NULL));
        }
        walk(&kv->val, &sink);
    }
    if (g->alignment == 0 || (g->alignment & (g->alignment - 1))) abort();
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (gguf_find_tensor(g, t->name) != t) abort();
        const uint8_t *p = t->data;
        if (p < data || t->nbytes > size || p + t->nbytes > data + size) abort();
        if (t->nbytes) sink ^= p[0] ^ p[t->nbytes - 1]; /* in bounds, or ASan says so */
    }
    (void)sink;
    gguf_close(g);
    return 0;
}
