/* formats/st_write.c: writes safetensors files.
 * Owns: the JSON header (https://huggingface.co/docs/safetensors: u64 header length, then a JSON
 * object name -> {dtype, shape, data_offsets} plus "__metadata__", then the raw little-endian
 * data), streaming the data in declaration order, and publishing the file only when complete
 * ("<path>.part" renamed at the end).
 * Does not own: what the tensors are (convert/). */
#include "formats/formats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct sw_tensor {
    char *name;
    uint32_t dtype, n_dims;
    uint64_t shape[8];
    uint64_t nbytes, offset;
} sw_tensor;

struct st_writer {
    sw_tensor *t;
    size_t n_t, cap_t;
    char *meta;           /* printed "__metadata__" object, or NULL */
    uint64_t data_bytes;
    lm_buf head;
    FILE *f;
    char *path, *part;
    size_t cur;
    uint64_t cur_done;
};

st_writer *st_writer_new(void) { return lm_calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        if (w->part) unlink(w->part);
    }
    for (size_t i = 0; i < w->n_t; i++) lm_free(w->t[i].name);
    lm_free(w->t);
    lm_free(w->meta);
    lm_buf_free(&w->head);
    lm_free(w->path);
    lm_free(w->part);
    lm_free(w);
}

lm_status st_w_metadata(st_writer *w, const cJSON *metadata, lm_error *err) {
    lm_free(w->meta);
    w->meta = NULL;
    if (!metadata) return LM_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, metadata) {
        if (!cJSON_IsString(e))
            return lm_fail(err, LM_ERR_MISUSE, "safetensors metadata '%s': values must be strings", e->string);
    }
    if (!(w->meta = lm_json_print(metadata))) return lm_fail_nomem(err, "safetensors metadata");
    return LM_OK;
}

lm_status st_w_tensor(st_writer *w, const char *name, uint32_t dtype, uint32_t n_dims,
                      const uint64_t *shape, lm_error *err) {
    if (w->f) return lm_fail(err, LM_ERR_MISUSE, "tensor '%s' declared after writing began", name);
    uint32_t es = st_dtype_size(dtype);
    if (!es || n_dims > 8) return lm_fail(err, LM_ERR_MISUSE, "tensor '%s': bad dtype or shape", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return lm_fail(err, LM_ERR_MISUSE, "duplicate tensor '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        sw_tensor *t = lm_realloc(w->t, cap * sizeof *t);
        if (!t) return lm_fail_nomem(err, "tensor table");
        w->t = t;
        w->cap_t = cap;
    }
    sw_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = lm_strdup(name))) return lm_fail_nomem(err, "tensor table");
    t->dtype = dtype;
    t->n_dims = n_dims;
    t->nbytes = es;
    for (uint32_t d = 0; d < n_dims; d++) {
        t->shape[d] = shape[d];
        t->nbytes *= shape[d];
    }
    t->offset = w->data_bytes;
    w->data_bytes += t->nbytes;
    w->n_t++;
    return LM_OK;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const sw_tensor *const *)a)->name, (*(const sw_tensor *const *)b)->name);
}

/* The header JSON, sorted by name (as MLX and transformers write it), padded with spaces to a
 * multiple of 8 so the data starts aligned. */
static bool build_header(st_writer *w) {
    lm_buf *h = &w->head;
    lm_buf_reset(h);
    lm_buf_putc(h, '{');
    if (w->meta) lm_buf_printf(h, "\"__metadata__\":%s%s", w->meta, w->n_t ? "," : "");
    const sw_tensor **s = lm_malloc((w->n_t ? w->n_t : 1) * sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < w->n_t; i++) s[i] = &w->t[i];
    qsort(s, w->n_t, sizeof *s, cmp_name);
    for (size_t i = 0; i < w->n_t; i++) {
        const sw_tensor *t = s[i];
        lm_buf_putc(h, '"');
        for (const char *c = t->name; *c; c++) {
            if (*c == '"' || *c == '\\') lm_buf_putc(h, '\\');
            lm_buf_putc(h, *c);
        }
        lm_buf_printf(h, "\":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->dtype));
        for (uint32_t d = 0; d < t->n_dims; d++)
            lm_buf_printf(h, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
        lm_buf_printf(h, "],\"data_offsets\":[%llu,%llu]}%s", (unsigned long long)t->offset,
                      (unsigned long long)(t->offset + t->nbytes), i + 1 < w->n_t ? "," : "");
    }
    lm_free(s);
    lm_buf_putc(h, '}');
    while (h->len % 8) lm_buf_putc(h, ' ');
    return !h->oom;
}

static lm_status write_bytes(st_writer *w, const void *p, size_t n, lm_error *err) {
    if (n && fwrite(p, 1, n, w->f) != n)
        return lm_fail(err, LM_ERR_IO, "%s: write failed: %s", w->part, strerror(errno));
    return LM_OK;
}

lm_status st_w_begin(st_writer *w, const char *path, lm_error *err) {
    if (w->f) return lm_fail(err, LM_ERR_MISUSE, "%s: st_w_begin called twice", path);
    if (!build_header(w)) return lm_fail_nomem(err, "safetensors header");
    size_t plen = strlen(path);
    w->path = lm_strdup(path);
    w->part = lm_malloc(plen + 6);
    if (!w->path || !w->part) return lm_fail_nomem(err, "path");
    snprintf(w->part, plen + 6, "%s.part", path);
    w->f = fopen(w->part, "wb");
    if (!w->f) return lm_fail(err, LM_ERR_IO, "%s: cannot create: %s", w->part, strerror(errno));
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)w->head.len >> (8 * i));
    lm_status st = write_bytes(w, len, 8, err);
    if (!st) st = write_bytes(w, w->head.data, w->head.len, err);
    return st;
}

lm_status st_w_data(st_writer *w, const void *data, size_t n, lm_error *err) {
    const uint8_t *p = data;
    if (!w->f) return lm_fail(err, LM_ERR_MISUSE, "st_w_data before st_w_begin");
    while (n > 0) {
        while (w->cur < w->n_t && w->t[w->cur].nbytes == 0) w->cur++;
        if (w->cur >= w->n_t)
            return lm_fail(err, LM_ERR_MISUSE, "%s: more tensor data than the tensors declared", w->path);
        sw_tensor *t = &w->t[w->cur];
        size_t k = (size_t)LM_MIN((uint64_t)n, t->nbytes - w->cur_done);
        lm_status st = write_bytes(w, p, k, err);
        if (st) return st;
        p += k;
        n -= k;
        w->cur_done += k;
        if (w->cur_done == t->nbytes) {
            w->cur++;
            w->cur_done = 0;
        }
    }
    return LM_OK;
}

lm_status st_w_finish(st_writer *w, lm_error *err) {
    if (!w->f) return lm_fail(err, LM_ERR_MISUSE, "st_w_finish before st_w_begin");
    while (w->cur < w->n_t && w->t[w->cur].nbytes == 0) w->cur++;
    if (w->cur < w->n_t)
        return lm_fail(err, LM_ERR_MISUSE, "%s: tensor '%s' has %llu of %llu bytes written", w->path,
                       w->t[w->cur].name, (unsigned long long)w->cur_done,
                       (unsigned long long)w->t[w->cur].nbytes);
    FILE *f = w->f;
    w->f = NULL;
    return lm_file_publish(f, w->part, w->path, err);
}
