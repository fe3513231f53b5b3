/* formats/gguf.c: reads GGUF v2 and v3 (little-endian).
 * Owns: the header, metadata and tensor table of a mapped file, and checking every length, count
 * and offset against the file size before using it.
 * Does not own: the mapping (core/file.c), what element types are (compute/backend.h) or what
 * keys mean to a model (model/arch.c).
 * Layout (https://github.com/ggerganov/ggml/blob/master/docs/gguf.md): "GGUF", u32 version,
 * u64 n_tensors, u64 n_kv, n_kv x (string key, u32 type, value), n_tensors x (string name,
 * u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), padding to general.alignment, data. */
#include "formats/formats.h"

#include "compute/backend.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define DEFAULT_ALIGNMENT 32
/* Arrays of arrays nest; the spec sets no limit, this one keeps recursion shallow. */
#define MAX_DEPTH 16
/* Smallest encodings, used to refuse counts the remaining bytes could never hold:
 * a kv is key length (8) + type (4) + a one-byte value; a tensor info is name length (8) +
 * n_dims (4) + type (4) + offset (8); a string is its length (8); an array is type + count. */
#define MIN_KV_BYTES 13
#define MIN_TENSOR_BYTES 24
#define MIN_ARRAY_BYTES 12

/* The public struct plus lookup indexes; gguf_file is always allocated as one of these. */
typedef struct gguf_impl {
    gguf_file pub;
    const gguf_kv **kv_by_key;          /* n_kv, sorted by key */
    const gguf_tensor **t_by_name;      /* n_tensors, sorted by name */
} gguf_impl;

/* A cursor over the file. What is being read (a key, a tensor) is kept so that an error message
 * can name it without formatting anything on the success path. */
typedef struct reader {
    const uint8_t *p;
    size_t size, pos;
    const char *name;
    lm_error *err;
    gguf_str key;        /* current key, when key.ptr */
    const char *tensor;  /* current tensor name, when not NULL */
    uint64_t index;      /* current kv or tensor index */
    bool in_tensors;
} reader;

/* "key 'general.name'", "tensor 'output.weight'", "tensor #3" or "metadata #2" into buf. */
static const char *where(const reader *r, char *buf, size_t n) {
    if (r->tensor) snprintf(buf, n, "tensor '%.200s'", r->tensor);
    else if (r->in_tensors) snprintf(buf, n, "tensor #%" PRIu64, r->index);
    else if (r->key.ptr) snprintf(buf, n, "key '%.*s'", (int)LM_MIN(r->key.len, 200), r->key.ptr);
    else if (r->index != UINT64_MAX) snprintf(buf, n, "metadata #%" PRIu64, r->index);
    else snprintf(buf, n, "header");
    return buf;
}

static size_t left(const reader *r) { return r->size - r->pos; }

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Reads n (1..8) bytes little-endian; false (and a message naming what) at end of file. */
static bool rd(reader *r, int n, const char *what, uint64_t *out) {
    if (left(r) < (size_t)n) {
        char w[256];
        lm_fail(r->err, LM_ERR_FORMAT, "%s: %s: %s: needs %d bytes at offset %zu, file has %zu",
                r->name, where(r, w, sizeof w), what, n, r->pos, r->size);
        return false;
    }
    *out = le(r->p + r->pos, n);
    r->pos += (size_t)n;
    return true;
}

static bool rd_u32(reader *r, const char *what, uint32_t *out) {
    uint64_t v;
    if (!rd(r, 4, what, &v)) return false;
    *out = (uint32_t)v;
    return true;
}

static bool rd_str(reader *r, const char *what, gguf_str *out) {
    uint64_t len;
    if (!rd(r, 8, what, &len)) return false;
    if (len > left(r)) {
        char w[256];
        lm_fail(r->err, LM_ERR_FORMAT,
                "%s: %s: %s of %" PRIu64 " bytes at offset %zu runs past the end (file has "
                "%zu bytes)", r->name, where(r, w, sizeof w), what, len, r->pos - 8, r->size);
        return false;
    }
    out->ptr = (const char *)r->p + r->pos;
    out->len = len;
    r->pos += (size_t)len;
    return true;
}

