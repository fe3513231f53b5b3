/* model/model.c: the public model calls: load (GGUF file or Hugging Face folder), free, info,
 * tokenize/detokenize through the model's tokenizer. */
#include "model/model.h"

#include <stdatomic.h>
#include <stdio.h>

#include "chat/chat.h"

static atomic_uint_fast64_t g_generation = 1; /* unique id per loaded model, checked by sessions */

lm_model_params lm_model_default_params(void) {
    lm_model_params p;
    memset(&p, 0, sizeof p);
    p.use_mmap = true;
    return p;
}

static void model_release(lm_model *m) {
    if (!m) return;
    m->magic = 0;
    lm_session_detach_all(m);
    cm_ctx_free(m->cm);
    lm_pool_free(m->pool);
    for (size_t i = 0; i < m->n_owned; i++) lm_free(m->owned[i]);
    lm_free(m->owned);
    lm_free(m->layers);
    lm_free(m->eog);
    lm_free(m->chat_template);
    lm_free(m->path);
    tok_free(m->tok);
    gguf_close(m->gguf);
    st_close(m->st);
    pthread_mutex_destroy(&m->compute_mu);
    pthread_mutex_destroy(&m->sess_mu);
    lm_free(m);
}

void lm_model_free(lm_model *m) { model_release(m); }

static bool build_quant_summary(lm_model *m);

static lm_status add_eog(lm_model *m, lm_token id) {
    if (id < 0 || lm_model_is_eog(m, id)) return LM_OK;
    lm_token *e = lm_realloc(m->eog, (m->n_eog + 1) * sizeof *e);
    if (!e) return LM_ERR_NOMEM;
    m->eog = e;
    m->eog[m->n_eog++] = id;
    return LM_OK;
}

/* Chooses a built-in chat format from the tokenizer's special tokens (never the file name). */
static const char *guess_builtin(const tok_tokenizer *t) {
    if (!t) return NULL;
    if (tok_find(t, "<|start_header_id|>") >= 0) return "llama3";
    if (tok_find(t, "<|im_start|>") >= 0) return "chatml";
    if (tok_find(t, "[INST]") >= 0) return "mistral";
    if (tok_find(t, "<|user|>") >= 0) return "zephyr";
    return NULL;
}

lm_status lm_model_load(const char *path, const lm_model_params *params, lm_model **out, lm_error *err) {
    lm_error_clear(err);
    if (!out || !path) return lm_fail(err, LM_ERR_MISUSE, "lm_model_load: path and out must not be NULL");
    *out = NULL;
    lm_model_params p = params ? *params : lm_model_default_params();
    lm_model *m = lm_calloc(1, sizeof *m);
    if (!m) return lm_fail_nomem(err, "model");
    pthread_mutex_init(&m->compute_mu, NULL);
    pthread_mutex_init(&m->sess_mu, NULL);
    m->log.fn = p.log;
    m->log.user = p.log_user;
    m->path = lm_strdup(path);
    if (!m->path) {
        model_release(m);
        return lm_fail_nomem(err, "model path");
    }
    if (p.progress && p.progress(0.0f, "opening", p.progress_user)) {
        model_release(m);
        return lm_fail(err, LM_ERR_CANCELLED, "%s: loading cancelled", path);
    }
    lm_status st;
    if (p.vocab_only) st = lm_model_load_vocab(m, path, &p, err);
    else if (lm_is_dir(path) && lm_model_is_tokenizer_only(path))
        st = lm_fail(err, LM_ERR_UNSUPPORTED, "%s: a tokenizer without a model (tokenizer.json, no config.json): it can tokenize and render templates (vocab_only), not run", path);
    else if (lm_is_dir(path)) st = lm_model_load_hf(m, path, &p, err);
    else if (lm_path_exists(path)) st = lm_model_load_gguf(m, path, &p, err);
    else st = lm_fail(err, LM_ERR_IO, "%s: no such file or folder", path);
    if (st) {
        model_release(m);
        return st;
    }
    /* end-of-generation ids: the tokenizer's eos and the usual end-of-turn tokens */
    if (m->tok) {
        static const char *const eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|eom_id|>", "<|endoftext|>", "<end_of_turn>"};
        st = add_eog(m, tok_eos(m->tok));
        for (size_t i = 0; !st && i < LM_ARRAY_LEN(eot); i++) st = add_eog(m, tok_find(m->tok, eot[i]));
        if (st) {
            model_release(m);
            return lm_fail_nomem(err, "eos ids");
        }
    }
    /* chat template: the override, else the model's own, else a built-in fallback */
    if (p.chat_template) {
        const char *src = chat_builtin_source(p.chat_template);
        lm_free(m->chat_template);
        m->chat_template = lm_strdup(src ? src : p.chat_template);
        if (!m->chat_template) {
            model_release(m);
            return lm_fail_nomem(err, "chat template");
        }
    } else if (!m->chat_template) {
        const char *name = guess_builtin(m->tok);
        const char *src = name ? chat_builtin_source(name) : NULL;
        if (src && !(m->chat_template = lm_strdup(src))) {
            model_release(m);
            return lm_fail_nomem(err, "chat template");
        }
    }
    /* a vocabulary alone never runs the model: one thread, no workers */
    m->n_threads = p.vocab_only ? 1 : p.n_threads > 0 ? p.n_threads : lm_cpu_count();
    m->pool = lm_pool_new(m->n_threads);
    m->cm = m->pool ? cm_ctx_new(m->pool, p.force_ref_kernels) : NULL;
    if (!m->cm) {
        model_release(m);
        return lm_fail_nomem(err, "thread pool");
    }
    if (p.progress && p.progress(1.0f, "ready", p.progress_user)) {
        model_release(m);
        return lm_fail(err, LM_ERR_CANCELLED, "%s: loading cancelled", path);
    }
    if (p.vocab_only) {
        snprintf(m->quant_summary, sizeof m->quant_summary, "none (vocabulary only)");
    } else if (!build_quant_summary(m)) {
        model_release(m);
        return lm_fail_nomem(err, "weight type summary");
    }
    m->generation = atomic_fetch_add(&g_generation, 1);
    m->magic = LM_MODEL_MAGIC;
    *out = m;
    return LM_OK;
}

