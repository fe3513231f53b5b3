/* formats/st_write.c: writes safetensors files.
 * Owns: the JSON header (https://huggingface.co/docs/safetensors: u64 header length, then a JSON
 * object name -> {dtype, shape, data_offsets} plus "__metadata__", then the raw little-endian
 * data).
 * Does not own: streaming the data and publishing the file (formats/write.c) or what the
 * tensors are (convert/). */
#include "formats/write_internal.h"

#include <stdlib.h>

struct st_writer {
    wr_file out;          /* the tensor table (type: enum st_dtype), then the file; no padding */
    char *meta;           /* printed "__metadata__" object, or NULL */
    uint64_t data_bytes;
    lm_buf head;
};

st_writer *st_writer_new(void) { return lm_calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    wr_release(&w->out);
    lm_free(w->meta);
    lm_buf_free(&w->head);
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
    if (w->out.f) return lm_fail(err, LM_ERR_MISUSE, "tensor '%s' declared after writing began", name);
    uint32_t es = st_dtype_size(dtype);
    if (!es || n_dims > 8) return lm_fail(err, LM_ERR_MISUSE, "tensor '%s': bad dtype or shape", name);
    if (wr_has(&w->out, name)) return lm_fail(err, LM_ERR_MISUSE, "duplicate tensor '%s'", name);
    wr_tensor *t = wr_add(&w->out, name);
    if (!t) return lm_fail_nomem(err, "tensor table");
    t->type = dtype;
    t->n_dims = n_dims;
    t->nbytes = es;
    for (uint32_t d = 0; d < n_dims; d++) {
        t->ne[d] = shape[d];
        t->nbytes *= shape[d];
    }
    t->offset = w->data_bytes;
    w->data_bytes += t->nbytes;
    return LM_OK;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const wr_tensor *const *)a)->name, (*(const wr_tensor *const *)b)->name);
}

/* The header JSON, sorted by name (as MLX and transformers write it), padded with spaces to a
 * multiple of 8 so the data starts aligned. */
static bool build_header(st_writer *w) {
    lm_buf *h = &w->head;
    lm_buf_reset(h);
    lm_buf_putc(h, '{');
    size_t n_t = w->out.n_t;
    if (w->meta) lm_buf_printf(h, "\"__metadata__\":%s%s", w->meta, n_t ? "," : "");
    const wr_tensor **s = lm_malloc((n_t ? n_t : 1) * sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < n_t; i++) s[i] = &w->out.t[i];
    qsort(s, n_t, sizeof *s, cmp_name);
    for (size_t i = 0; i < n_t; i++) {
        const wr_tensor *t = s[i];
        lm_buf_putc(h, '"');
        for (const char *c = t->name; *c; c++) {
            if (*c == '"' || *c == '\\') lm_buf_putc(h, '\\');
            lm_buf_putc(h, *c);
        }
        lm_buf_printf(h, "\":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->type));
        for (uint32_t d = 0; d < t->n_dims; d++)
            lm_buf_printf(h, "%s%llu", d ? "," : "", (unsigned long long)t->ne[d]);
        lm_buf_printf(h, "],\"data_offsets\":[%llu,%llu]}%s", (unsigned long long)t->offset,
                      (unsigned long long)(t->offset + t->nbytes), i + 1 < n_t ? "," : "");
    }
    lm_free(s);
    lm_buf_putc(h, '}');
    while (h->len % 8) lm_buf_putc(h, ' ');
    return !h->oom;
}

lm_status st_w_begin(st_writer *w, const char *path, lm_error *err) {
    if (w->out.f) return lm_fail(err, LM_ERR_MISUSE, "%s: st_w_begin called twice", path);
    if (!build_header(w)) return lm_fail_nomem(err, "safetensors header");
    lm_status st = wr_open(&w->out, path, err);
    if (st) return st;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)w->head.len >> (8 * i));
    st = wr_bytes(&w->out, len, 8, err);
    if (!st) st = wr_bytes(&w->out, w->head.data, w->head.len, err);
    return st;
}

lm_status st_w_data(st_writer *w, const void *data, size_t n, lm_error *err) {
    if (!w->out.f) return lm_fail(err, LM_ERR_MISUSE, "st_w_data before st_w_begin");
    return wr_data(&w->out, data, n, err);
}

lm_status st_w_finish(st_writer *w, lm_error *err) {
    if (!w->out.f) return lm_fail(err, LM_ERR_MISUSE, "st_w_finish before st_w_begin");
    return wr_finish(&w->out, err);
}