/* Byte size of a fixed-size value type, 0 for STRING, ARRAY and unknown ids. */
static int vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

static bool is_signed(uint32_t t) {
    return t == GGUF_I8 || t == GGUF_I16 || t == GGUF_I32 || t == GGUF_I64;
}

/* Decodes one fixed-size scalar of type t from p into v. */
static void decode_scalar(uint32_t t, const uint8_t *p, gguf_value *v) {
    int n = vtype_size(t);
    uint64_t u = le(p, n);
    v->type = t;
    if (t == GGUF_F32) {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        v->v.f = f;
    } else if (t == GGUF_F64) {
        memcpy(&v->v.f, &u, 8);
    } else if (t == GGUF_BOOL) {
        v->v.b = u != 0;
    } else if (is_signed(t)) {
        /* sign-extend with unsigned arithmetic (no shifts of negative values) */
        uint64_t sign = 1ull << (8 * n - 1);
        v->v.i = (int64_t)((u ^ sign) - sign);
    } else {
        v->v.u = u;
    }
}

static void free_value(gguf_value *v) {
    if (v->type != GGUF_ARRAY || !v->v.arr.items) return;
    for (uint64_t i = 0; i < v->v.arr.n; i++) free_value(&v->v.arr.items[i]);
    lm_free(v->v.arr.items);
    v->v.arr.items = NULL;
}

/* Parses a value of type t at r into v. key names the kv in messages. On failure v may hold
 * partly parsed items; free_value releases them. */
static lm_status parse_value(reader *r, uint32_t t, const gguf_str *key, int depth, gguf_value *v) {
    lm_error *err = r->err;
    v->type = t;
    int sz = vtype_size(t);
    if (sz) {
        if (left(r) < (size_t)sz)
            return lm_fail(err, LM_ERR_FORMAT,
                           "%s: key '%.*s': %s value at offset %zu runs past the end (file has "
                           "%zu bytes)", r->name, (int)LM_MIN(key->len, 200), key->ptr,
                           gguf_vtype_name(t), r->pos, r->size);
        if (t == GGUF_BOOL && r->p[r->pos] > 1)
            return lm_fail(err, LM_ERR_FORMAT, "%s: key '%.*s': bool value %u, expected 0 or 1",
                           r->name, (int)LM_MIN(key->len, 200), key->ptr, r->p[r->pos]);
        decode_scalar(t, r->p + r->pos, v);
        r->pos += (size_t)sz;
        return LM_OK;
    }
    if (t == GGUF_STRING) return rd_str(r, "string", &v->v.s) ? LM_OK : err->code;
    if (t != GGUF_ARRAY)
        return lm_fail(err, LM_ERR_FORMAT, "%s: key '%.*s': unknown value type %u, expected 0..12",
                       r->name, (int)LM_MIN(key->len, 200), key->ptr, t);
    if (depth >= MAX_DEPTH)
        return lm_fail(err, LM_ERR_FORMAT, "%s: key '%.*s': arrays nested deeper than %d",
                       r->name, (int)LM_MIN(key->len, 200), key->ptr, MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    if (!rd_u32(r, "array element type", &et) || !rd(r, 8, "array length", &n)) return err->code;
    v->v.arr.elem_type = et;
    v->v.arr.n = 0; /* set to n once items exist, so a failure frees only what was allocated */
    v->v.arr.raw = r->p + r->pos;
    v->v.arr.items = NULL;
    int esz = vtype_size(et);
    if (esz) {
        if (n > left(r) / (size_t)esz)
            return lm_fail(err, LM_ERR_FORMAT,
                           "%s: key '%.*s': array of %" PRIu64 " %s at offset %zu runs past the "
                           "end (file has %zu bytes)", r->name, (int)LM_MIN(key->len, 200),
                           key->ptr, n, gguf_vtype_name(et), r->pos, r->size);
        if (et == GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (r->p[r->pos + i] > 1)
                    return lm_fail(err, LM_ERR_FORMAT,
                                   "%s: key '%.*s': bool element %" PRIu64 " is %u, expected 0 "
                                   "or 1", r->name, (int)LM_MIN(key->len, 200), key->ptr, i,
                                   r->p[r->pos + i]);
        v->v.arr.n = n;
        r->pos += (size_t)n * (size_t)esz;
        return LM_OK;
    }
    if (et != GGUF_STRING && et != GGUF_ARRAY)
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: key '%.*s': unknown array element type %u, expected 0..12", r->name,
                       (int)LM_MIN(key->len, 200), key->ptr, et);
    size_t min = et == GGUF_STRING ? 8 : MIN_ARRAY_BYTES;
    if (n > left(r) / min)
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: key '%.*s': array of %" PRIu64 " %ss at offset %zu cannot fit in the "
                       "%zu bytes left", r->name, (int)LM_MIN(key->len, 200), key->ptr, n,
                       gguf_vtype_name(et), r->pos, left(r));
    if (n) {
        v->v.arr.items = lm_calloc((size_t)n, sizeof(gguf_value));
        if (!v->v.arr.items)
            return lm_fail(err, LM_ERR_NOMEM, "%s: key '%.*s': out of memory for %" PRIu64
                           " array elements", r->name, (int)LM_MIN(key->len, 200), key->ptr, n);
    }
    v->v.arr.n = n;
    for (uint64_t i = 0; i < n; i++) {
        lm_status st = parse_value(r, et, key, depth + 1, &v->v.arr.items[i]);
        if (st) return st;
    }
    return LM_OK;
}

