/* convert/convert.c: lm_convert(), a Hugging Face or MLX folder into a GGUF file (or, through
 * convert/mlx.c, an MLX folder).
 * Owns: the GGUF tensor names, llama.cpp's per-tensor type mix for each file type, the
 * architecture metadata, and streaming the converted tensors. Reading the source weights as
 * floats is source.c, shared with the MLX output.
 * The choices follow llama.cpp's convert_hf_to_gguf.py (names, q/k row order, metadata) and
 * llama-quant.cpp (which tensors get which type), so llama.cpp reads the files as its own. */
#include "convert/convert.h"

#include "compute/quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

lm_convert_params lm_convert_default_params(void) {
    lm_convert_params p;
    memset(&p, 0, sizeof p);
    return p;
}

/* ---- file types: llama.cpp's names, default tensor type and general.file_type (llama_ftype) */

typedef struct ftype_desc {
    const char *name;
    uint32_t type;
    uint32_t file_type;
    bool k_mix;          /* the _M mixes: more bits for some attn_v / ffn_down layers */
} ftype_desc;

static const ftype_desc FTYPES[] = {
    {"F32", CM_F32, 0, false},    {"F16", CM_F16, 1, false},    {"BF16", CM_BF16, 32, false},
    {"Q8_0", CM_Q8_0, 7, false},  {"Q4_0", CM_Q4_0, 2, false},  {"Q4_1", CM_Q4_1, 3, false},
    {"Q5_0", CM_Q5_0, 8, false},  {"Q5_1", CM_Q5_1, 9, false},  {"Q4_K_M", CM_Q4_K, 15, true},
    {"Q5_K_M", CM_Q5_K, 17, true}, {"Q6_K", CM_Q6_K, 18, false},
};

static bool is_quant(uint32_t t) { return t != CM_F32 && t != CM_F16 && t != CM_BF16; }

/* ---- the GGUF tensor plan ---- */

enum role { R_EMBD, R_ROPE_FREQS, R_ATTN_NORM, R_Q, R_K, R_V, R_QKV, R_Q_NORM, R_K_NORM, R_O,
            R_FFN_NORM, R_GATE, R_UP, R_DOWN, R_OUT_NORM, R_OUTPUT };

static const struct {
    const char *hf, *gguf;
    int role;
} LAYER_NAMES[] = {
    {"input_layernorm", "attn_norm", R_ATTN_NORM},
    {"post_attention_layernorm", "ffn_norm", R_FFN_NORM},
    {"self_attn.q_proj", "attn_q", R_Q},
    {"self_attn.k_proj", "attn_k", R_K},
    {"self_attn.v_proj", "attn_v", R_V},
    {"self_attn.qkv_proj", "attn_qkv", R_QKV},
    {"self_attn.o_proj", "attn_output", R_O},
    {"self_attn.q_norm", "attn_q_norm", R_Q_NORM},
    {"self_attn.k_norm", "attn_k_norm", R_K_NORM},
    {"mlp.gate_proj", "ffn_gate", R_GATE},
    {"mlp.up_proj", "ffn_up", R_UP},
    {"mlp.gate_up_proj", "ffn_up", R_UP}, /* phi3: [gate; up] as llama.cpp's ffn_up */
    {"mlp.down_proj", "ffn_down", R_DOWN},
};

typedef struct plan {
    char name[96];       /* GGUF name */
    char src[256];       /* HF name, "" for synthesized tensors */
    cv_weight w;
    int group, layer, role;
    bool bias;
    int32_t heads;       /* > 0: interleave q/k rows (or bias elements) in this many heads */
    uint32_t type;
    float *data;         /* synthesized data (rope_freqs), owned */
} plan;

typedef struct conv {
    cv_src *s;
    const lm_convert_params *p;
    const ftype_desc *ft;
    lm_logger log;
    lm_error *err;
    plan *t;
    size_t n_t;
    int32_t n_layer, n_head, n_head_kv, head_dim, n_rot;
} conv;

