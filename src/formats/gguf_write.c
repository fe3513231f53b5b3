/* formats/gguf_write.c: writes GGUF v3 files.
 * Owns: serializing metadata and the tensor table and laying out the data section at
 * general.alignment.
 * Does not own: streaming the data and publishing the file (formats/write.c), what the keys and
 * tensors mean (convert/) or how tensors are quantized (compute/). The layout is the one formats/gguf.c reads: "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv, the key/value pairs, the tensor infos, padding, then the data of each tensor padded
 * to the alignment (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). */
#include "formats/write_internal.h"

#include "compute/backend.h"

#define GGUF_ALIGN 32

struct gguf_writer {
    lm_buf kv;             /* serialized key/value pairs */
    uint64_t n_kv;
    char **keys;           /* for the duplicate check */
    lm_status bad;         /* first setter failure (NOMEM or MISUSE), reported by begin */
    char bad_msg[160];
    wr_file out;           /* the tensor table, then the file being written */
    uint64_t data_bytes;   /* size of the data section */
};

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = lm_calloc(1, sizeof(gguf_writer));
    if (w) w->out.align = GGUF_ALIGN;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    wr_release(&w->out);
    lm_buf_free(&w->kv);
    for (uint64_t i = 0; i < w->n_kv; i++) lm_free(w->keys[i]);
    lm_free(w->keys);
    lm_free(w);
}

static void set_bad(gguf_writer *w, lm_status st, const char *what, const char *key) {
    if (w->bad) return;
    w->bad = st;
    snprintf(w->bad_msg, sizeof w->bad_msg, "%s '%.100s'", what, key);
}

static void put_le(lm_buf *b, uint64_t v, int n) {
    char c[8];
    for (int i = 0; i < n; i++) c[i] = (char)(v >> (8 * i));
    lm_buf_append(b, c, (size_t)n);
}

static void put_str(lm_buf *b, const char *s, size_t n) {
    put_le(b, n, 8);
    lm_buf_append(b, s, n);
}

/* Starts a pair: checks the writer is still collecting and the key is new, appends the key and
 * the value type. False when the pair must not be written. */
static bool begin_kv(gguf_writer *w, const char *key, uint32_t type) {
    if (w->bad) return false;
    if (w->out.f) {
        set_bad(w, LM_ERR_MISUSE, "metadata set after writing began:", key);
        return false;
    }
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) {
            set_bad(w, LM_ERR_MISUSE, "duplicate metadata key", key);
            return false;
        }
    char **k = lm_realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *k);
    if (!k) {
        set_bad(w, LM_ERR_NOMEM, "metadata key", key);
        return false;
    }
    w->keys = k;
    if (!(k[w->n_kv] = lm_strdup(key))) {
        set_bad(w, LM_ERR_NOMEM, "metadata key", key);
        return false;
    }
    w->n_kv++;
    put_str(&w->kv, key, strlen(key));
    put_le(&w->kv, type, 4);
    return true;
}

static void end_kv(gguf_writer *w, const char *key) {
    if (w->kv.oom) set_bad(w, LM_ERR_NOMEM, "metadata", key);
}

void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v) {
    if (!begin_kv(w, key, GGUF_U32)) return;
    put_le(&w->kv, v, 4);
    end_kv(w, key);
}

void gguf_w_f32(gguf_writer *w, const char *key, float v) {
    if (!begin_kv(w, key, GGUF_F32)) return;
    union { float f; uint32_t u; } c = {v};
    put_le(&w->kv, c.u, 4);
    end_kv(w, key);
}

void gguf_w_bool(gguf_writer *w, const char *key, bool v) {
    if (!begin_kv(w, key, GGUF_BOOL)) return;
    put_le(&w->kv, v ? 1 : 0, 1);
    end_kv(w, key);
}

void gguf_w_str(gguf_writer *w, const char *key, const char *s) {
    if (!begin_kv(w, key, GGUF_STRING)) return;
    put_str(&w->kv, s, strlen(s));
    end_kv(w, key);
}