static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb) {
    int c = memcmp(a, b, LM_MIN(na, nb));
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

static int cmp_kv(const void *a, const void *b) {
    const gguf_kv *x = *(const gguf_kv *const *)a, *y = *(const gguf_kv *const *)b;
    return cmp_bytes(x->key.ptr, (size_t)x->key.len, y->key.ptr, (size_t)y->key.len);
}

static int cmp_name(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    gguf_impl *im = (gguf_impl *)g;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free_value(&g->kv[i].val);
    lm_free(g->kv);
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++) lm_free(g->tensors[i].name);
    lm_free(g->tensors);
    lm_free(im->kv_by_key);
    lm_free(im->t_by_name);
    lm_free(g->path);
    lm_file_close(&g->file);
    lm_free(im);
}

static lm_status parse_tensor_info(reader *r, uint64_t idx, gguf_tensor *t) {
    lm_error *err = r->err;
    gguf_str name;
    r->tensor = NULL;
    r->in_tensors = true;
    r->index = idx;
    if (!rd_str(r, "name", &name)) return err->code;
    if (memchr(name.ptr, 0, (size_t)name.len))
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor #%" PRIu64 ": name contains a NUL byte",
                       r->name, idx);
    t->name = lm_strndup(name.ptr, (size_t)name.len);
    if (!t->name)
        return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory for tensor names", r->name);
    const char *nm = t->name;
    r->tensor = nm;
    if (!rd_u32(r, "n_dims", &t->n_dims)) return err->code;
    if (t->n_dims > 4)
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': n_dims is %u, expected at most 4",
                       r->name, nm, t->n_dims);
    uint64_t n_elems = 1;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (!rd(r, 8, "shape", &t->ne[d])) return err->code;
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX / n_elems)
            return lm_fail(err, LM_ERR_FORMAT,
                           "%s: tensor '%s': ne[%u] is %" PRIu64 ", expected a positive size "
                           "whose product with the others fits in 63 bits", r->name, nm, d,
                           t->ne[d]);
        n_elems *= t->ne[d];
    }
    if (!rd_u32(r, "type", &t->type)) return err->code;
    if (!rd(r, 8, "offset", &t->offset)) return err->code;
    const cm_type_info *ti = t->type >= CM_MLX ? NULL : cm_type_get(t->type);
    if (!ti)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: tensor '%s': unknown tensor type id %u",
                       r->name, nm, t->type);
    uint64_t row_bytes;
    if (!cm_type_row_bytes(t->type, t->ne[0], &row_bytes))
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: tensor '%s': rows of %" PRIu64 " elements are not a whole number of "
                       "%s blocks of %u", r->name, nm, t->ne[0], ti->name, ti->block_size);
    uint64_t n_rows = n_elems / t->ne[0];
    if (row_bytes && n_rows > UINT64_MAX / row_bytes)
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': byte size overflows", r->name, nm);
    t->nbytes = row_bytes * n_rows;
    return LM_OK;
}