/* Maps a HF tensor name to its GGUF name; false for names convert does not know. */
static bool map_name(const char *hf, plan *pl) {
    size_t n = strlen(hf);
    bool bias = n > 5 && strcmp(hf + n - 5, ".bias") == 0;
    if (!bias && !(n > 7 && strcmp(hf + n - 7, ".weight") == 0)) return false;
    size_t base = n - (bias ? 5 : 7);
    const char *sfx = bias ? "bias" : "weight";
    pl->bias = bias;
    pl->layer = -1;
    if (base == 18 && !strncmp(hf, "model.embed_tokens", base)) {
        snprintf(pl->name, sizeof pl->name, "token_embd.%s", sfx);
        pl->group = 0, pl->role = R_EMBD;
        return !bias;
    }
    if (base == 10 && !strncmp(hf, "model.norm", base)) {
        snprintf(pl->name, sizeof pl->name, "output_norm.%s", sfx);
        pl->group = 2, pl->role = R_OUT_NORM;
        return !bias;
    }
    if (base == 7 && !strncmp(hf, "lm_head", base)) {
        snprintf(pl->name, sizeof pl->name, "output.%s", sfx);
        pl->group = 2, pl->role = R_OUTPUT;
        return !bias;
    }
    int layer = -1, off = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &off) != 1 || off <= 0 || layer < 0 || layer > 100000) return false;
    for (size_t i = 0; i < LM_ARRAY_LEN(LAYER_NAMES); i++) {
        size_t l = strlen(LAYER_NAMES[i].hf);
        if ((size_t)off + l == base && !strncmp(hf + off, LAYER_NAMES[i].hf, l)) {
            snprintf(pl->name, sizeof pl->name, "blk.%d.%s.%s", layer, LAYER_NAMES[i].gguf, sfx);
            pl->group = 1, pl->layer = layer, pl->role = LAYER_NAMES[i].role;
            return true;
        }
    }
    return false;
}

static int cmp_plan(const void *a, const void *b) {
    const plan *x = a, *y = b;
    if (x->group != y->group) return x->group - y->group;
    if (x->layer != y->layer) return x->layer - y->layer;
    if (x->role != y->role) return x->role - y->role;
    return (int)x->bias - (int)y->bias;
}

/* llama-quant.cpp's use_more_bits: the first and last eighth of the layers and every third one
 * between get more bits in the _M mixes. */
static bool more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static uint32_t fallback_type(uint32_t t) {
    switch (t) {
    case CM_Q4_K: return CM_Q5_0;
    case CM_Q5_K: return CM_Q5_1;
    case CM_Q6_K: return CM_Q8_0;
    default: return t;
    }
}

/* The type of each tensor, as llama.cpp's quantizer assigns them (llama-quant.cpp,
 * llama_tensor_get_type): vectors stay F32; in quantized files the output matrix (the embedding
 * when tied) is Q6_K (Q8_0 when its rows are not a multiple of 256, and kept at Q8_0 in Q8_0
 * files); the _M mixes give Q6_K to attn_v and ffn_down of the more_bits layers and Q5_K / Q6_K
 * to a fused attn_qkv; a row length that is not a multiple of the type's block falls back
 * (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 when not a multiple of 32). */