void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *s, size_t n) {
    if (!begin_kv(w, key, GGUF_ARRAY)) return;
    put_le(&w->kv, GGUF_STRING, 4);
    put_le(&w->kv, n, 8);
    for (size_t i = 0; i < n; i++) put_str(&w->kv, s[i], strlen(s[i]));
    end_kv(w, key);
}

void gguf_w_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n) {
    if (!begin_kv(w, key, GGUF_ARRAY)) return;
    put_le(&w->kv, GGUF_F32, 4);
    put_le(&w->kv, n, 8);
    for (size_t i = 0; i < n; i++) {
        union { float f; uint32_t u; } c = {v[i]};
        put_le(&w->kv, c.u, 4);
    }
    end_kv(w, key);
}

void gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    if (!begin_kv(w, key, GGUF_ARRAY)) return;
    put_le(&w->kv, GGUF_I32, 4);
    put_le(&w->kv, n, 8);
    for (size_t i = 0; i < n; i++) put_le(&w->kv, (uint32_t)v[i], 4);
    end_kv(w, key);
}

void gguf_w_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                   const uint64_t *ne) {
    if (w->bad) return;
    if (w->out.f) return set_bad(w, LM_ERR_MISUSE, "tensor declared after writing began:", name);
    const cm_type_info *ti = cm_type_get(type);
    uint64_t row = 0, n_rows = 1;
    if (n_dims < 1 || n_dims > 4 || !ti || type >= CM_MLX || !cm_type_row_bytes(type, ne[0], &row))
        return set_bad(w, LM_ERR_MISUSE, "bad type or shape of tensor", name);
    for (uint32_t d = 1; d < n_dims; d++) n_rows *= ne[d];
    if (wr_has(&w->out, name)) return set_bad(w, LM_ERR_MISUSE, "duplicate tensor", name);
    wr_tensor *t = wr_add(&w->out, name);
    if (!t) return set_bad(w, LM_ERR_NOMEM, "tensor table:", name);
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = row * n_rows;
}

static uint64_t pad_to(uint64_t x) { return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

lm_status gguf_w_begin(gguf_writer *w, const char *path, lm_error *err) {
    if (w->bad == LM_ERR_NOMEM) return lm_fail_nomem(err, w->bad_msg);
    if (w->bad) return lm_fail(err, w->bad, "%s: %s", path, w->bad_msg);
    if (w->out.f) return lm_fail(err, LM_ERR_MISUSE, "%s: gguf_w_begin called twice", path);
    lm_buf head = {0};
    lm_buf_append(&head, "GGUF", 4);
    put_le(&head, 3, 4);
    put_le(&head, w->out.n_t, 8);
    put_le(&head, w->n_kv, 8);
    lm_buf_append(&head, w->kv.data ? w->kv.data : "", w->kv.len);
    uint64_t off = 0;
    for (size_t i = 0; i < w->out.n_t; i++) {
        wr_tensor *t = &w->out.t[i];
        t->offset = off;
        off = pad_to(off + t->nbytes);
        put_str(&head, t->name, strlen(t->name));
        put_le(&head, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) put_le(&head, t->ne[d], 8);
        put_le(&head, t->type, 4);
        put_le(&head, t->offset, 8);
    }
    w->data_bytes = off;
    size_t pad = (size_t)(pad_to(head.len) - head.len);
    for (size_t i = 0; i < pad; i++) lm_buf_putc(&head, 0);
    if (head.oom) {
        lm_buf_free(&head);
        return lm_fail_nomem(err, "GGUF header");
    }
    lm_status st = wr_open(&w->out, path, err);
    if (!st) st = wr_bytes(&w->out, head.data, head.len, err);
    lm_buf_free(&head);
    return st;
}

lm_status gguf_w_data(gguf_writer *w, const void *data, size_t n, lm_error *err) {
    if (!w->out.f) return lm_fail(err, LM_ERR_MISUSE, "gguf_w_data before gguf_w_begin");
    return wr_data(&w->out, data, n, err);
}

lm_status gguf_w_finish(gguf_writer *w, lm_error *err) {
    if (!w->out.f) return lm_fail(err, LM_ERR_MISUSE, "gguf_w_finish before gguf_w_begin");
    return wr_finish(&w->out, err);
}
