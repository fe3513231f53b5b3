/* formats/safetensors.c: reads safetensors files and the sets a Hugging Face folder splits
 * its weights into.
 * Owns: the 8-byte header length, the JSON header, checking every dtype, shape and offset against
 * the file before use, and finding a folder's shards (index.json, model*.safetensors, or one file).
 * Does not own: the mapping (core/file.c) or what tensor names mean (model/).
 * Format: https://github.com/huggingface/safetensors#format */
#include "formats.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)
#define ST_MAX_DIMS 8u
/* Offsets and dims arrive as JSON numbers (doubles): exact only up to 2^53. */
#define ST_MAX_EXACT 9007199254740992.0

static const struct {
    const char *name;
    uint32_t size;
} DTYPES[] = {
    [ST_F32] = {"F32", 4},    [ST_F16] = {"F16", 2},     [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},    [ST_I8] = {"I8", 1},       [ST_U8] = {"U8", 1},
    [ST_I16] = {"I16", 2},    [ST_U16] = {"U16", 2},     [ST_I32] = {"I32", 4},
    [ST_U32] = {"U32", 4},    [ST_I64] = {"I64", 8},     [ST_U64] = {"U64", 8},
    [ST_BOOL] = {"BOOL", 1},  [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

uint32_t st_dtype_size(uint32_t dtype) {
    return dtype < LM_ARRAY_LEN(DTYPES) ? DTYPES[dtype].size : 0;
}

const char *st_dtype_name(uint32_t dtype) {
    return dtype < LM_ARRAY_LEN(DTYPES) ? DTYPES[dtype].name : "?";
}

uint32_t st_dtype_ggml(uint32_t dtype) {
    switch (dtype) {
    case ST_F32: return 0;
    case ST_F16: return 1;
    case ST_BF16: return 30;
    default: return UINT32_MAX;
    }
}

static bool dtype_from_name(const char *s, uint32_t *out) {
    for (uint32_t i = 0; i < LM_ARRAY_LEN(DTYPES); i++) {
        if (strcmp(s, DTYPES[i].name) == 0) {
            *out = i;
            return true;
        }
    }
    return false;
}

/* A non-negative integral JSON number that a double holds exactly. */
static bool json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_EXACT || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

/* Tensors of the set being built; tensors[] grows as shards are read. */
typedef struct builder {
    st_set *set;
    size_t cap;
} builder;

static lm_status push_tensor(builder *b, st_tensor **out, lm_error *err) {
    *out = NULL;
    st_set *s = b->set;
    if (s->n_tensors == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        size_t bytes;
        if (!lm_mul_ok(cap, sizeof *s->tensors, &bytes)) return lm_fail_nomem(err, "tensor table");
        st_tensor *t = lm_realloc(s->tensors, bytes);
        if (!t) return lm_fail_nomem(err, "tensor table");
        s->tensors = t;
        b->cap = cap;
    }
    *out = &s->tensors[s->n_tensors];
    memset(*out, 0, sizeof **out);
    return LM_OK;
}

/* Formats a shape as "[a, b, c]" into buf (for messages). */
static void shape_str(const uint64_t *shape, uint32_t n, char *buf, size_t cap) {
    size_t at = 0;
    at += (size_t)snprintf(buf, cap, "[");
    for (uint32_t i = 0; i < n && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%llu", i ? ", " : "",
                               (unsigned long long)shape[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

/* Reads one tensor entry of the header into t (name not set yet). data_size is the size of the
 * data section; data points at its start. */
static lm_status parse_entry(const cJSON *e, const char *name, const uint8_t *data,
                             uint64_t data_size, uint64_t *begin_out, st_tensor *t,
                             lm_error *err) {
    const char *tn = e->string;
    if (!cJSON_IsObject(e))
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': expected an object", name, tn);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': dtype: expected a string", name, tn);
    if (!dtype_from_name(dt->valuestring, &t->dtype))
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", name, tn,
                       dt->valuestring);
    if (!cJSON_IsArray(sh))
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': shape: expected an array", name,
                       tn);
    int nd = cJSON_GetArraySize(sh);
    if (nd < 0 || (uint32_t)nd > ST_MAX_DIMS)
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': shape has %d dims, at most %u allowed",
                       name, tn, nd, ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    uint64_t count = 1;
    bool overflow = false;
    const cJSON *d;
    uint32_t i = 0;
    cJSON_ArrayForEach(d, sh) {
        if (!json_u64(d, &t->shape[i]))
            return lm_fail(err, LM_ERR_FORMAT,
                           "%s: tensor '%s': shape[%u]: expected a non-negative integer", name, tn,
                           i);
        if (t->shape[i] && count > UINT64_MAX / t->shape[i]) overflow = true;
        else count *= t->shape[i];
        i++;
    }
    uint64_t begin, end;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_u64(off->child, &begin) ||
        !json_u64(off->child->next, &end))
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets: expected [begin, end] integers", name, tn);
    uint64_t esize = DTYPES[t->dtype].size;
    if (overflow || count > UINT64_MAX / esize)
        return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s': shape overflows 64 bits", name, tn);
    if (begin > end)
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu]: begin is after end", name, tn,
                       (unsigned long long)begin, (unsigned long long)end);
    if (count * esize != end - begin) {
        char s[128];
        shape_str(t->shape, t->n_dims, s, sizeof s);
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: tensor '%s': shape %s x %s is %llu bytes but data_offsets span %llu",
                       name, tn, s, DTYPES[t->dtype].name, (unsigned long long)(count * esize),
                       (unsigned long long)(end - begin));
    }
    if (end > data_size)
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: tensor '%s': data ends at byte %llu, data section has %llu (file "
                       "truncated?)",
                       name, tn, (unsigned long long)end, (unsigned long long)data_size);
    t->data = data + begin;
    t->nbytes = end - begin;
    *begin_out = begin;
    return LM_OK;
}