static void type_name(const cm_matrix *w, char *out, size_t cap) {
    if (w->type == CM_MLX) {
        snprintf(out, cap, "MLX %u-bit g%u", w->bits, w->group_size);
        return;
    }
    const cm_type_info *ti = cm_type_get(w->type);
    snprintf(out, cap, "%s", ti ? ti->name : "?");
}

/* "Q8_0 x15, F32 x5" for a list of matrices. */
static void group_summary(const cm_matrix *const *ws, size_t n, lm_buf *b) {
    char names[16][32];
    int counts[16];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char t[32];
        type_name(ws[i], t, sizeof t);
        size_t j = 0;
        while (j < k && strcmp(names[j], t)) j++;
        if (j == k && k < 16) {
            snprintf(names[k], sizeof names[k], "%s", t);
            counts[k++] = 0;
        }
        if (j < k) counts[j]++;
    }
    for (size_t j = 0; j < k; j++) lm_buf_printf(b, "%s%s x%d", j ? ", " : "", names[j], counts[j]);
}

/* False when out of memory (the model is then not handed out: a load fails as a whole). */
static bool build_quant_summary(lm_model *m) {
    lm_buf b = {0};
    size_t nl = (size_t)m->hp.n_layer;
    const cm_matrix **ws = lm_malloc((nl * 4 + 1) * sizeof *ws);
    if (!ws) return false;
    for (size_t l = 0; l < nl; l++) {
        ws[4 * l] = &m->layers[l].wq;
        ws[4 * l + 1] = &m->layers[l].wk;
        ws[4 * l + 2] = &m->layers[l].wv;
        ws[4 * l + 3] = &m->layers[l].wo;
    }
    lm_buf_puts(&b, "attn: ");
    group_summary(ws, nl * 4, &b);
    for (size_t l = 0; l < nl; l++) {
        ws[3 * l] = &m->layers[l].w_gate;
        ws[3 * l + 1] = &m->layers[l].w_up;
        ws[3 * l + 2] = &m->layers[l].w_down;
    }
    lm_buf_puts(&b, "; ffn: ");
    group_summary(ws, nl * 3, &b);
    char t[32];
    type_name(&m->tok_embd, t, sizeof t);
    lm_buf_printf(&b, "; embd: %s", t);
    if (m->output.data == m->tok_embd.data) {
        lm_buf_puts(&b, "; output: tied");
    } else {
        type_name(&m->output, t, sizeof t);
        lm_buf_printf(&b, "; output: %s", t);
    }
    snprintf(m->quant_summary, sizeof m->quant_summary, "%s", b.data ? b.data : "");
    bool ok = !b.oom;
    lm_buf_free(&b);
    lm_free(ws);
    return ok;
}

