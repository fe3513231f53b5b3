/* model/load.c: binds the tensors of a GGUF file or a Hugging Face folder (safetensors, plain or
 * MLX-quantized) to the roles of the architecture table, checking every shape against the
 * hyper-parameters, and computes the RoPE frequencies with their scaling.
 * Does not own: parsing the files (formats/) or running the model (forward.c). */
#include "model/model.h"

#include <math.h>
#include <stdio.h>

lm_status lm_model_keep(lm_model *m, void *p) {
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **o = lm_realloc(m->owned, cap * sizeof *o);
        if (!o) {
            lm_free(p);
            return LM_ERR_NOMEM;
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return LM_OK;
}

bool lm_model_is_eog(const lm_model *m, lm_token id) {
    for (size_t i = 0; i < m->n_eog; i++)
        if (m->eog[i] == id) return true;
    return false;
}

static float *float_copy(lm_model *m, uint32_t type, const void *data, size_t n) {
    float *f = lm_malloc(n * sizeof(float));
    if (!f) return NULL;
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++) {
        if (type == CM_F32) {
            memcpy(&f[i], b + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, b + 2 * i, 2);
            f[i] = type == CM_F16 ? lm_f16_to_f32(h) : lm_bf16_to_f32(h);
        }
    }
    if (lm_model_keep(m, f)) return NULL;
    return f;
}

/* ------------------------------------------------------------------------------------------- */
/* RoPE frequencies                                                                              */

typedef struct rope_scaling {
    int kind; /* enum hf_rope_kind */
    float factor, low, high;
    int32_t orig;
    const float *short_f, *long_f; /* longrope */
    int32_t n_factors;
    const float *freq_factors;     /* GGUF rope_freqs.weight: divide inv_freq by these */
} rope_scaling;

static lm_status compute_inv_freq(lm_model *m, const rope_scaling *rs, lm_error *err) {
    size_t half = (size_t)m->hp.n_rot / 2;
    float *f = lm_malloc(half * sizeof(float));
    if (!f || lm_model_keep(m, f)) return lm_fail_nomem(err, "RoPE table");
    for (size_t i = 0; i < half; i++) {
        double inv = pow((double)m->hp.rope_theta, -2.0 * (double)i / (double)m->hp.n_rot);
        if (rs->freq_factors) inv /= rs->freq_factors[i];
        if (rs->kind == HF_ROPE_LINEAR && rs->factor > 0) inv /= rs->factor;
        if (rs->kind == HF_ROPE_LLAMA3 && rs->factor > 0) {
            double low_wl = rs->orig / rs->low, high_wl = rs->orig / rs->high;
            double wl = 2 * M_PI / inv;
            if (wl > low_wl) inv = inv / rs->factor;
            else if (wl >= high_wl) {
                double smooth = (rs->orig / wl - rs->low) / (rs->high - rs->low);
                inv = (1 - smooth) * inv / rs->factor + smooth * inv;
            }
        }
        f[i] = (float)inv;
    }
    m->net.inv_freq = f;
    m->hp.rope_attn_factor = 1.0f;
    if (rs->kind == HF_ROPE_LONGROPE && rs->short_f && rs->n_factors == (int32_t)half) {
        float *lf = lm_malloc(half * sizeof(float));
        if (!lf || lm_model_keep(m, lf)) return lm_fail_nomem(err, "RoPE table");
        for (size_t i = 0; i < half; i++) {
            lf[i] = f[i] / rs->long_f[i];
            f[i] = f[i] / rs->short_f[i];
        }
        m->net.inv_freq_long = lf;
        m->net.rope_orig_ctx = rs->orig;
        double scale = (double)m->hp.n_ctx_train / (double)(rs->orig > 0 ? rs->orig : 1);
        if (scale > 1.0) m->hp.rope_attn_factor = (float)sqrt(1.0 + log(scale) / log((double)rs->orig));
    }
    return LM_OK;
}

/* ------------------------------------------------------------------------------------------- */
/* GGUF                                                                                          */

typedef struct gguf_ctx {
    lm_model *m;
    gguf_file *g;
    const char *path;
    lm_error *err;
} gguf_ctx;

