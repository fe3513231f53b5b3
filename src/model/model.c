/* model/model.c: the public model calls: load (GGUF file or Hugging Face folder), free, info,
 * tokenize/detokenize through the model's tokenizer. */
#include "model/model.h"

#include <stdio.h>

#include "chat/chat.h"

lm_model_params lm_model_default_params(void) {
    lm_model_params p;
    memset(&p, 0, sizeof p);
    p.use_mmap = true;
    return p;
}

static void model_destroy(lm_model *m) {
    if (!m) return;
    m->magic = 0;
    if (m->be) {
        if (m->net.backend_data) m->be->ops->release(m->be, &m->net);
        cm_backend_free(m->be);
    }
    for (size_t i = 0; i < m->n_owned; i++) lm_free(m->owned[i]);
    lm_free(m->owned);
    lm_free(m->net.layers);
    lm_free(m->eog);
    jinja_free(m->tmpl);
    lm_free(m->chat_template);
    lm_free(m->path);
    tok_free(m->tok);
    gguf_close(m->gguf);
    st_close(m->st);
    lm_free(m);
}

void lm_model_retain(const lm_model *m) {
    /* the count is the one field that changes after load (see model.h) */
    atomic_fetch_add(&((lm_model *)m)->refs, 1);
}

void lm_model_release(const lm_model *m) {
    if (m && atomic_fetch_sub(&((lm_model *)m)->refs, 1) == 1) model_destroy((lm_model *)m);
}

void lm_model_free(lm_model *m) { lm_model_release(m); }

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

/* How the model writes tool calls: from its template and vocabulary (Hermes/Qwen's
 * <tool_call>, Llama 3.1's <|python_tag|> or bare JSON, Mistral's [TOOL_CALLS]). */
static int guess_tool_format(const lm_model *m) {
    const char *t = m->chat_template ? m->chat_template : "";
    if (strstr(t, "<tool_call>") || (m->tok && tok_find(m->tok, "<tool_call>") >= 0)) return CHAT_TOOLS_HERMES;
    if (strstr(t, "[TOOL_CALLS]") || (m->tok && tok_find(m->tok, "[TOOL_CALLS]") >= 0)) return CHAT_TOOLS_MISTRAL;
    if (strstr(t, "<|python_tag|>") || strstr(t, "<|start_header_id|>") ||
        (m->tok && tok_find(m->tok, "<|python_tag|>") >= 0))
        return CHAT_TOOLS_LLAMA3;
    return CHAT_TOOLS_HERMES; /* the most common convention of small chat models */
}

/* cm_net.drop: a weight the backend copied leaves resident memory (whole pages of the mapping). */
static void drop_pages(void *user, const void *data, size_t bytes) {
    const lm_model *m = user;
    if (m->gguf) lm_file_release(&m->gguf->file, data, bytes);
    /* a folder's tensors: the file that holds the range (the others ignore it) */
    for (uint32_t i = 0; m->st && i < m->st->n_files; i++) lm_file_release(&m->st->files[i], data, bytes);
}

/* The network description the backend runs, from the loaded hyper-parameters. */
static void fill_net(lm_model *m) {
    const lm_hparams *hp = &m->hp;
    cm_net *n = &m->net;
    n->n_vocab = hp->n_vocab;
    n->n_embd = hp->n_embd;
    n->n_layer = hp->n_layer;
    n->n_head = hp->n_head;
    n->n_head_kv = hp->n_head_kv;
    n->head_dim = hp->head_dim;
    n->n_ff = hp->n_ff;
    n->n_rot = hp->n_rot;
    n->norm_eps = hp->norm_eps;
    n->rope_interleaved = hp->rope_interleaved;
    n->rope_attn_factor = hp->rope_attn_factor;
    n->sliding_window = hp->sliding_window;
}

/* The backend of params.device: "cpu" (or force_ref_kernels with NULL/"auto") is the CPU; "cuda" and
 * "cuda:N" that device or an error; NULL and "auto" a GPU when this build has a GPU backend and one
 * is present (*is_auto set: prepare may still fall back to the CPU), else the CPU. */
static lm_status make_backend(const lm_model_params *p, const lm_logger *log, bool *is_auto, cm_backend **out,
                              lm_error *err) {
    const char *dev = p->device;
    *is_auto = false;
    if (dev && strcmp(dev, "auto") != 0 && strcmp(dev, "cpu") != 0) return cm_backend_device_new(dev, out, err);
    if (!dev || !strcmp(dev, "auto")) {
        lm_error e = {0};
        if (cm_backend_device_new("cuda", out, &e) == LM_OK) {
            *is_auto = true;
            return LM_OK;
        }
        /* no GPU backend in this build (UNSUPPORTED) is not news; no GPU present is */
        lm_log(log, e.code == LM_ERR_UNSUPPORTED ? LM_LOG_DEBUG : LM_LOG_INFO, "device auto: %s; using the CPU", e.msg);
    }
    return cm_backend_cpu_new(p->force_ref_kernels, out, err);
}