static lm_status parse(const uint8_t *data, size_t size, const char *name, gguf_impl *im,
                       lm_error *err) {
    gguf_file *g = &im->pub;
    reader r = {data, size, 0, name, err, {NULL, 0}, NULL, UINT64_MAX, false};
    if (size < 4 || memcmp(data, "GGUF", 4) != 0)
        return lm_fail(err, LM_ERR_FORMAT, "%s: not a GGUF file (expected magic \"GGUF\")", name);
    r.pos = 4;
    if (!rd_u32(&r, "version", &g->version)) return err->code;
    if (g->version == 1)
        return lm_fail(err, LM_ERR_UNSUPPORTED,
                       "%s: GGUF version 1 is not supported (expected 2 or 3; re-convert the "
                       "model)", name);
    if (g->version != 2 && g->version != 3) {
        bool swapped = (g->version & 0xffff) == 0 && g->version != 0;
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (expected "
                       "2 or 3%s)", name, g->version,
                       swapped ? "; this looks like a big-endian file" : "");
    }
    uint64_t n_tensors, n_kv;
    if (!rd(&r, 8, "n_tensors", &n_tensors) || !rd(&r, 8, "n_kv", &n_kv))
        return err->code;
    if (n_kv > left(&r) / MIN_KV_BYTES)
        return lm_fail(err, LM_ERR_FORMAT, "%s: header: n_kv is %" PRIu64 ", more than the %zu "
                       "bytes left could hold", name, n_kv, left(&r));
    if (n_tensors > (left(&r) - n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return lm_fail(err, LM_ERR_FORMAT, "%s: header: n_tensors is %" PRIu64 ", more than the "
                       "%zu bytes left could hold", name, n_tensors, left(&r));

    if (n_kv) {
        g->kv = lm_calloc((size_t)n_kv, sizeof(gguf_kv));
        if (!g->kv) return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory for metadata", name);
        g->n_kv = n_kv;
    }
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        r.key.ptr = NULL;
        r.index = i;
        if (!rd_str(&r, "key", &kv->key)) return err->code;
        r.key = kv->key;
        uint32_t t;
        if (!rd_u32(&r, "value type", &t)) return err->code;
        lm_status st = parse_value(&r, t, &kv->key, 0, &kv->val);
        if (st) return st;
    }
    if (n_kv) {
        im->kv_by_key = lm_malloc((size_t)n_kv * sizeof *im->kv_by_key);
        if (!im->kv_by_key) return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory for metadata",
                                           name);
        for (uint64_t i = 0; i < n_kv; i++) im->kv_by_key[i] = &g->kv[i];
        qsort(im->kv_by_key, (size_t)n_kv, sizeof *im->kv_by_key, cmp_kv);
        for (uint64_t i = 1; i < n_kv; i++)
            if (cmp_kv(&im->kv_by_key[i - 1], &im->kv_by_key[i]) == 0)
                return lm_fail(err, LM_ERR_FORMAT, "%s: key '%.*s' appears more than once",
                               name, (int)LM_MIN(im->kv_by_key[i]->key.len, 200),
                               im->kv_by_key[i]->key.ptr);
    }

    g->alignment = DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_find(g, "general.alignment");
    if (al) {
        uint32_t a;
        if (!gguf_get_u32(g, "general.alignment", &a) || a == 0 || (a & (a - 1)) != 0)
            return lm_fail(err, LM_ERR_FORMAT, "%s: general.alignment: expected a non-zero power "
                           "of two as an unsigned integer (type %s)", name,
                           gguf_vtype_name(al->val.type));
        g->alignment = a;
    }

    if (n_tensors) {
        g->tensors = lm_calloc((size_t)n_tensors, sizeof(gguf_tensor));
        if (!g->tensors) return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory for tensor table",
                                        name);
        g->n_tensors = n_tensors;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        lm_status st = parse_tensor_info(&r, i, &g->tensors[i]);
        if (st) return st;
    }
    /* the data section starts at the next multiple of the alignment; a file without tensors
     * (a vocab-only file) may end before it */
    uint64_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
    g->data_offset = (uint64_t)r.pos + pad;

    if (n_tensors) {
        im->t_by_name = lm_malloc((size_t)n_tensors * sizeof *im->t_by_name);
        if (!im->t_by_name) return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory for tensor "
                                           "table", name);
    }
    uint64_t avail = size >= g->data_offset ? size - g->data_offset : 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': offset %" PRIu64 " is not a "
                           "multiple of the alignment %" PRIu64, name, t->name, t->offset,
                           g->alignment);
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            uint64_t end = g->data_offset + t->offset;
            bool wrap = end < t->offset || end + t->nbytes < end;
            if (wrap)
                return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': offset %" PRIu64 " + %"
                               PRIu64 " bytes overflows, file has %zu", name, t->name, t->offset,
                               t->nbytes, size);
            return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': data ends at byte %" PRIu64
                           ", file has %zu", name, t->name, end + t->nbytes, size);
        }
        t->data = data + g->data_offset + t->offset;
        im->t_by_name[i] = t;
    }
    if (n_tensors) {
        qsort(im->t_by_name, (size_t)n_tensors, sizeof *im->t_by_name, cmp_offset);
        for (uint64_t i = 1; i < n_tensors; i++) {
            const gguf_tensor *a = im->t_by_name[i - 1], *b = im->t_by_name[i];
            if (b->offset < a->offset + a->nbytes)
                return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s' (bytes %" PRIu64 "..%" PRIu64
                               " of the data section) overlaps tensor '%s' (from %" PRIu64 ")",
                               name, a->name, a->offset, a->offset + a->nbytes, b->name,
                               b->offset);
        }
        qsort(im->t_by_name, (size_t)n_tensors, sizeof *im->t_by_name, cmp_name);
        for (uint64_t i = 1; i < n_tensors; i++)
            if (strcmp(im->t_by_name[i - 1]->name, im->t_by_name[i]->name) == 0)
                return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s' appears more than once",
                               name, im->t_by_name[i]->name);
    }
    return LM_OK;
}