static const gguf_tensor *gt_get(gguf_ctx *c, const char *name, bool required, lm_status *st) {
    const gguf_tensor *t = gguf_find_tensor(c->g, name);
    if (!t && required) *st = lm_fail(c->err, LM_ERR_FORMAT, "%s: missing tensor '%s'", c->path, name);
    return t;
}

static lm_status gt_matrix(gguf_ctx *c, const char *name, int64_t rows, int64_t cols, cm_matrix *out,
                           bool required) {
    lm_status st = LM_OK;
    const gguf_tensor *t = gt_get(c, name, required, &st);
    if (!t) return st;
    if (t->n_dims > 2 || (int64_t)t->ne[0] != cols || (int64_t)t->ne[1] != rows)
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s' has shape [%llu, %llu], expected [%lld, %lld] from the metadata",
                       c->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (long long)cols, (long long)rows);
    const cm_type_info *ti = cm_type_get(t->type);
    if (!ti || !ti->can_matmul)
        return lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which locallm cannot multiply",
                       c->path, name, ti ? ti->name : "unknown");
    uint64_t rb;
    if (!cm_type_row_bytes(t->type, (uint64_t)cols, &rb))
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s': row of %lld is not a whole number of %s blocks", c->path, name, (long long)cols, ti->name);
    memset(out, 0, sizeof *out);
    out->type = t->type;
    out->rows = (size_t)rows;
    out->cols = (size_t)cols;
    out->data = t->data;
    out->row_bytes = (size_t)rb;
    c->m->weight_bytes += t->nbytes;
    c->m->n_params += (uint64_t)rows * (uint64_t)cols;
    return LM_OK;
}

static lm_status gt_vector(gguf_ctx *c, const char *name, int64_t n, const float **out, bool required) {
    lm_status st = LM_OK;
    *out = NULL;
    const gguf_tensor *t = gt_get(c, name, required, &st);
    if (!t) return st;
    uint64_t count = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    if ((int64_t)count != n)
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s' has %llu elements, expected %lld", c->path, name, (unsigned long long)count, (long long)n);
    if (t->type != CM_F32 && t->type != CM_F16 && t->type != CM_BF16)
        return lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: tensor '%s': vectors must be F32, F16 or BF16", c->path, name);
    *out = float_copy(c->m, t->type, t->data, (size_t)n);
    if (!*out) return lm_fail_nomem(c->err, name);
    c->m->weight_bytes += t->nbytes;
    c->m->n_params += (uint64_t)n;
    return LM_OK;
}

static lm_status gguf_req_u32(gguf_ctx *c, const char *arch, const char *key, int32_t *out, bool required) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint32_t v;
    if (!gguf_get_u32(c->g, full, &v)) {
        if (!required) return LM_OK;
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: missing metadata key '%s'", c->path, full);
    }
    if (v > (1u << 30)) return lm_fail(c->err, LM_ERR_FORMAT, "%s: metadata '%s' = %u is out of range", c->path, full, v);
    *out = (int32_t)v;
    return LM_OK;
}