typedef struct span {
    uint64_t begin, end;
    const char *name;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Reads the header of one file (data/size) and appends its tensors with file index fi. The
 * metadata of file 0 is kept in the set. */
static lm_status parse_file(builder *b, const uint8_t *data, size_t size, const char *name,
                            uint32_t fi, lm_error *err) {
    if (size < 8)
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: file is %zu bytes, too short for the 8-byte header length", name, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | data[i];
    if (n > size - 8)
        return lm_fail(err, LM_ERR_FORMAT,
                       "%s: header length %llu exceeds the file size %zu (file truncated?)", name,
                       (unsigned long long)n, size);
    if (n < 2 || n > ST_MAX_HEADER)
        return lm_fail(err, LM_ERR_FORMAT, "%s: header length %llu is not between 2 and %u", name,
                       (unsigned long long)n, ST_MAX_HEADER);
    cJSON *root = NULL;
    lm_status st = lm_json_parse((const char *)data + 8, (size_t)n, name, &root, err);
    if (st) return st;
    span *spans = NULL;
    size_t first = b->set->n_tensors, n_spans = 0;
    if (!cJSON_IsObject(root)) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: header: expected a JSON object", name);
        goto done;
    }
    const uint8_t *sect = data + 8 + n;
    uint64_t sect_size = size - 8 - n;
    cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(e)) {
                st = lm_fail(err, LM_ERR_FORMAT, "%s: __metadata__: expected an object", name);
                goto done;
            }
            continue;
        }
        st_tensor *t = NULL;
        uint64_t begin;
        if ((st = push_tensor(b, &t, err))) goto done;
        if ((st = parse_entry(e, name, sect, sect_size, &begin, t, err))) goto done;
        t->file = fi;
        if (!(t->name = lm_strdup(e->string))) {
            st = lm_fail_nomem(err, "tensor name");
            goto done;
        }
        b->set->n_tensors++;
    }
    /* No two tensors may share bytes: sort this file's spans by offset and compare neighbours. */
    n_spans = b->set->n_tensors - first;
    if (n_spans > 1) {
        if (!(spans = lm_calloc(n_spans, sizeof *spans))) {
            st = lm_fail_nomem(err, "tensor spans");
            goto done;
        }
        for (size_t i = 0; i < n_spans; i++) {
            const st_tensor *t = &b->set->tensors[first + i];
            spans[i].begin = (uint64_t)((const uint8_t *)t->data - sect);
            spans[i].end = spans[i].begin + t->nbytes;
            spans[i].name = t->name;
        }
        qsort(spans, n_spans, sizeof *spans, cmp_span);
        for (size_t i = 1; i < n_spans; i++) {
            if (spans[i].begin < spans[i - 1].end) {
                st = lm_fail(err, LM_ERR_FORMAT,
                             "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (bytes "
                             "%llu..%llu)",
                             name, spans[i].name, (unsigned long long)spans[i].begin,
                             (unsigned long long)spans[i].end, spans[i - 1].name,
                             (unsigned long long)spans[i - 1].begin,
                             (unsigned long long)spans[i - 1].end);
                goto done;
            }
        }
    }
    if (fi == 0) {
        cJSON *meta = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
        b->set->metadata = meta;
    }
done:
    lm_free(spans);
    cJSON_Delete(root);
    return st;
}

static int cmp_tensor(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Sorts the set's tensors by name and refuses duplicates (the same name twice in one header, or
 * in two shards). */