lm_status gguf_parse(const void *data, size_t size, const char *name, gguf_file **out,
                     lm_error *err) {
    *out = NULL;
    if (!name) name = "(buffer)";
    if (!data && size)
        return lm_fail(err, LM_ERR_MISUSE, "%s: gguf_parse: NULL data", name);
    gguf_impl *im = lm_calloc(1, sizeof *im);
    if (!im) return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory", name);
    im->pub.path = lm_strdup(name);
    if (!im->pub.path) {
        lm_free(im);
        return lm_fail(err, LM_ERR_NOMEM, "%s: out of memory", name);
    }
    lm_status st = parse(data ? data : (const void *)"", size, name, im, err);
    if (st) {
        gguf_close(&im->pub);
        return st;
    }
    *out = &im->pub;
    return LM_OK;
}

lm_status gguf_open(const char *path, bool use_mmap, gguf_file **out, lm_error *err) {
    *out = NULL;
    lm_file f;
    memset(&f, 0, sizeof f);
    lm_status st = lm_file_open(&f, path, use_mmap, err);
    if (st) return st;
    gguf_file *g;
    st = gguf_parse(f.data, f.size, path, &g, err);
    if (st) {
        lm_file_close(&f);
        return st;
    }
    g->file = f; /* the file now belongs to g and is closed by gguf_close */
    *out = g;
    return LM_OK;
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    if (!g || !key) return NULL;
    const gguf_impl *im = (const gguf_impl *)g;
    size_t klen = strlen(key);
    if (!im->kv_by_key) return NULL;
    size_t lo = 0, hi = (size_t)g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const gguf_kv *kv = im->kv_by_key[mid];
        int c = cmp_bytes(kv->key.ptr, (size_t)kv->key.len, key, klen);
        if (c == 0) return kv;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    if (!g || !name) return NULL;
    const gguf_impl *im = (const gguf_impl *)g;
    if (!im->t_by_name) return NULL;
    size_t lo = 0, hi = (size_t)g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(im->t_by_name[mid]->name, name);
        if (c == 0) return im->t_by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static bool is_uint(uint32_t t) {
    return t == GGUF_U8 || t == GGUF_U16 || t == GGUF_U32 || t == GGUF_U64;
}

bool gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    const gguf_value *v = &kv->val;
    if (is_uint(v->type) && v->v.u <= UINT32_MAX) *out = (uint32_t)v->v.u;
    else if (is_signed(v->type) && v->v.i >= 0 && v->v.i <= (int64_t)UINT32_MAX)
        *out = (uint32_t)v->v.i;
    else return false;
    return true;
}