lm_status lm_model_load_gguf(lm_model *m, const char *path, const lm_model_params *p, lm_error *err) {
    lm_status st = gguf_open(path, p->use_mmap, &m->gguf, err);
    if (st) return st;
    gguf_ctx c = {m, m->gguf, path, err};
    gguf_str a;
    if (!gguf_get_str(m->gguf, "general.architecture", &a))
        return lm_fail(err, LM_ERR_FORMAT, "%s: missing metadata key 'general.architecture'", path);
    char arch[32];
    snprintf(arch, sizeof arch, "%.*s", (int)LM_MIN(a.len, 31), a.ptr);
    int ai = lm_arch_find(arch);
    if (ai < 0)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", path, arch, lm_arch_list());
    const lm_arch_desc *ad = &lm_arch_table[ai];
    lm_hparams *hp = &m->hp;
    hp->arch = ai;
    snprintf(m->arch_name, sizeof m->arch_name, "%s", arch);
    m->format = "gguf";
    if ((st = gguf_req_u32(&c, arch, "embedding_length", &hp->n_embd, true)) ||
        (st = gguf_req_u32(&c, arch, "block_count", &hp->n_layer, true)) ||
        (st = gguf_req_u32(&c, arch, "feed_forward_length", &hp->n_ff, true)) ||
        (st = gguf_req_u32(&c, arch, "attention.head_count", &hp->n_head, true)))
        return st;
    hp->n_head_kv = hp->n_head;
    hp->n_ctx_train = 2048;
    if ((st = gguf_req_u32(&c, arch, "attention.head_count_kv", &hp->n_head_kv, false)) ||
        (st = gguf_req_u32(&c, arch, "context_length", &hp->n_ctx_train, false)))
        return st;
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_ff <= 0 ||
        hp->n_head % hp->n_head_kv != 0)
        return lm_fail(err, LM_ERR_FORMAT, "%s: inconsistent hyper-parameters (embd %d, layers %d, heads %d, kv heads %d, ff %d)",
                       path, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff);
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((st = gguf_req_u32(&c, arch, "attention.key_length", &hp->head_dim, false))) return st;
    hp->n_rot = hp->head_dim;
    if ((st = gguf_req_u32(&c, arch, "rope.dimension_count", &hp->n_rot, false))) return st;
    if (hp->head_dim <= 0 || hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return lm_fail(err, LM_ERR_FORMAT, "%s: head_dim %d / rope dimensions %d are inconsistent", path, hp->head_dim, hp->n_rot);
    char key[128];
    hp->norm_eps = 1e-5f;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    gguf_get_f32(m->gguf, key, &hp->norm_eps);
    hp->rope_theta = 10000.0f;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    gguf_get_f32(m->gguf, key, &hp->rope_theta);
    hp->rope_interleaved = ad->gguf_rope_interleaved;
    snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
    uint32_t sw = 0;
    if (gguf_get_u32(m->gguf, key, &sw)) hp->sliding_window = (int32_t)sw;

    /* tokenizer first: it knows the vocabulary size */
    st = tok_load_gguf(m->gguf, &m->tok, err);
    if (st) return st;
    const gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return lm_fail(err, LM_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    hp->n_vocab = (int32_t)te->ne[1];
    if (tok_n_vocab(m->tok) > hp->n_vocab)
        return lm_fail(err, LM_ERR_FORMAT, "%s: the vocabulary has %d tokens but token_embd.weight has %d rows", path, tok_n_vocab(m->tok), hp->n_vocab);

    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    if ((st = gt_matrix(&c, "token_embd.weight", hp->n_vocab, E, &m->net.tok_embd, true))) return st;
    if ((st = gt_vector(&c, "output_norm.weight", E, &m->net.output_norm, true))) return st;
    if (gguf_find_tensor(m->gguf, "output.weight")) {
        if ((st = gt_matrix(&c, "output.weight", hp->n_vocab, E, &m->net.output, true))) return st;
    } else {
        m->net.output = m->net.tok_embd;
    }
    m->net.layers = lm_calloc((size_t)hp->n_layer, sizeof *m->net.layers);
    if (!m->net.layers) return lm_fail_nomem(err, "layers");
    for (int32_t l = 0; l < hp->n_layer; l++) {
        lm_layer *L = &m->net.layers[l];
        char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, l), n)
        if ((st = gt_vector(&c, NAME("attn_norm.weight"), E, &L->attn_norm, true)) ||
            (st = gt_vector(&c, NAME("ffn_norm.weight"), E, &L->ffn_norm, true)) ||
            (st = gt_matrix(&c, NAME("attn_output.weight"), E, Q, &L->wo, true)) ||
            (st = gt_matrix(&c, NAME("ffn_down.weight"), E, hp->n_ff, &L->w_down, true)))
            return st;
        if (ad->fused_qkv) {
            cm_matrix qkv;
            if ((st = gt_matrix(&c, NAME("attn_qkv.weight"), Q + 2 * KV, E, &qkv, true))) return st;
            L->wq = L->wk = L->wv = qkv;
            L->wq.rows = (size_t)Q;
            L->wk.rows = L->wv.rows = (size_t)KV;
            L->wk.data = (const uint8_t *)qkv.data + (size_t)Q * qkv.row_bytes;
            L->wv.data = (const uint8_t *)qkv.data + (size_t)(Q + KV) * qkv.row_bytes;
        } else {
            if ((st = gt_matrix(&c, NAME("attn_q.weight"), Q, E, &L->wq, true)) ||
                (st = gt_matrix(&c, NAME("attn_k.weight"), KV, E, &L->wk, true)) ||
                (st = gt_matrix(&c, NAME("attn_v.weight"), KV, E, &L->wv, true)))
                return st;
        }
        if (ad->fused_gate_up) {
            cm_matrix gu;
            if ((st = gt_matrix(&c, NAME("ffn_up.weight"), 2 * (int64_t)hp->n_ff, E, &gu, true))) return st;
            L->w_gate = L->w_up = gu;
            L->w_gate.rows = L->w_up.rows = (size_t)hp->n_ff;
            L->w_up.data = (const uint8_t *)gu.data + (size_t)hp->n_ff * gu.row_bytes;
        } else {
            if ((st = gt_matrix(&c, NAME("ffn_gate.weight"), hp->n_ff, E, &L->w_gate, true)) ||
                (st = gt_matrix(&c, NAME("ffn_up.weight"), hp->n_ff, E, &L->w_up, true)))
                return st;
        }
        if (ad->qkv_bias || gguf_find_tensor(m->gguf, NAME("attn_q.bias"))) {
            if ((st = gt_vector(&c, NAME("attn_q.bias"), Q, &L->bq, true)) ||
                (st = gt_vector(&c, NAME("attn_k.bias"), KV, &L->bk, true)) ||
                (st = gt_vector(&c, NAME("attn_v.bias"), KV, &L->bv, true)))
                return st;
        }
        if (ad->qk_norm) {
            if ((st = gt_vector(&c, NAME("attn_q_norm.weight"), hp->head_dim, &L->q_norm, true)) ||
                (st = gt_vector(&c, NAME("attn_k_norm.weight"), hp->head_dim, &L->k_norm, true)))
                return st;
        }
#undef NAME
        if (p->progress && p->progress(0.2f + 0.8f * (float)(l + 1) / (float)hp->n_layer, "binding tensors", p->progress_user))
            return lm_fail(err, LM_ERR_CANCELLED, "%s: loading cancelled", path);
    }

    rope_scaling rs = {0};
    const float *ff = NULL;
    if (gguf_find_tensor(m->gguf, "rope_freqs.weight")) {
        if ((st = gt_vector(&c, "rope_freqs.weight", hp->n_rot / 2, &ff, true))) return st;
        rs.freq_factors = ff;
    }
    gguf_str stype;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (gguf_get_str(m->gguf, key, &stype) && gguf_str_eq(stype, "linear")) {
        rs.kind = HF_ROPE_LINEAR;
        snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
        gguf_get_f32(m->gguf, key, &rs.factor);
    }
    if ((st = compute_inv_freq(m, &rs, err))) return st;

    gguf_str tmpl;
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &tmpl)) {
        m->chat_template = lm_strndup(tmpl.ptr, (size_t)tmpl.len);
        if (!m->chat_template) return lm_fail_nomem(err, "chat template");
    }
    return LM_OK;
}