static lm_status assign_types(conv *c) {
    const ftype_desc *ft = c->ft;
    bool has_output = false;
    int n_attn_v = 0, i_attn_v = 0, n_fallback = 0;
    for (size_t i = 0; i < c->n_t; i++) {
        has_output |= c->t[i].role == R_OUTPUT;
        n_attn_v += (c->t[i].role == R_V || c->t[i].role == R_QKV) && !c->t[i].bias; /* weights only */
    }
    for (size_t i = 0; i < c->n_t; i++) {
        plan *pl = &c->t[i];
        if (pl->w.n_dims != 2 || pl->bias || pl->role == R_ROPE_FREQS) {
            pl->type = CM_F32;
            continue;
        }
        uint32_t t = ft->type;
        size_t ne0 = pl->w.cols;
        if (is_quant(ft->type)) {
            if (pl->role == R_OUTPUT || (!has_output && pl->role == R_EMBD)) {
                if (ne0 % 256) t = CM_Q8_0;
                else if (t != CM_Q8_0) t = CM_Q6_K;
            } else if (pl->role == R_V) {
                if (ft->k_mix && more_bits(i_attn_v, n_attn_v)) t = CM_Q6_K;
                i_attn_v++;
            } else if (pl->role == R_DOWN) {
                if (ft->k_mix && more_bits(pl->layer, c->n_layer)) t = CM_Q6_K;
            } else if (pl->role == R_QKV) {
                if (ft->type == CM_Q4_K) t = CM_Q5_K;
                else if (ft->type == CM_Q5_K) t = CM_Q6_K;
            }
            const cm_type_info *ti = cm_type_get(t);
            if (ne0 % ti->block_size) {
                uint32_t f = fallback_type(t);
                if (f == t)
                    return lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: tensor '%s': rows of %zu are not a multiple of %s's block of %u",
                                   c->s->dir, pl->name, ne0, ti->name, ti->block_size);
                if (ne0 % cm_type_get(f)->block_size) f = CM_F16;
                lm_log(&c->log, LM_LOG_DEBUG, "%s: %zu columns are not a multiple of %u: %s instead of %s", pl->name, ne0,
                       ti->block_size, cm_type_get(f)->name, ti->name);
                t = f;
                n_fallback++;
            }
        }
        pl->type = t;
    }
    if (n_fallback)
        lm_log(&c->log, LM_LOG_INFO, "%d tensors have rows that are not a multiple of 256: they use llama.cpp's fallback types", n_fallback);
    return LM_OK;
}

/* Llama 3 RoPE scaling as llama.cpp stores it: a rope_freqs tensor of per-frequency divisors
 * (convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors). */