void lm_model_get_info(const lm_model *m, lm_model_info *o) {
    memset(o, 0, sizeof *o);
    if (!m) return;
    o->arch = m->arch_name;
    o->format = m->format;
    o->kernels = cm_ctx_kernels(m->cm);
    o->n_vocab = m->hp.n_vocab;
    o->n_ctx_train = m->hp.n_ctx_train;
    o->n_embd = m->hp.n_embd;
    o->n_layer = m->hp.n_layer;
    o->n_head = m->hp.n_head;
    o->n_head_kv = m->hp.n_head_kv;
    o->head_dim = m->hp.head_dim;
    o->n_ff = m->hp.n_ff;
    o->rope_theta = m->hp.rope_theta;
    o->norm_eps = m->hp.norm_eps;
    o->n_params = m->n_params;
    o->weight_bytes = m->weight_bytes;
    o->n_threads = m->n_threads;
    o->quant = m->quant_summary;
}

uint64_t lm_model_kv_bytes_per_token(const lm_model *m) {
    /* the default F16 cache (lm_session_params.kv_f32 doubles it) */
    return (uint64_t)m->hp.n_layer * (uint64_t)m->hp.n_head_kv * (uint64_t)m->hp.head_dim * 2u * sizeof(uint16_t);
}

int32_t lm_n_vocab(const lm_model *m) { return m ? m->hp.n_vocab : 0; }
lm_token lm_token_bos(const lm_model *m) { return m && m->tok ? tok_bos(m->tok) : -1; }
lm_token lm_token_eos(const lm_model *m) { return m && m->tok ? tok_eos(m->tok) : -1; }
const char *lm_token_piece(const lm_model *m, lm_token id) { return m && m->tok ? tok_piece(m->tok, id) : NULL; }

static lm_status need_tok(const lm_model *m, lm_error *err) {
    if (!m || m->magic != LM_MODEL_MAGIC) return lm_fail(err, LM_ERR_MISUSE, "the model handle is NULL or freed");
    if (!m->tok)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer (no tokenizer.json); only token ids can be used", m->path);
    return LM_OK;
}

lm_status lm_tokenize(const lm_model *m, const char *text, size_t len, uint32_t flags, lm_token *ids,
                      size_t cap, size_t *n_out, lm_error *err) {
    lm_status st = need_tok(m, err);
    if (st) return st;
    tok_vec v = {0};
    st = tok_encode(m->tok, text, len, flags, &v, err);
    if (st) {
        tok_vec_free(&v);
        return st;
    }
    if (n_out) *n_out = v.n;
    if (v.n > cap) {
        tok_vec_free(&v);
        return lm_fail(err, LM_ERR_TOO_SMALL, "the text needs %zu tokens, the buffer holds %zu", v.n, cap);
    }
    if (v.n) memcpy(ids, v.ids, v.n * sizeof *ids);
    tok_vec_free(&v);
    return LM_OK;
}

lm_status lm_detokenize(const lm_model *m, const lm_token *ids, size_t n, bool skip_special, char *out,
                        size_t cap, size_t *len_out, lm_error *err) {
    lm_status st = need_tok(m, err);
    if (st) return st;
    lm_buf b = {0};
    st = tok_decode(m->tok, ids, n, skip_special, &b, err);
    if (!st && b.oom) st = lm_fail_nomem(err, "text");
    if (st) {
        lm_buf_free(&b);
        return st;
    }
    if (len_out) *len_out = b.len;
    if (b.len >= cap) {
        lm_buf_free(&b);
        return lm_fail(err, LM_ERR_TOO_SMALL, "the text is %zu bytes, the buffer holds %zu", b.len, cap);
    }
    memcpy(out, b.data ? b.data : "", b.len);
    out[b.len] = 0;
    lm_buf_free(&b);
    return LM_OK;
}