/* ------------------------------------------------------------------------------------------- */
/* Hugging Face folders                                                                          */

typedef struct hf_ctx {
    lm_model *m;
    st_set *st;
    hf_config *cfg;
    const char *dir;
    lm_error *err;
} hf_ctx;

/* Returns data aligned for its element size, copying misaligned tensors (MLX writes no padding). */
static const void *aligned_data(hf_ctx *c, const st_tensor *t, size_t align) {
    if (((uintptr_t)t->data % align) == 0) return t->data;
    void *p = lm_malloc((size_t)t->nbytes);
    if (!p) return NULL;
    memcpy(p, t->data, (size_t)t->nbytes);
    if (lm_model_keep(c->m, p)) return NULL;
    return p;
}

static lm_status hf_matrix(hf_ctx *c, const char *module, int64_t rows, int64_t cols, cm_matrix *out,
                           bool required) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", module);
    const st_tensor *w = st_find(c->st, name);
    if (!w) {
        if (!required) return LM_OK;
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: missing tensor '%s'", c->dir, name);
    }
    memset(out, 0, sizeof *out);
    char sname[256];
    snprintf(sname, sizeof sname, "%s.scales", module);
    const st_tensor *sc = st_find(c->st, sname);
    if (sc) {
        uint32_t bits = 0, gs = 0;
        if (!hf_config_module_quant(c->cfg, module, &bits, &gs) || bits == 0 || gs == 0)
            return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s' has scales but config.json gives no quantization for '%s'", c->dir, name, module);
        snprintf(sname, sizeof sname, "%s.biases", module);
        const st_tensor *bi = st_find(c->st, sname);
        if (!bi) return lm_fail(c->err, LM_ERR_FORMAT, "%s: missing tensor '%s'", c->dir, sname);
        if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8)
            return lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: '%s' is quantized to %u bits; supported: 2, 3, 4, 5, 6, 8", c->dir, module, bits);
        if (w->dtype != ST_U32 || w->n_dims != 2 || (int64_t)w->shape[0] != rows ||
            (int64_t)w->shape[1] * 32 != cols * (int64_t)bits)
            return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s' has shape [%llu, %llu] %s, expected [%lld, %lld] U32 for %u-bit [%lld, %lld]",
                           c->dir, name, (unsigned long long)w->shape[0], (unsigned long long)(w->n_dims > 1 ? w->shape[1] : 0),
                           st_dtype_name(w->dtype), (long long)rows, (long long)(cols * bits / 32), bits, (long long)rows, (long long)cols);
        if (cols % gs || sc->n_dims != 2 || (int64_t)sc->shape[0] != rows || (int64_t)sc->shape[1] != cols / gs ||
            bi->n_dims != 2 || bi->shape[0] != sc->shape[0] || bi->shape[1] != sc->shape[1] || bi->dtype != sc->dtype)
            return lm_fail(c->err, LM_ERR_FORMAT, "%s: scales/biases of '%s' do not match %lld x %lld in groups of %u", c->dir, module, (long long)rows, (long long)cols, gs);
        uint32_t sbt = st_dtype_ggml(sc->dtype);
        if (sbt == UINT32_MAX) return lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: scales of '%s' are %s; expected F32, F16 or BF16", c->dir, module, st_dtype_name(sc->dtype));
        out->type = CM_MLX;
        out->rows = (size_t)rows;
        out->cols = (size_t)cols;
        out->bits = bits;
        out->group_size = gs;
        out->sb_type = sbt;
        out->row_bytes = (size_t)cols * bits / 8;
        out->data = aligned_data(c, w, 4);
        out->scales = aligned_data(c, sc, st_dtype_size(sc->dtype));
        out->biases = aligned_data(c, bi, st_dtype_size(bi->dtype));
        if (!out->data || !out->scales || !out->biases) return lm_fail_nomem(c->err, name);
        c->m->weight_bytes += w->nbytes + sc->nbytes + bi->nbytes;
        c->m->n_params += (uint64_t)rows * (uint64_t)cols;
        return LM_OK;
    }
    uint32_t type = st_dtype_ggml(w->dtype);
    if (type == UINT32_MAX)
        return lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; expected F32, F16, BF16 or MLX-quantized U32", c->dir, name, st_dtype_name(w->dtype));
    if (w->n_dims != 2 || (int64_t)w->shape[0] != rows || (int64_t)w->shape[1] != cols)
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s' has shape [%llu, %llu], but config.json implies [%lld, %lld]", c->dir, name,
                       (unsigned long long)w->shape[0], (unsigned long long)(w->n_dims > 1 ? w->shape[1] : 0), (long long)rows, (long long)cols);
    out->type = type;
    out->rows = (size_t)rows;
    out->cols = (size_t)cols;
    out->row_bytes = (size_t)cols * st_dtype_size(w->dtype);
    out->data = aligned_data(c, w, st_dtype_size(w->dtype));
    if (!out->data) return lm_fail_nomem(c->err, name);
    c->m->weight_bytes += w->nbytes;
    c->m->n_params += (uint64_t)rows * (uint64_t)cols;
    return LM_OK;
}

