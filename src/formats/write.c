/* formats/write.c: the part of writing a tensor file that GGUF and safetensors share.
 * Owns: the tensor table, the "<path>.part" file, streaming tensor data in declaration order
 * (with the container's padding after each tensor) and publishing the file when complete.
 * Does not own: the header of either format (gguf_write.c, st_write.c). */
#include "formats/write_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

void wr_release(wr_file *w) {
    if (w->f) {
        fclose(w->f);
        if (w->part) unlink(w->part);
        w->f = NULL;
    }
    for (size_t i = 0; i < w->n_t; i++) lm_free(w->t[i].name);
    lm_free(w->t);
    lm_free(w->path);
    lm_free(w->part);
}

bool wr_has(const wr_file *w, const char *name) {
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return true;
    return false;
}

wr_tensor *wr_add(wr_file *w, const char *name) {
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wr_tensor *t = lm_realloc(w->t, cap * sizeof *t);
        if (!t) return NULL;
        w->t = t;
        w->cap_t = cap;
    }
    wr_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = lm_strdup(name))) return NULL;
    w->n_t++;
    return t;
}

lm_status wr_open(wr_file *w, const char *path, lm_error *err) {
    size_t plen = strlen(path);
    lm_free(w->path); /* an earlier wr_open that failed */
    lm_free(w->part);
    w->path = lm_strdup(path);
    w->part = lm_malloc(plen + 6);
    if (!w->path || !w->part) return lm_fail_nomem(err, "path");
    snprintf(w->part, plen + 6, "%s.part", path);
    w->f = fopen(w->part, "wb");
    if (!w->f) return lm_fail(err, LM_ERR_IO, "%s: cannot create: %s", w->part, strerror(errno));
    w->cur = 0;
    w->cur_done = 0;
    return LM_OK;
}

lm_status wr_bytes(wr_file *w, const void *p, size_t n, lm_error *err) {
    if (n && fwrite(p, 1, n, w->f) != n)
        return lm_fail(err, LM_ERR_IO, "%s: write failed: %s", w->part, strerror(errno));
    return LM_OK;
}

static lm_status write_zeros(wr_file *w, uint64_t n, lm_error *err) {
    static const char z[64];
    for (lm_status st; n > 0; n -= LM_MIN(n, sizeof z))
        if ((st = wr_bytes(w, z, (size_t)LM_MIN(n, sizeof z), err))) return st;
    return LM_OK;
}

/* Zero-byte tensors complete without any data. */
static void skip_empty(wr_file *w) {
    while (w->cur < w->n_t && w->t[w->cur].nbytes == 0) w->cur++;
}

lm_status wr_data(wr_file *w, const void *data, size_t n, lm_error *err) {
    const uint8_t *p = data;
    while (n > 0) {
        skip_empty(w);
        if (w->cur >= w->n_t)
            return lm_fail(err, LM_ERR_MISUSE, "%s: more tensor data than the tensors declared", w->path);
        wr_tensor *t = &w->t[w->cur];
        size_t k = (size_t)LM_MIN((uint64_t)n, t->nbytes - w->cur_done);
        lm_status st = wr_bytes(w, p, k, err);
        if (st) return st;
        p += k;
        n -= k;
        w->cur_done += k;
        if (w->cur_done == t->nbytes) {
            uint64_t pad = w->align > 1 ? (w->align - t->nbytes % w->align) % w->align : 0;
            if ((st = write_zeros(w, pad, err))) return st;
            w->cur++;
            w->cur_done = 0;
        }
    }
    return LM_OK;
}

lm_status wr_finish(wr_file *w, lm_error *err) {
    skip_empty(w);
    if (w->cur < w->n_t)
        return lm_fail(err, LM_ERR_MISUSE, "%s: tensor '%s' has %llu of %llu bytes written", w->path,
                       w->t[w->cur].name, (unsigned long long)w->cur_done,
                       (unsigned long long)w->t[w->cur].nbytes);
    FILE *f = w->f;
    w->f = NULL;
    return lm_file_publish(f, w->part, w->path, err);
}
