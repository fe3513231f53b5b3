/* convert/mlx.c: a model folder as an MLX quantized folder, laid out as mlx-lm's convert writes
 * it: model.safetensors (+ model.safetensors.index.json) where every linear and embedding weight
 * whose rows split into whole groups is stored as packed uint32 `.weight` with `.scales` and
 * `.biases` (the source's float type), other tensors as they were; config.json with
 * "quantization" {group_size, bits, mode "affine"} (and its "quantization_config" twin); the
 * tokenizer and generation files copied. The folder is built as "<out>.part" and renamed when
 * complete.
 * Does not own: the quantizer (compute/quantize.h, MLX's affine rule). */
#include "convert/convert.h"

#include "compute/quantize.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Files of a model folder that are not weights and travel unchanged. */
static const char *const COPY[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                   "chat_template.jinja", "generation_config.json", "tokenizer.model",
                                   "added_tokens.json", "vocab.json", "merges.txt"};

static lm_status copy_file(const char *from, const char *to, lm_error *err) {
    FILE *a = fopen(from, "rb");
    if (!a) return lm_fail(err, LM_ERR_IO, "%s: cannot open: %s", from, strerror(errno));
    FILE *b = fopen(to, "wb");
    if (!b) {
        fclose(a);
        return lm_fail(err, LM_ERR_IO, "%s: cannot create: %s", to, strerror(errno));
    }
    char buf[65536];
    size_t n;
    lm_status st = LM_OK;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) {
            st = lm_fail(err, LM_ERR_IO, "%s: write failed: %s", to, strerror(errno));
            break;
        }
    if (!st && ferror(a)) st = lm_fail(err, LM_ERR_IO, "%s: read failed", from);
    fclose(a);
    if (fclose(b) != 0 && !st) st = lm_fail(err, LM_ERR_IO, "%s: write failed: %s", to, strerror(errno));
    return st;
}