static lm_status hf_vector(hf_ctx *c, const char *name, int64_t n, const float **out, bool required) {
    *out = NULL;
    const st_tensor *t = st_find(c->st, name);
    if (!t) {
        if (!required) return LM_OK;
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: missing tensor '%s'", c->dir, name);
    }
    uint32_t type = st_dtype_ggml(t->dtype);
    if (type == UINT32_MAX) return lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; expected F32, F16 or BF16", c->dir, name, st_dtype_name(t->dtype));
    if (t->n_dims != 1 || (int64_t)t->shape[0] != n)
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s' has shape [%llu], but config.json implies [%lld]", c->dir, name,
                       (unsigned long long)(t->n_dims ? t->shape[0] : 0), (long long)n);
    *out = float_copy(c->m, type, t->data, (size_t)n);
    if (!*out) return lm_fail_nomem(c->err, name);
    c->m->weight_bytes += t->nbytes;
    c->m->n_params += (uint64_t)n;
    return LM_OK;
}

/* The hyper-parameters of architecture ai from config.json, checked for consistency. */
static lm_status hf_hparams(lm_model *m, int ai, const hf_config *cfg, const char *dir, lm_error *err) {
    lm_hparams *hp = &m->hp;
    hp->arch = ai;
    snprintf(m->arch_name, sizeof m->arch_name, "%s", cfg->model_type);
    m->format = cfg->has_quant ? "mlx" : "safetensors";
    hp->n_vocab = cfg->vocab_size;
    hp->n_embd = cfg->hidden_size;
    hp->n_layer = cfg->n_layers;
    hp->n_head = cfg->n_heads;
    hp->n_head_kv = cfg->n_kv_heads;
    hp->head_dim = cfg->head_dim;
    hp->n_ff = cfg->intermediate_size;
    hp->n_ctx_train = cfg->max_position_embeddings > 0 ? cfg->max_position_embeddings : 2048;
    hp->norm_eps = cfg->rms_norm_eps;
    hp->rope_theta = cfg->rope_theta;
    hp->n_rot = (int32_t)((float)hp->head_dim * (cfg->partial_rotary_factor > 0 ? cfg->partial_rotary_factor : 1.0f));
    hp->n_rot -= hp->n_rot % 2;
    hp->rope_interleaved = false;
    hp->sliding_window = cfg->sliding_window;
    if (hp->n_vocab <= 0 || hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
        hp->n_head % hp->n_head_kv || hp->head_dim <= 0 || hp->n_ff <= 0 || hp->n_rot <= 0) {
        return lm_fail(err, LM_ERR_FORMAT, "%s/config.json: inconsistent sizes (vocab %d, hidden %d, layers %d, heads %d, kv heads %d, head_dim %d, intermediate %d)",
                       dir, hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff);
    }
    return LM_OK;
}