lm_status lm_model_load(const char *path, const lm_model_params *params, lm_model **out, lm_error *err) {
    lm_error_clear(err);
    if (!out || !path) return lm_fail(err, LM_ERR_MISUSE, "lm_model_load: path and out must not be NULL");
    *out = NULL;
    lm_model_params p = params ? *params : lm_model_default_params();
    double t0 = lm_time_ms();
    lm_model *m = lm_calloc(1, sizeof *m);
    if (!m) return lm_fail_nomem(err, "model");
    atomic_init(&m->refs, 1);
    m->log.fn = p.log;
    m->log.user = p.log_user;
    m->path = lm_strdup(path);
    if (!m->path) {
        model_destroy(m);
        return lm_fail_nomem(err, "model path");
    }
    if (p.progress && p.progress(0.0f, "opening", p.progress_user)) {
        model_destroy(m);
        return lm_fail(err, LM_ERR_CANCELLED, "%s: loading cancelled", path);
    }
    /* a vocabulary alone needs no device */
    bool auto_dev = false;
    lm_status st = p.vocab_only ? LM_OK : make_backend(&p, &m->log, &auto_dev, &m->be, err);
    if (st) {
        model_destroy(m);
        return st;
    }
    if (p.vocab_only) st = lm_model_load_vocab(m, path, &p, err);
    else if (lm_is_dir(path) && lm_model_is_tokenizer_only(path))
        st = lm_fail(err, LM_ERR_UNSUPPORTED, "%s: a tokenizer without a model (tokenizer.json, no config.json): it can tokenize and render templates (vocab_only), not run", path);
    else if (lm_is_dir(path)) st = lm_model_load_hf(m, path, &p, err);
    else if (lm_path_exists(path)) st = lm_model_load_gguf(m, path, &p, err);
    else st = lm_fail(err, LM_ERR_IO, "%s: no such file or folder", path);
    if (st) {
        model_destroy(m);
        return st;
    }
    /* end-of-generation ids: the tokenizer's eos and the usual end-of-turn tokens */
    if (m->tok) {
        static const char *const eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|eom_id|>", "<|endoftext|>", "<end_of_turn>"};
        st = add_eog(m, tok_eos(m->tok));
        for (size_t i = 0; !st && i < LM_ARRAY_LEN(eot); i++) st = add_eog(m, tok_find(m->tok, eot[i]));
        if (st) {
            model_destroy(m);
            return lm_fail_nomem(err, "eos ids");
        }
    }
    /* chat template: the override, else the model's own, else a built-in fallback */
    if (p.chat_template) {
        const char *src = chat_builtin_source(p.chat_template);
        lm_log(&m->log, LM_LOG_INFO, "%s: chat template: %s (given)%s", path, src ? p.chat_template : "Jinja source",
               m->chat_template ? ", in place of the model's own" : "");
        lm_free(m->chat_template);
        m->chat_template = lm_strdup(src ? src : p.chat_template);
        if (!m->chat_template) {
            model_destroy(m);
            return lm_fail_nomem(err, "chat template");
        }
    } else if (!m->chat_template) {
        const char *name = guess_builtin(m->tok);
        const char *src = name ? chat_builtin_source(name) : NULL;
        if (src) lm_log(&m->log, LM_LOG_WARN, "%s: no chat template in the model; using the built-in '%s' its tokenizer suggests", path, name);
        else if (m->tok) lm_log(&m->log, LM_LOG_WARN, "%s: no chat template in the model and none built in fits: chat needs lm_model_params.chat_template", path);
        if (src && !(m->chat_template = lm_strdup(src))) {
            model_destroy(m);
            return lm_fail_nomem(err, "chat template");
        }
    }
    /* parsed once; a template that does not parse fails each chat call with its error, not the
     * load (the weights are still good for plain completion) */
    if (m->chat_template) {
        st = jinja_parse(m->chat_template, strlen(m->chat_template), &m->tmpl, &m->tmpl_err);
        if (st == LM_ERR_NOMEM) {
            model_destroy(m);
            return lm_fail_nomem(err, "chat template");
        }
        if (st) lm_log(&m->log, LM_LOG_WARN, "%s: the chat template does not parse: %s", path, m->tmpl_err.msg);
    }
    m->tool_format = guess_tool_format(m);
    /* a vocabulary alone never runs the model */
    m->n_threads = p.vocab_only ? 1 : p.n_threads > 0 ? p.n_threads : lm_cpu_count();
    if (!p.vocab_only) {
        fill_net(m);
        if (m->gguf || m->st) {
            m->net.drop = drop_pages;
            m->net.drop_user = m;
        }
        st = m->be->ops->prepare(m->be, &m->net, p.progress, p.progress_user, err);
        if (st && auto_dev && (st == LM_ERR_NOMEM || st == LM_ERR_UNSUPPORTED)) {
            /* auto: weights that do not fit the GPU, or a type it cannot run, stay on the CPU */
            lm_log(&m->log, LM_LOG_WARN, "%s: %s; running on the CPU instead", path, err ? err->msg : lm_status_str(st));
            cm_backend_free(m->be);
            m->be = NULL;
            lm_error_clear(err);
            st = cm_backend_cpu_new(p.force_ref_kernels, &m->be, err);
            if (!st) st = m->be->ops->prepare(m->be, &m->net, p.progress, p.progress_user, err);
        }
        if (st) {
            model_destroy(m);
            return st;
        }
    }
    if (p.progress && p.progress(1.0f, "ready", p.progress_user)) {
        model_destroy(m);
        return lm_fail(err, LM_ERR_CANCELLED, "%s: loading cancelled", path);
    }
    if (p.vocab_only) {
        snprintf(m->quant_summary, sizeof m->quant_summary, "none (vocabulary only)");
    } else if (!build_quant_summary(m)) {
        model_destroy(m);
        return lm_fail_nomem(err, "weight type summary");
    }
    lm_log(&m->log, LM_LOG_INFO, "%s: %s %s, %d layers, device %s (kernels %s), weights %s, loaded in %.0f ms", path,
           m->arch_name, m->format, (int)m->hp.n_layer, m->be ? m->be->ops->name : "none",
           m->be ? m->be->ops->describe(m->be) : "none (vocabulary only)", m->quant_summary, lm_time_ms() - t0);
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
        ws[4 * l] = &m->net.layers[l].wq;
        ws[4 * l + 1] = &m->net.layers[l].wk;
        ws[4 * l + 2] = &m->net.layers[l].wv;
        ws[4 * l + 3] = &m->net.layers[l].wo;
    }
    lm_buf_puts(&b, "attn: ");
    group_summary(ws, nl * 4, &b);
    for (size_t l = 0; l < nl; l++) {
        ws[3 * l] = &m->net.layers[l].w_gate;
        ws[3 * l + 1] = &m->net.layers[l].w_up;
        ws[3 * l + 2] = &m->net.layers[l].w_down;
    }
    lm_buf_puts(&b, "; ffn: ");
    group_summary(ws, nl * 3, &b);
    char t[32];
    type_name(&m->net.tok_embd, t, sizeof t);
    lm_buf_printf(&b, "; embd: %s", t);
    if (m->net.output.data == m->net.tok_embd.data) {
        lm_buf_puts(&b, "; output: tied");
    } else {
        type_name(&m->net.output, t, sizeof t);
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
    o->kernels = m->be ? m->be->ops->describe(m->be) : "none";
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

int32_t lm_model_n_vocab(const lm_model *m) { return m ? m->hp.n_vocab : 0; }
lm_token lm_model_token_bos(const lm_model *m) { return m && m->tok ? tok_bos(m->tok) : -1; }
lm_token lm_model_token_eos(const lm_model *m) { return m && m->tok ? tok_eos(m->tok) : -1; }
const char *lm_model_token_piece(const lm_model *m, lm_token id) { return m && m->tok ? tok_piece(m->tok, id) : NULL; }

static lm_status need_tok(const lm_model *m, lm_error *err) {
    if (!m || m->magic != LM_MODEL_MAGIC) return lm_fail(err, LM_ERR_MISUSE, "the model handle is NULL or freed");
    if (!m->tok)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer (no tokenizer.json); only token ids can be used", m->path);
    return LM_OK;
}

lm_status lm_model_tokenize(const lm_model *m, const char *text, size_t len, uint32_t flags, lm_token *ids,
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

lm_status lm_model_detokenize(const lm_model *m, const lm_token *ids, size_t n, bool skip_special, char *out,
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
    return lm_buf_copy_out(&b, out, cap, len_out, "text", err);
}