static float *llama3_rope_factors(const hf_config *cfg, int32_t head_dim) {
    size_t half = (size_t)head_dim / 2;
    float *f = lm_malloc(half * sizeof(float));
    if (!f) return NULL;
    double factor = cfg->rope_factor > 0 ? cfg->rope_factor : 8.0;
    double low = cfg->rope_low_freq_factor > 0 ? cfg->rope_low_freq_factor : 1.0;
    double high = cfg->rope_high_freq_factor > 0 ? cfg->rope_high_freq_factor : 4.0;
    double old = cfg->rope_original_max_pos > 0 ? cfg->rope_original_max_pos : 8192;
    double low_wl = old / low, high_wl = old / high;
    for (size_t i = 0; i < half; i++) {
        double freq = 1.0 / pow((double)cfg->rope_theta, (double)(2 * i) / (double)head_dim);
        double wl = 2 * M_PI / freq;
        if (wl < high_wl) f[i] = 1.0f;
        else if (wl > low_wl) f[i] = (float)factor;
        else {
            double smooth = (old / wl - low) / (high - low);
            f[i] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
    return f;
}

static lm_status build_plan(conv *c) {
    cv_src *s = c->s;
    c->t = lm_calloc((size_t)s->st->n_tensors + 1, sizeof *c->t);
    if (!c->t) return lm_fail_nomem(c->err, "tensor plan");
    for (uint64_t i = 0; i < s->st->n_tensors; i++) {
        const char *nm = s->st->tensors[i].name;
        size_t n = strlen(nm);
        if ((n > 7 && (!strcmp(nm + n - 7, ".scales") || !strcmp(nm + n - 7, ".biases"))) || strstr(nm, "rotary_emb.inv_freq"))
            continue; /* MLX companions (read with their weight), and a buffer old checkpoints saved */
        plan *pl = &c->t[c->n_t];
        if (!map_name(nm, pl))
            return lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: tensor '%s' is not one convert knows for %s models", s->dir, nm, s->cfg.model_type);
        if (pl->role == R_OUTPUT && s->cfg.tie_word_embeddings) {
            memset(pl, 0, sizeof *pl);
            continue; /* tied: the embedding serves */
        }
        snprintf(pl->src, sizeof pl->src, "%s", nm);
        lm_status st = cv_weight_find(s, nm, &pl->w, c->err);
        if (st) return st;
        if (pl->layer >= c->n_layer)
            return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s': layer %d, but config.json has %d layers", s->dir, nm, pl->layer, c->n_layer);
        if (s->interleave_qk && (pl->role == R_Q || pl->role == R_K)) {
            pl->heads = pl->role == R_Q ? c->n_head : c->n_head_kv;
            size_t rows = pl->w.n_dims == 1 ? pl->w.cols : pl->w.rows;
            if (rows % (size_t)(2 * pl->heads))
                return lm_fail(c->err, LM_ERR_FORMAT, "%s: tensor '%s': %zu rows do not split into %d heads", s->dir, nm, rows, pl->heads);
        }
        c->n_t++;
    }
    if (s->cfg.rope_kind == HF_ROPE_LLAMA3) {
        plan *pl = &c->t[c->n_t++];
        memset(pl, 0, sizeof *pl);
        snprintf(pl->name, sizeof pl->name, "rope_freqs.weight");
        pl->group = 0, pl->layer = -1, pl->role = R_ROPE_FREQS;
        pl->w.n_dims = 1;
        pl->w.rows = 1;
        pl->w.cols = (size_t)c->n_rot / 2;
        if (!(pl->data = llama3_rope_factors(&s->cfg, c->n_rot))) return lm_fail_nomem(c->err, "rope factors");
    }
    qsort(c->t, c->n_t, sizeof *c->t, cmp_plan);
    bool has_embd = false;
    for (size_t i = 0; i < c->n_t; i++) has_embd |= c->t[i].role == R_EMBD;
    if (!has_embd) return lm_fail(c->err, LM_ERR_FORMAT, "%s: missing tensor 'model.embed_tokens.weight'", s->dir);
    if (c->t[0].role == R_EMBD && (int64_t)c->t[0].w.rows != s->cfg.vocab_size)
        return lm_fail(c->err, LM_ERR_FORMAT, "%s: model.embed_tokens.weight has %zu rows but config.json says vocab_size %d",
                       s->dir, c->t[0].w.rows, s->cfg.vocab_size);
    return assign_types(c);
}

/* ---- metadata ---- */

static void kv_arch(gguf_writer *w, const char *arch, const char *key, uint32_t v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    gguf_w_u32(w, k, v);
}

static void kv_arch_f32(gguf_writer *w, const char *arch, const char *key, float v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    gguf_w_f32(w, k, v);
}

static const char *base_name(const char *path, char *buf, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(buf, cap, "%.*s", (int)(n - b), path + b);
    return buf;
}

static lm_status write_metadata(conv *c, gguf_writer *w, bool any_quant) {
    cv_src *s = c->s;
    const hf_config *cfg = &s->cfg;
    const char *a = s->gguf_arch;
    char name[256];
    gguf_w_str(w, "general.architecture", a);
    gguf_w_str(w, "general.type", "model");
    gguf_w_str(w, "general.name", base_name(s->dir, name, sizeof name));
    gguf_w_u32(w, "general.file_type", c->ft->file_type);
    if (any_quant) gguf_w_u32(w, "general.quantization_version", 2);
    kv_arch(w, a, "context_length", (uint32_t)(cfg->max_position_embeddings > 0 ? cfg->max_position_embeddings : 2048));
    kv_arch(w, a, "embedding_length", (uint32_t)cfg->hidden_size);
    kv_arch(w, a, "feed_forward_length", (uint32_t)cfg->intermediate_size);
    kv_arch(w, a, "block_count", (uint32_t)cfg->n_layers);
    kv_arch(w, a, "attention.head_count", (uint32_t)cfg->n_heads);
    kv_arch(w, a, "attention.head_count_kv", (uint32_t)cfg->n_kv_heads);
    kv_arch_f32(w, a, "rope.freq_base", cfg->rope_theta);
    kv_arch_f32(w, a, "attention.layer_norm_rms_epsilon", cfg->rms_norm_eps);
    kv_arch(w, a, "rope.dimension_count", (uint32_t)c->n_rot);
    kv_arch(w, a, "attention.key_length", (uint32_t)c->head_dim);
    kv_arch(w, a, "attention.value_length", (uint32_t)c->head_dim);
    if (cfg->sliding_window > 0) kv_arch(w, a, "attention.sliding_window", (uint32_t)cfg->sliding_window);
    if (!strcmp(a, "phi3"))
        kv_arch(w, a, "rope.scaling.original_context_length",
                (uint32_t)(cfg->rope_original_max_pos > 0 ? cfg->rope_original_max_pos : cfg->max_position_embeddings));
    if (cfg->rope_kind == HF_ROPE_LINEAR && cfg->rope_factor > 0) {
        char k[128];
        snprintf(k, sizeof k, "%s.rope.scaling.type", a);
        gguf_w_str(w, k, "linear");
        kv_arch_f32(w, a, "rope.scaling.factor", cfg->rope_factor);
    }
    return LM_OK;
}

/* ---- streaming the tensors ---- */

typedef struct rows_task {
    const plan *pl;
    size_t r0, n, row_bytes;
    float *scratch;      /* nth * cols */
    uint8_t *out;
    bool failed;
} rows_task;

/* Source row of output row r: llama.cpp's permute for GGUF llama q/k, within each head the
 * first half of the rows (the x of each rotated pair in HF's rotate-half order) and the second
 * half interleaved: out 2i <- in i, out 2i+1 <- in hd/2 + i. */
static size_t src_row(const plan *pl, size_t r, size_t rows) {
    if (pl->heads <= 0) return r;
    size_t hd = rows / (size_t)pl->heads, h = r / hd, j = r % hd;
    return h * hd + (j % 2) * (hd / 2) + j / 2;
}

static void rows_run(void *ctx, int ith, int nth) {
    rows_task *t = ctx;
    const plan *pl = t->pl;
    size_t a = t->n * (size_t)ith / (size_t)nth, b = t->n * (size_t)(ith + 1) / (size_t)nth;
    float *x = t->scratch + (size_t)ith * pl->w.cols;
    for (size_t r = a; r < b; r++) {
        cv_weight_rows(&pl->w, src_row(pl, t->r0 + r, pl->w.rows), 1, x);
        if (!cm_quantize_weights(pl->type, x, t->out + r * t->row_bytes, pl->w.cols)) t->failed = true;
    }
}

static lm_status write_vector(conv *c, gguf_writer *w, const plan *pl, cv_progress *pr) {
    size_t n = pl->w.cols;
    float *v = lm_malloc(n * sizeof(float)), *o = lm_malloc(n * sizeof(float));
    if (!v || !o) {
        lm_free(v);
        lm_free(o);
        return lm_fail_nomem(c->err, pl->name);
    }
    if (pl->data) memcpy(v, pl->data, n * sizeof(float));
    else cv_weight_rows(&pl->w, 0, 1, v);
    for (size_t i = 0; i < n; i++) o[i] = v[src_row(pl, i, n)];
    uint8_t le[4];
    lm_status st = LM_OK;
    for (size_t i = 0; i < n && !st; i++) {
        uint32_t u;
        memcpy(&u, &o[i], 4);
        for (int k = 0; k < 4; k++) le[k] = (uint8_t)(u >> (8 * k));
        st = gguf_w_data(w, le, 4, c->err);
    }
    lm_free(v);
    lm_free(o);
    if (!st) st = cv_progress_add(pr, n, pl->name, c->err);
    return st;
}

static lm_status write_matrix(conv *c, gguf_writer *w, const plan *pl, lm_pool *pool, cv_progress *pr) {
    uint64_t rb64;
    cm_type_row_bytes(pl->type, pl->w.cols, &rb64);
    size_t rb = (size_t)rb64, rows = pl->w.rows, cols = pl->w.cols;
    /* chunks of about 16 MB of output, whole heads when rows are permuted */
    size_t chunk = LM_MAX((size_t)1, ((size_t)16 << 20) / (rb ? rb : 1));
    if (chunk > rows) chunk = rows;
    int nth = lm_pool_size(pool);
    float *scratch = lm_malloc((size_t)nth * cols * sizeof(float));
    uint8_t *out = lm_malloc(chunk * rb);
    lm_status st = LM_OK;
    if (!scratch || !out) st = lm_fail_nomem(c->err, pl->name);
    for (size_t r0 = 0; r0 < rows && !st; r0 += chunk) {
        size_t n = LM_MIN(chunk, rows - r0);
        rows_task t = {pl, r0, n, rb, scratch, out, false};
        lm_pool_run(pool, rows_run, &t);
        if (t.failed) st = lm_fail(c->err, LM_ERR_UNSUPPORTED, "%s: cannot quantize to %s", pl->name, cm_type_get(pl->type)->name);
        if (!st) st = gguf_w_data(w, out, n * rb, c->err);
        if (!st) st = cv_progress_add(pr, (uint64_t)n * cols, pl->name, c->err);
    }
    lm_free(scratch);
    lm_free(out);
    return st;
}

static lm_status write_gguf(conv *c, const char *out, lm_pool *pool) {
    lm_status st = LM_OK;
    gguf_writer *w = gguf_writer_new();
    if (!w) return lm_fail_nomem(c->err, "GGUF writer");
    if (!c->p->vocab_only && (st = build_plan(c))) goto done;
    bool any_quant = false;
    for (size_t i = 0; i < c->n_t; i++) any_quant |= is_quant(c->t[i].type);
    if ((st = write_metadata(c, w, any_quant))) goto done;
    int32_t n_tokens = 0;
    if ((st = cv_vocab_gguf(c->s->dir, &c->s->cfg, c->p->vocab_only ? 0 : c->s->cfg.vocab_size, w, &n_tokens, c->err))) goto done;
    kv_arch(w, c->s->gguf_arch, "vocab_size", (uint32_t)n_tokens);
    cv_progress pr = {c->p, 0, 1};
    for (size_t i = 0; i < c->n_t; i++) {
        const plan *pl = &c->t[i];
        uint64_t ne[2] = {pl->w.cols, pl->w.rows};
        gguf_w_tensor(w, pl->name, pl->type, pl->w.n_dims, ne);
        pr.total += (uint64_t)pl->w.rows * pl->w.cols;
    }
    if ((st = gguf_w_begin(w, out, c->err))) goto done;
    for (size_t i = 0; i < c->n_t && !st; i++) {
        const plan *pl = &c->t[i];
        st = pl->w.n_dims == 1 ? write_vector(c, w, pl, &pr) : write_matrix(c, w, pl, pool, &pr);
    }
    if (!st) st = gguf_w_finish(w, c->err);
done:
    gguf_writer_free(w);
    return st;
}

/* ---- entry ---- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

lm_status lm_convert(const char *src, const char *out, const lm_convert_params *params, lm_error *err) {
    lm_convert_params p = params ? *params : lm_convert_default_params();
    if (!src || !out) return lm_fail(err, LM_ERR_MISUSE, "lm_convert: source and output are required");
    bool mlx;
    if (!p.format) {
        if (!ends_with(out, ".gguf"))
            return lm_fail(err, LM_ERR_MISUSE, "%s: the output of a GGUF conversion must end in .gguf (or ask for format mlx)", out);
        mlx = false;
    } else if (!strcmp(p.format, "gguf")) {
        mlx = false;
    } else if (!strcmp(p.format, "mlx")) {
        mlx = true;
    } else {
        return lm_fail(err, LM_ERR_MISUSE, "format '%s': expected gguf or mlx", p.format);
    }
    const ftype_desc *ft = NULL;
    const char *tname = p.type ? p.type : "F16";
    for (size_t i = 0; i < LM_ARRAY_LEN(FTYPES); i++)
        if (!strcasecmp(FTYPES[i].name, tname)) ft = &FTYPES[i];
    if (!mlx && !ft) return lm_fail(err, LM_ERR_MISUSE, "type '%s': expected F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K_M, Q5_K_M or Q6_K", tname);
    if (mlx) {
        if (p.type) return lm_fail(err, LM_ERR_MISUSE, "type '%s': MLX output takes bits and a group size, not a GGUF type", p.type);
        if (!p.mlx_bits) p.mlx_bits = 4;
        if (!p.mlx_group_size) p.mlx_group_size = 64;
        if (p.mlx_bits != 4 && p.mlx_bits != 8) return lm_fail(err, LM_ERR_MISUSE, "MLX bits %d: expected 4 or 8", (int)p.mlx_bits);
        if (p.mlx_group_size != 32 && p.mlx_group_size != 64)
            return lm_fail(err, LM_ERR_MISUSE, "MLX group size %d: expected 32 or 64", (int)p.mlx_group_size);
        if (p.vocab_only) return lm_fail(err, LM_ERR_MISUSE, "vocab_only is for GGUF output");
    }
    if (!lm_is_dir(src))
        return lm_fail(err, LM_ERR_IO, "%s: not a folder (convert reads Hugging Face and MLX model folders)", src);

    cv_src s;
    memset(&s, 0, sizeof s);
    s.dir = src;
    lm_status st = hf_config_load(src, &s.cfg, err);
    if (st) return st;
    lm_pool *pool = NULL;
    conv c = {&s, &p, ft, {p.log, p.log_user}, err, NULL, 0, 0, 0, 0, 0, 0};
    const char *mt = s.cfg.model_type;
    if (!strcmp(mt, "llama") || !strcmp(mt, "mistral")) {
        s.gguf_arch = "llama"; /* llama.cpp runs Mistral as llama */
        s.interleave_qk = true;
    } else if (!strcmp(mt, "qwen2") || !strcmp(mt, "qwen3") || !strcmp(mt, "phi3")) {
        s.gguf_arch = mt;
    } else {
        st = lm_fail(err, LM_ERR_UNSUPPORTED, "%s/config.json: model_type '%s': convert supports llama, mistral, qwen2, qwen3 and phi3", src, mt);
        goto done;
    }
    c.n_layer = s.cfg.n_layers;
    c.n_head = s.cfg.n_heads;
    c.n_head_kv = s.cfg.n_kv_heads;
    c.head_dim = s.cfg.head_dim;
    c.n_rot = (int32_t)((float)c.head_dim * (s.cfg.partial_rotary_factor > 0 ? s.cfg.partial_rotary_factor : 1.0f));
    c.n_rot -= c.n_rot % 2;
    if (c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.head_dim <= 0 || c.n_rot <= 0 || s.cfg.vocab_size <= 0) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s/config.json: inconsistent sizes (layers %d, heads %d, kv heads %d, head_dim %d, vocab %d)",
                     src, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, s.cfg.vocab_size);
        goto done;
    }
    if (s.cfg.rope_kind != HF_ROPE_DEFAULT && s.cfg.rope_kind != HF_ROPE_LINEAR && s.cfg.rope_kind != HF_ROPE_LLAMA3 && !mlx) {
        st = lm_fail(err, LM_ERR_UNSUPPORTED, "%s/config.json: this rope_scaling type is not supported by convert yet (default, linear and llama3 are)", src);
        goto done;
    }
    if (!(p.vocab_only && !mlx) && (st = st_open_dir(src, true, &s.st, err))) goto done;
    if (!(pool = lm_pool_new(p.n_threads > 0 ? p.n_threads : lm_cpu_count()))) {
        st = lm_fail_nomem(err, "thread pool");
        goto done;
    }
    st = mlx ? cv_write_mlx(&s, out, &p, pool, err) : write_gguf(&c, out, pool);
done:
    for (size_t i = 0; i < c.n_t; i++) lm_free(c.t[i].data);
    lm_free(c.t);
    lm_pool_free(pool);
    st_close(s.st);
    hf_config_free(&s.cfg);
    return st;
}