/* Binds layer l's tensors (model.layers.<l>.*) in the layout architecture ad describes. */
static lm_status hf_layer(hf_ctx *c, const lm_arch_desc *ad, int32_t l, lm_layer *L) {
    const lm_hparams *hp = &c->m->hp;
    const hf_config *cfg = c->cfg;
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    lm_status st;
    char n[128];
#define NAME(s) (snprintf(n, sizeof n, "model.layers.%d." s, l), n)
    if ((st = hf_vector(c, NAME("input_layernorm.weight"), E, &L->attn_norm, true)) ||
        (st = hf_vector(c, NAME("post_attention_layernorm.weight"), E, &L->ffn_norm, true)) ||
        (st = hf_matrix(c, NAME("self_attn.o_proj"), E, Q, &L->wo, true)) ||
        (st = hf_matrix(c, NAME("mlp.down_proj"), E, hp->n_ff, &L->w_down, true)))
        return st;
    if (ad->fused_qkv) {
        cm_matrix qkv;
        if ((st = hf_matrix(c, NAME("self_attn.qkv_proj"), Q + 2 * KV, E, &qkv, true))) return st;
        L->wq = L->wk = L->wv = qkv;
        L->wq.rows = (size_t)Q;
        L->wk.rows = L->wv.rows = (size_t)KV;
        size_t sb_row = qkv.type == CM_MLX ? (qkv.cols / qkv.group_size) * (qkv.sb_type == CM_F32 ? 4 : 2) : 0;
        L->wk.data = (const uint8_t *)qkv.data + (size_t)Q * qkv.row_bytes;
        L->wv.data = (const uint8_t *)qkv.data + (size_t)(Q + KV) * qkv.row_bytes;
        if (qkv.type == CM_MLX) {
            L->wk.scales = (const uint8_t *)qkv.scales + (size_t)Q * sb_row;
            L->wk.biases = (const uint8_t *)qkv.biases + (size_t)Q * sb_row;
            L->wv.scales = (const uint8_t *)qkv.scales + (size_t)(Q + KV) * sb_row;
            L->wv.biases = (const uint8_t *)qkv.biases + (size_t)(Q + KV) * sb_row;
        }
    } else {
        if ((st = hf_matrix(c, NAME("self_attn.q_proj"), Q, E, &L->wq, true)) ||
            (st = hf_matrix(c, NAME("self_attn.k_proj"), KV, E, &L->wk, true)) ||
            (st = hf_matrix(c, NAME("self_attn.v_proj"), KV, E, &L->wv, true)))
            return st;
    }
    if (ad->fused_gate_up) {
        cm_matrix gu;
        if ((st = hf_matrix(c, NAME("mlp.gate_up_proj"), 2 * (int64_t)hp->n_ff, E, &gu, true))) return st;
        L->w_gate = L->w_up = gu;
        L->w_gate.rows = L->w_up.rows = (size_t)hp->n_ff;
        L->w_up.data = (const uint8_t *)gu.data + (size_t)hp->n_ff * gu.row_bytes;
        if (gu.type == CM_MLX) {
            size_t sb_row = (gu.cols / gu.group_size) * (gu.sb_type == CM_F32 ? 4 : 2);
            L->w_up.scales = (const uint8_t *)gu.scales + (size_t)hp->n_ff * sb_row;
            L->w_up.biases = (const uint8_t *)gu.biases + (size_t)hp->n_ff * sb_row;
        }
    } else {
        if ((st = hf_matrix(c, NAME("mlp.gate_proj"), hp->n_ff, E, &L->w_gate, true)) ||
            (st = hf_matrix(c, NAME("mlp.up_proj"), hp->n_ff, E, &L->w_up, true)))
            return st;
    }
    bool bias = ad->qkv_bias || cfg->attention_bias;
    if (bias && !ad->fused_qkv) {
        if ((st = hf_vector(c, NAME("self_attn.q_proj.bias"), Q, &L->bq, true)) ||
            (st = hf_vector(c, NAME("self_attn.k_proj.bias"), KV, &L->bk, true)) ||
            (st = hf_vector(c, NAME("self_attn.v_proj.bias"), KV, &L->bv, true)))
            return st;
    }
    if (ad->qk_norm) {
        if ((st = hf_vector(c, NAME("self_attn.q_norm.weight"), hp->head_dim, &L->q_norm, true)) ||
            (st = hf_vector(c, NAME("self_attn.k_norm.weight"), hp->head_dim, &L->k_norm, true)))
            return st;
    }
#undef NAME
    return LM_OK;
}