static lm_status finish(st_set *s, lm_error *err) {
    if (s->n_tensors > 1) qsort(s->tensors, s->n_tensors, sizeof *s->tensors, cmp_tensor);
    for (uint64_t i = 1; i < s->n_tensors; i++) {
        const st_tensor *a = &s->tensors[i - 1], *b = &s->tensors[i];
        if (strcmp(a->name, b->name) == 0)
            return lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s' appears twice (also in %s)",
                           s->paths[b->file], b->name, s->paths[a->file]);
    }
    return LM_OK;
}

void st_close(st_set *s) {
    if (!s) return;
    for (uint64_t i = 0; i < s->n_tensors; i++) lm_free(s->tensors[i].name);
    lm_free(s->tensors);
    for (uint32_t i = 0; i < s->n_files; i++) {
        if (s->paths) lm_free(s->paths[i]);
        if (s->files) lm_file_close(&s->files[i]);
    }
    lm_free(s->paths);
    lm_free(s->files);
    cJSON_Delete(s->metadata);
    lm_free(s);
}

/* A set with room for n files (paths and files zeroed). */
static st_set *new_set(uint32_t n, bool with_files) {
    st_set *s = lm_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->paths = lm_calloc(n ? n : 1, sizeof *s->paths);
    if (with_files) s->files = lm_calloc(n ? n : 1, sizeof *s->files);
    if (!s->paths || (with_files && !s->files)) {
        st_close(s);
        return NULL;
    }
    s->n_files = n;
    return s;
}

/* The buffer stays the caller's: the set has no lm_file (files is NULL). */
lm_status st_parse(const void *data, size_t size, const char *name, st_set **out, lm_error *err) {
    *out = NULL;
    st_set *s = new_set(1, false);
    if (!s) return lm_fail_nomem(err, "safetensors set");
    builder b = {s, 0};
    lm_status st = LM_OK;
    if (!(s->paths[0] = lm_strdup(name ? name : "safetensors"))) st = lm_fail_nomem(err, "path");
    if (!st) st = parse_file(&b, data, size, s->paths[0], 0, err);
    if (!st) st = finish(s, err);
    if (st) {
        st_close(s);
        return st;
    }
    *out = s;
    return LM_OK;
}

/* Opens paths[0..n) (already in s->paths) and reads their headers. */
static lm_status open_files(st_set *s, bool use_mmap, lm_error *err) {
    builder b = {s, 0};
    for (uint32_t i = 0; i < s->n_files; i++) {
        lm_status st = lm_file_open(&s->files[i], s->paths[i], use_mmap, err);
        if (st) return st;
        st = parse_file(&b, s->files[i].data, s->files[i].size, s->paths[i], i, err);
        if (st) return st;
    }
    return finish(s, err);
}

lm_status st_open_file(const char *path, bool use_mmap, st_set **out, lm_error *err) {
    *out = NULL;
    st_set *s = new_set(1, true);
    if (!s) return lm_fail_nomem(err, "safetensors set");
    lm_status st = LM_OK;
    if (!(s->paths[0] = lm_strdup(path))) st = lm_fail_nomem(err, "path");
    if (!st) st = open_files(s, use_mmap, err);
    if (st) {
        st_close(s);
        return st;
    }
    *out = s;
    return LM_OK;
}

const st_tensor *st_find(const st_set *s, const char *name) {
    if (!s || !name) return NULL;
    uint64_t lo = 0, hi = s->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->tensors[mid].name, name);
        if (c == 0) return &s->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A shard name from an index must stay inside the folder. */
static bool safe_name(const char *n) {
    return n[0] && n[0] != '/' && !strstr(n, "..") && !strchr(n, '\\');
}

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && memcmp(s + n - m, suf, m) == 0;
}

/* Opens the shards named by dir/model.safetensors.index.json; every tensor of weight_map must be
 * in the shard it names. */