static lm_status write_text(const char *path, const char *text, lm_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return lm_fail(err, LM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    if (fclose(f) != 0) ok = false;
    return ok ? LM_OK : lm_fail(err, LM_ERR_IO, "%s: write failed", path);
}

/* Removes a folder this conversion made (files one level deep). */
static void remove_tree(const char *dir) {
    for (size_t i = 0; i < LM_ARRAY_LEN(COPY); i++) {
        char *p = lm_path_join(dir, COPY[i]);
        if (p) unlink(p);
        lm_free(p);
    }
    static const char *const ours[] = {"model.safetensors", "model.safetensors.part", "config.json",
                                       "model.safetensors.index.json"};
    for (size_t i = 0; i < LM_ARRAY_LEN(ours); i++) {
        char *p = lm_path_join(dir, ours[i]);
        if (p) unlink(p);
        lm_free(p);
    }
    rmdir(dir);
}

typedef struct mlx_t {
    const char *name;       /* source tensor name */
    cv_weight w;
    bool quant;
} mlx_t;

typedef struct q_task {
    const cv_weight *w;
    uint32_t bits, gs, sb_type;
    size_t sb_bytes;        /* bytes of one scale */
    float *scratch;
    uint8_t *q, *scales, *biases;
} q_task;

static void q_run(void *ctx, int ith, int nth) {
    q_task *t = ctx;
    size_t rows = t->w->rows, cols = t->w->cols, ng = cols / t->gs;
    size_t a = rows * (size_t)ith / (size_t)nth, b = rows * (size_t)(ith + 1) / (size_t)nth;
    float *x = t->scratch + (size_t)ith * cols;
    for (size_t r = a; r < b; r++) {
        cv_weight_rows(t->w, r, 1, x);
        cm_mlx_quantize_row(x, cols, t->bits, t->gs, t->sb_type, t->q + r * cols * t->bits / 8,
                            t->scales + r * ng * t->sb_bytes, t->biases + r * ng * t->sb_bytes);
    }
}

lm_status cv_write_mlx(cv_src *s, const char *out, const lm_convert_params *p, lm_pool *pool,
                       lm_error *err) {
    const uint32_t bits = (uint32_t)p->mlx_bits, gs = (uint32_t)p->mlx_group_size;
    if (lm_path_exists(out)) return lm_fail(err, LM_ERR_IO, "%s: already exists; convert writes a new folder", out);
    /* the float type of unquantized tensors, scales and biases: the source's */
    uint32_t dt = ST_F16, cmt = CM_F16;
    if (!strcmp(s->cfg.torch_dtype, "bfloat16")) dt = ST_BF16, cmt = CM_BF16;
    else if (!strcmp(s->cfg.torch_dtype, "float32")) dt = ST_F32, cmt = CM_F32;
    size_t es = st_dtype_size(dt);

    size_t ol = strlen(out);
    char *part = lm_malloc(ol + 6);
    mlx_t *ts = lm_calloc((size_t)s->st->n_tensors + 1, sizeof *ts);
    st_writer *w = st_writer_new();
    char *model = NULL, *cfgp = NULL, *idxp = NULL, *text = NULL;
    cJSON *cfg = NULL, *idx = NULL;
    float *scratch = NULL;
    uint8_t *buf = NULL;
    lm_status st = LM_OK;
    bool made = false;
    if (!part || !ts || !w) {
        st = lm_fail_nomem(err, "MLX writer");
        goto done;
    }
    snprintf(part, ol + 6, "%s.part", out);
    if (mkdir(part, 0755) != 0) {
        st = lm_fail(err, LM_ERR_IO, "%s: cannot create: %s", part, strerror(errno));
        goto done;
    }
    made = true;
    if (!(model = lm_path_join(part, "model.safetensors")) || !(cfgp = lm_path_join(part, "config.json")) ||
        !(idxp = lm_path_join(part, "model.safetensors.index.json"))) {
        st = lm_fail_nomem(err, "path");
        goto done;
    }
    cJSON *meta = cJSON_CreateObject();
    if (!meta || !cJSON_AddStringToObject(meta, "format", "mlx")) {
        cJSON_Delete(meta);
        st = lm_fail_nomem(err, "metadata");
        goto done;
    }
    st = st_w_metadata(w, meta, err);
    cJSON_Delete(meta);
    if (st) goto done;

    /* the tensors: linear and embedding weights (2-D .weight) quantized when their rows split
     * into whole groups (mlx-lm's default predicate), the rest in the float type */
    size_t n_t = 0, max_cols = 0;
    uint64_t total = 1, max_bytes = 0;
    for (uint64_t i = 0; i < s->st->n_tensors; i++) {
        const char *nm = s->st->tensors[i].name;
        size_t n = strlen(nm);
        if ((n > 7 && (!strcmp(nm + n - 7, ".scales") || !strcmp(nm + n - 7, ".biases"))) || strstr(nm, "rotary_emb.inv_freq"))
            continue;
        if (s->cfg.tie_word_embeddings && !strcmp(nm, "lm_head.weight")) continue;
        mlx_t *t = &ts[n_t];
        t->name = nm;
        if ((st = cv_weight_find(s, nm, &t->w, err))) goto done;
        t->quant = t->w.n_dims == 2 && n > 7 && !strcmp(nm + n - 7, ".weight") && t->w.cols % gs == 0;
        char sub[320];
        if (t->quant) {
            uint64_t shp[2] = {t->w.rows, t->w.cols * bits / 32};
            uint64_t sshp[2] = {t->w.rows, t->w.cols / gs};
            if ((st = st_w_tensor(w, nm, ST_U32, 2, shp, err))) goto done;
            snprintf(sub, sizeof sub, "%.*s.scales", (int)(n - 7), nm);
            if ((st = st_w_tensor(w, sub, dt, 2, sshp, err))) goto done;
            snprintf(sub, sizeof sub, "%.*s.biases", (int)(n - 7), nm);
            if ((st = st_w_tensor(w, sub, dt, 2, sshp, err))) goto done;
            max_bytes = LM_MAX(max_bytes, (uint64_t)t->w.rows * (t->w.cols * bits / 8 + 2 * (t->w.cols / gs) * es));
        } else {
            uint64_t shp[2] = {t->w.rows, t->w.cols};
            if ((st = st_w_tensor(w, nm, dt, t->w.n_dims, t->w.n_dims == 1 ? shp + 1 : shp, err))) goto done;
            max_bytes = LM_MAX(max_bytes, (uint64_t)t->w.rows * t->w.cols * es);
        }
        max_cols = LM_MAX(max_cols, t->w.cols);
        total += (uint64_t)t->w.rows * t->w.cols;
        n_t++;
    }
    int nth = lm_pool_size(pool);
    if (!(scratch = lm_malloc((size_t)nth * max_cols * sizeof(float))) || !(buf = lm_malloc((size_t)max_bytes + 1))) {
        st = lm_fail_nomem(err, "MLX conversion buffers");
        goto done;
    }
    if ((st = st_w_begin(w, model, err))) goto done;
    cv_progress pr = {p, 0, total};
    for (size_t i = 0; i < n_t && !st; i++) {
        mlx_t *t = &ts[i];
        size_t rows = t->w.rows, cols = t->w.cols;
        if (t->quant) {
            size_t qb = rows * cols * bits / 8, sb = rows * (cols / gs) * es;
            q_task q = {&t->w, bits, gs, cmt, es, scratch, buf, buf + qb, buf + qb + sb};
            lm_pool_run(pool, q_run, &q);
            st = st_w_data(w, buf, qb + 2 * sb, err);
        } else {
            /* through floats into the float type, a row at a time */
            for (size_t r = 0; r < rows && !st; r++) {
                cv_weight_rows(&t->w, r, 1, scratch);
                cm_quantize_ref(cmt, scratch, buf, cols);
                st = st_w_data(w, buf, cols * es, err);
            }
        }
        if (!st) st = cv_progress_add(&pr, (uint64_t)rows * cols, t->name, err);
    }
    if (!st) st = st_w_finish(w, err);
    if (st) goto done;

    /* config.json: the source's, with MLX's quantization entries */
    {
        char *src_cfg = lm_path_join(s->dir, "config.json");
        if (!src_cfg) {
            st = lm_fail_nomem(err, "path");
            goto done;
        }
        st = lm_json_load(src_cfg, &cfg, err);
        lm_free(src_cfg);
        if (st) goto done;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization");
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
    for (int k = 0; k < 2; k++) {
        cJSON *q = cJSON_AddObjectToObject(cfg, k ? "quantization_config" : "quantization");
        if (!q || !cJSON_AddNumberToObject(q, "group_size", gs) || !cJSON_AddNumberToObject(q, "bits", bits) ||
            !cJSON_AddStringToObject(q, "mode", "affine")) {
            st = lm_fail_nomem(err, "config.json");
            goto done;
        }
    }
    if (!(text = cJSON_Print(cfg))) {
        st = lm_fail_nomem(err, "config.json");
        goto done;
    }
    if ((st = write_text(cfgp, text, err))) goto done;
    cJSON_free(text);
    text = NULL;
    /* the index mlx-lm writes beside the weights */
    idx = cJSON_CreateObject();
    cJSON *im = idx ? cJSON_AddObjectToObject(idx, "metadata") : NULL;
    cJSON *wm = idx ? cJSON_AddObjectToObject(idx, "weight_map") : NULL;
    struct stat sb;
    if (!im || !wm || stat(model, &sb) != 0 || !cJSON_AddNumberToObject(im, "total_size", (double)sb.st_size)) {
        st = lm_fail_nomem(err, "index");
        goto done;
    }
    for (size_t i = 0; i < n_t; i++) {
        size_t n = strlen(ts[i].name);
        static const char *const sfx[] = {"", ".scales", ".biases"};
        for (int k = 0; k < (ts[i].quant ? 3 : 1); k++) {
            char nm[320];
            if (k) snprintf(nm, sizeof nm, "%.*s%s", (int)(n - 7), ts[i].name, sfx[k]);
            else snprintf(nm, sizeof nm, "%s", ts[i].name);
            if (!cJSON_AddStringToObject(wm, nm, "model.safetensors")) {
                st = lm_fail_nomem(err, "index");
                goto done;
            }
        }
    }
    if (!(text = cJSON_Print(idx))) {
        st = lm_fail_nomem(err, "index");
        goto done;
    }
    if ((st = write_text(idxp, text, err))) goto done;
    for (size_t i = 0; i < LM_ARRAY_LEN(COPY) && !st; i++) {
        char *from = lm_path_join(s->dir, COPY[i]), *to = lm_path_join(part, COPY[i]);
        if (!from || !to) st = lm_fail_nomem(err, "path");
        else if (lm_path_exists(from)) st = copy_file(from, to, err);
        lm_free(from);
        lm_free(to);
    }
    if (!st && rename(part, out) != 0) st = lm_fail(err, LM_ERR_IO, "%s: cannot rename to %s: %s", part, out, strerror(errno));
    if (!st) made = false;
done:
    st_writer_free(w);
    if (made) remove_tree(part);
    if (text) cJSON_free(text);
    cJSON_Delete(cfg);
    cJSON_Delete(idx);
    lm_free(scratch);
    lm_free(buf);
    lm_free(ts);
    lm_free(model);
    lm_free(cfgp);
    lm_free(idxp);
    lm_free(part);
    return st;
}