/* The end-of-generation ids of config.json / generation_config.json, the tokenizer (optional: a
 * folder without one still runs on ids) and the chat template. */
static lm_status hf_vocab(lm_model *m, const hf_config *cfg, const char *dir, lm_error *err) {
    lm_status st = LM_OK;
    /* end-of-generation ids from config/generation_config */
    for (int32_t i = 0; i < cfg->n_eos; i++) {
        lm_token *e = lm_realloc(m->eog, (m->n_eog + 1) * sizeof *e);
        if (!e) {
            return lm_fail_nomem(err, "eos ids");
        }
        m->eog = e;
        m->eog[m->n_eog++] = cfg->eos_ids[i];
    }

    /* tokenizer (optional: a folder without one still runs on ids) */
    char *tj = lm_path_join(dir, "tokenizer.json");
    if (!tj) {
        return lm_fail_nomem(err, "path");
    }
    bool has_tok = lm_path_exists(tj);
    lm_free(tj);
    if (has_tok && (st = tok_load_dir(dir, &m->tok, err))) return st;
    /* The separate file wins over tokenizer_config.json, as transformers does. One that exists
     * but cannot be read (or allocated) fails the load: running with a different template than
     * the model's own would be a silent change of behaviour. */
    char *cj = lm_path_join(dir, "chat_template.jinja");
    if (!cj) {
        return lm_fail_nomem(err, "path");
    }
    if (lm_path_exists(cj)) {
        size_t len;
        st = lm_read_text(cj, &m->chat_template, &len, err);
    }
    lm_free(cj);
    if (st) return st;
    if (!m->chat_template && m->tok) {
        const char *t = tok_chat_template(m->tok, NULL);
        if (t && !(m->chat_template = lm_strdup(t))) {
            return lm_fail_nomem(err, "chat template");
        }
    }
    return LM_OK;
}