bool gguf_get_i64(const gguf_file *g, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    const gguf_value *v = &kv->val;
    if (is_uint(v->type) && v->v.u <= (uint64_t)INT64_MAX) *out = (int64_t)v->v.u;
    else if (is_signed(v->type)) *out = v->v.i;
    else return false;
    return true;
}

bool gguf_get_f32(const gguf_file *g, const char *key, float *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    const gguf_value *v = &kv->val;
    if (v->type == GGUF_F32 || v->type == GGUF_F64) *out = (float)v->v.f;
    else if (is_uint(v->type)) *out = (float)v->v.u;
    else if (is_signed(v->type)) *out = (float)v->v.i;
    else return false;
    return true;
}

bool gguf_get_bool(const gguf_file *g, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->val.type != GGUF_BOOL) return false;
    *out = kv->val.v.b;
    return true;
}

bool gguf_get_str(const gguf_file *g, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->val.type != GGUF_STRING) return false;
    *out = kv->val.v.s;
    return true;
}

const gguf_value *gguf_get_arr(const gguf_file *g, const char *key) {
    const gguf_kv *kv = gguf_find(g, key);
    return kv && kv->val.type == GGUF_ARRAY ? &kv->val : NULL;
}

/* Element i of a fixed-size array decoded as a scalar value; false when not applicable. */
static bool arr_elem(const gguf_value *arr, uint64_t i, gguf_value *v) {
    if (!arr || arr->type != GGUF_ARRAY || i >= arr->v.arr.n) return false;
    int sz = vtype_size(arr->v.arr.elem_type);
    if (!sz) return false;
    decode_scalar(arr->v.arr.elem_type, arr->v.arr.raw + i * (uint64_t)sz, v);
    return true;
}

bool gguf_arr_f64(const gguf_value *arr, uint64_t i, double *out) {
    gguf_value v;
    if (!arr_elem(arr, i, &v)) return false;
    if (v.type == GGUF_F32 || v.type == GGUF_F64) *out = v.v.f;
    else if (is_uint(v.type)) *out = (double)v.v.u;
    else if (is_signed(v.type)) *out = (double)v.v.i;
    else if (v.type == GGUF_BOOL) *out = v.v.b;
    else return false;
    return true;
}

bool gguf_arr_i64(const gguf_value *arr, uint64_t i, int64_t *out) {
    gguf_value v;
    if (!arr_elem(arr, i, &v)) return false;
    if (is_uint(v.type) && v.v.u <= (uint64_t)INT64_MAX) *out = (int64_t)v.v.u;
    else if (is_signed(v.type)) *out = v.v.i;
    else if (v.type == GGUF_BOOL) *out = v.v.b;
    else return false;
    return true;
}

bool gguf_str_eq(gguf_str s, const char *z) {
    size_t n = strlen(z);
    return s.len == n && (n == 0 || memcmp(s.ptr, z, n) == 0);
}

const char *gguf_vtype_name(uint32_t t) {
    static const char *const names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32",
                                        "float32", "bool", "string", "array", "uint64", "int64",
                                        "float64"};
    return t < LM_ARRAY_LEN(names) ? names[t] : "unknown";
}
