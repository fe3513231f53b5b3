/* formats/gguf_write.c: writes GGUF v3 files.
 * Owns: serializing metadata and the tensor table, laying out the data section at
 * general.alignment, streaming tensor data in declaration order, and publishing the file only
 * when it is complete (written to "<path>.part", renamed at the end).
 * Does not own: what the keys and tensors mean (convert/) or how tensors are quantized
 * (compute/). The layout is the one formats/gguf.c reads: "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv, the key/value pairs, the tensor infos, padding, then the data of each tensor padded
 * to the alignment (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md). */
#include "formats/formats.h"

#include "compute/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define GGUF_ALIGN 32

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[4];
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    lm_buf kv;             /* serialized key/value pairs */
    uint64_t n_kv;
    char **keys;           /* for the duplicate check */
    wtensor *t;
    size_t n_t, cap_t;
    lm_status bad;         /* first setter failure (NOMEM or MISUSE), reported by begin */
    char bad_msg[160];
    /* writing */
    FILE *f;
    char *path, *part;
    size_t cur;            /* tensor being written */
    uint64_t cur_done;     /* its bytes written so far */
    uint64_t data_bytes;   /* size of the data section */
};

gguf_writer *gguf_writer_new(void) { return lm_calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        if (w->part) unlink(w->part);
    }
    lm_buf_free(&w->kv);
    for (uint64_t i = 0; i < w->n_kv; i++) lm_free(w->keys[i]);
    lm_free(w->keys);
    for (size_t i = 0; i < w->n_t; i++) lm_free(w->t[i].name);
    lm_free(w->t);
    lm_free(w->path);
    lm_free(w->part);
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
    if (w->f) {
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
    if (w->f) return set_bad(w, LM_ERR_MISUSE, "tensor declared after writing began:", name);
    const cm_type_info *ti = cm_type_get(type);
    uint64_t row = 0, n_rows = 1;
    if (n_dims < 1 || n_dims > 4 || !ti || type >= CM_MLX || !cm_type_row_bytes(type, ne[0], &row))
        return set_bad(w, LM_ERR_MISUSE, "bad type or shape of tensor", name);
    for (uint32_t d = 1; d < n_dims; d++) n_rows *= ne[d];
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return set_bad(w, LM_ERR_MISUSE, "duplicate tensor", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = lm_realloc(w->t, cap * sizeof *t);
        if (!t) return set_bad(w, LM_ERR_NOMEM, "tensor table:", name);
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = lm_strdup(name))) return set_bad(w, LM_ERR_NOMEM, "tensor table:", name);
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = row * n_rows;
    w->n_t++;
}

static uint64_t pad_to(uint64_t x) { return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

static lm_status write_bytes(gguf_writer *w, const void *p, size_t n, lm_error *err) {
    if (n && fwrite(p, 1, n, w->f) != n)
        return lm_fail(err, LM_ERR_IO, "%s: write failed: %s", w->part, strerror(errno));
    return LM_OK;
}

static lm_status write_zeros(gguf_writer *w, size_t n, lm_error *err) {
    static const char z[GGUF_ALIGN];
    return write_bytes(w, z, n, err);
}

lm_status gguf_w_begin(gguf_writer *w, const char *path, lm_error *err) {
    if (w->bad == LM_ERR_NOMEM) return lm_fail_nomem(err, w->bad_msg);
    if (w->bad) return lm_fail(err, w->bad, "%s: %s", path, w->bad_msg);
    if (w->f) return lm_fail(err, LM_ERR_MISUSE, "%s: gguf_w_begin called twice", path);
    lm_buf head = {0};
    lm_buf_append(&head, "GGUF", 4);
    put_le(&head, 3, 4);
    put_le(&head, w->n_t, 8);
    put_le(&head, w->n_kv, 8);
    lm_buf_append(&head, w->kv.data ? w->kv.data : "", w->kv.len);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
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
    size_t plen = strlen(path);
    w->path = lm_strdup(path);
    w->part = lm_malloc(plen + 6);
    if (w->part) snprintf(w->part, plen + 6, "%s.part", path);
    if (!w->path || !w->part) {
        lm_buf_free(&head);
        return lm_fail_nomem(err, "path");
    }
    w->f = fopen(w->part, "wb");
    if (!w->f) {
        lm_buf_free(&head);
        return lm_fail(err, LM_ERR_IO, "%s: cannot create: %s", w->part, strerror(errno));
    }
    lm_status st = write_bytes(w, head.data, head.len, err);
    lm_buf_free(&head);
    w->cur = 0;
    w->cur_done = 0;
    return st;
}

lm_status gguf_w_data(gguf_writer *w, const void *data, size_t n, lm_error *err) {
    const uint8_t *p = data;
    if (!w->f) return lm_fail(err, LM_ERR_MISUSE, "gguf_w_data before gguf_w_begin");
    while (n > 0) {
        if (w->cur >= w->n_t)
            return lm_fail(err, LM_ERR_MISUSE, "%s: more tensor data than the tensors declared", w->path);
        wtensor *t = &w->t[w->cur];
        size_t k = (size_t)LM_MIN((uint64_t)n, t->nbytes - w->cur_done);
        lm_status st = write_bytes(w, p, k, err);
        if (st) return st;
        p += k;
        n -= k;
        w->cur_done += k;
        if (w->cur_done == t->nbytes) {
            if ((st = write_zeros(w, (size_t)(pad_to(t->nbytes) - t->nbytes), err))) return st;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return LM_OK;
}

lm_status gguf_w_finish(gguf_writer *w, lm_error *err) {
    if (!w->f) return lm_fail(err, LM_ERR_MISUSE, "gguf_w_finish before gguf_w_begin");
    /* zero-byte tensors complete without a gguf_w_data call */
    while (w->cur < w->n_t && w->t[w->cur].nbytes == 0) w->cur++;
    if (w->cur < w->n_t)
        return lm_fail(err, LM_ERR_MISUSE, "%s: tensor '%s' has %llu of %llu bytes written", w->path,
                       w->t[w->cur].name, (unsigned long long)w->cur_done,
                       (unsigned long long)w->t[w->cur].nbytes);
    FILE *f = w->f;
    w->f = NULL;
    return lm_file_publish(f, w->part, w->path, err);
}