lm_status lm_model_load_hf(lm_model *m, const char *dir, const lm_model_params *p, lm_error *err) {
    hf_config *cfg = lm_calloc(1, sizeof *cfg);
    if (!cfg || lm_model_keep(m, cfg)) return lm_fail_nomem(err, "config");
    lm_status st = hf_config_load(dir, cfg, err);
    if (st) return st;
    /* hf_config owns heap parts; free them at the end of loading (values copied out below) */
    int ai = lm_arch_find(cfg->model_type);
    if (ai < 0) {
        st = lm_fail(err, LM_ERR_UNSUPPORTED, "%s/config.json: model_type '%s' is not supported (supported: %s)", dir, cfg->model_type, lm_arch_list());
        goto done;
    }
    const lm_arch_desc *ad = &lm_arch_table[ai];
    lm_hparams *hp = &m->hp;
    if ((st = hf_hparams(m, ai, cfg, dir, err))) goto done;
    if ((st = st_open_dir(dir, p->use_mmap, &m->st, err))) goto done;
    if (p->progress && p->progress(0.3f, "mapping weights", p->progress_user)) {
        st = lm_fail(err, LM_ERR_CANCELLED, "%s: loading cancelled", dir);
        goto done;
    }
    hf_ctx c = {m, m->st, cfg, dir, err};
    int64_t E = hp->n_embd;
    if ((st = hf_matrix(&c, "model.embed_tokens", hp->n_vocab, E, &m->net.tok_embd, true))) goto done;
    if ((st = hf_vector(&c, "model.norm.weight", E, &m->net.output_norm, true))) goto done;
    bool has_head = st_find(m->st, "lm_head.weight") != NULL;
    if (has_head && !cfg->tie_word_embeddings) {
        if ((st = hf_matrix(&c, "lm_head", hp->n_vocab, E, &m->net.output, true))) goto done;
    } else if (cfg->tie_word_embeddings) {
        m->net.output = m->net.tok_embd;
    } else {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: missing tensor 'lm_head.weight' (config.json says tie_word_embeddings is false)", dir);
        goto done;
    }
    m->net.layers = lm_calloc((size_t)hp->n_layer, sizeof *m->net.layers);
    if (!m->net.layers) {
        st = lm_fail_nomem(err, "layers");
        goto done;
    }
    for (int32_t l = 0; l < hp->n_layer; l++) {
        if ((st = hf_layer(&c, ad, l, &m->net.layers[l]))) goto done;
        if (p->progress && p->progress(0.3f + 0.6f * (float)(l + 1) / (float)hp->n_layer, "binding tensors", p->progress_user)) {
            st = lm_fail(err, LM_ERR_CANCELLED, "%s: loading cancelled", dir);
            goto done;
        }
    }
    rope_scaling rs = {cfg->rope_kind, cfg->rope_factor, cfg->rope_low_freq_factor, cfg->rope_high_freq_factor,
                       cfg->rope_original_max_pos, cfg->rope_short_factor, cfg->rope_long_factor, cfg->n_rope_factors, NULL};
    if ((st = compute_inv_freq(m, &rs, err))) goto done;

    st = hf_vocab(m, cfg, dir, err);
done:
    hf_config_free(cfg);
    return st;
}