static lm_status open_index(const char *dir, const char *ipath, bool use_mmap, st_set **out,
                            lm_error *err) {
    cJSON *idx = NULL;
    char **names = NULL;
    st_set *s = NULL;
    size_t n_names = 0;
    lm_status st = lm_json_load(ipath, &idx, err);
    if (st) return st;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: weight_map: expected an object", ipath);
        goto done;
    }
    int n_map = cJSON_GetArraySize(wm);
    if (n_map <= 0) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: weight_map is empty", ipath);
        goto done;
    }
    if (!(names = lm_calloc((size_t)n_map, sizeof *names))) {
        st = lm_fail_nomem(err, "shard names");
        goto done;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !safe_name(e->valuestring)) {
            st = lm_fail(err, LM_ERR_FORMAT,
                         "%s: weight_map['%s']: expected a file name inside the folder", ipath,
                         e->string);
            goto done;
        }
        names[n_names++] = e->valuestring; /* borrowed from idx */
    }
    /* Each shard once, in name order. */
    qsort(names, n_names, sizeof *names, cmp_str);
    size_t n_uniq = 0;
    for (size_t i = 0; i < n_names; i++)
        if (n_uniq == 0 || strcmp(names[n_uniq - 1], names[i]) != 0) names[n_uniq++] = names[i];
    if (!(s = new_set((uint32_t)n_uniq, true))) {
        st = lm_fail_nomem(err, "safetensors set");
        goto done;
    }
    for (size_t i = 0; i < n_uniq; i++) {
        if (!(s->paths[i] = lm_path_join(dir, names[i]))) {
            st = lm_fail_nomem(err, "path");
            goto done;
        }
        if (!lm_path_exists(s->paths[i])) {
            st = lm_fail(err, LM_ERR_FORMAT, "%s: names shard '%s', which is missing", ipath,
                         names[i]);
            goto done;
        }
    }
    if ((st = open_files(s, use_mmap, err))) goto done;
    cJSON_ArrayForEach(e, wm) {
        const st_tensor *t = st_find(s, e->string);
        const char *key = e->valuestring;
        char **at = bsearch(&key, names, n_uniq, sizeof *names, cmp_str);
        if (!t || !at || t->file != (uint32_t)(at - names)) {
            st = lm_fail(err, LM_ERR_FORMAT, "%s: tensor '%s' is not in shard '%s'", ipath,
                         e->string, e->valuestring);
            goto done;
        }
    }
done:
    lm_free(names);
    cJSON_Delete(idx);
    if (st) {
        st_close(s);
        return st;
    }
    *out = s;
    return LM_OK;
}

/* Lists dir's *.safetensors; with prefix_model only model*.safetensors. Sorted, caller frees. */
static lm_status list_dir(const char *dir, bool prefix_model, char ***out, size_t *n_out,
                          lm_error *err) {
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return lm_fail(err, LM_ERR_IO, "%s: cannot open the folder", dir);
    char **v = NULL;
    size_t n = 0, cap = 0;
    lm_status st = LM_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (!has_suffix(nm, ".safetensors") || nm[0] == '.') continue;
        if (prefix_model && strncmp(nm, "model", 5) != 0) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            char **nv = lm_realloc(v, nc * sizeof *v);
            if (!nv) {
                st = lm_fail_nomem(err, "file list");
                break;
            }
            v = nv;
            cap = nc;
        }
        if (!(v[n] = lm_path_join(dir, nm))) {
            st = lm_fail_nomem(err, "path");
            break;
        }
        n++;
    }
    closedir(d);
    if (st) {
        for (size_t i = 0; i < n; i++) lm_free(v[i]);
        lm_free(v);
        return st;
    }
    if (n > 1) qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    *n_out = n;
    return LM_OK;
}

lm_status st_open_dir(const char *dir, bool use_mmap, st_set **out, lm_error *err) {
    *out = NULL;
    char *ipath = lm_path_join(dir, "model.safetensors.index.json");
    if (!ipath) return lm_fail_nomem(err, "path");
    if (lm_path_exists(ipath)) {
        lm_status st = open_index(dir, ipath, use_mmap, out, err);
        lm_free(ipath);
        return st;
    }
    lm_free(ipath);
    char **list;
    size_t n;
    lm_status st = list_dir(dir, true, &list, &n, err);
    if (st) return st;
    if (n == 0) {
        lm_free(list);
        if ((st = list_dir(dir, false, &list, &n, err))) return st;
        if (n != 1) {
            for (size_t i = 0; i < n; i++) lm_free(list[i]);
            lm_free(list);
            return n == 0 ? lm_fail(err, LM_ERR_FORMAT, "%s: no .safetensors file in the folder",
                                    dir)
                          : lm_fail(err, LM_ERR_FORMAT,
                                    "%s: %zu .safetensors files and no "
                                    "model.safetensors.index.json: which are the weights?",
                                    dir, n);
        }
    }
    st_set *s = new_set((uint32_t)n, true);
    if (!s) {
        for (size_t i = 0; i < n; i++) lm_free(list[i]);
        lm_free(list);
        return lm_fail_nomem(err, "safetensors set");
    }
    for (size_t i = 0; i < n; i++) s->paths[i] = list[i]; /* ownership moves to the set */
    lm_free(list);
    if ((st = open_files(s, use_mmap, err))) {
        st_close(s);
        return st;
    }
    *out = s;
    return LM_OK;
}
