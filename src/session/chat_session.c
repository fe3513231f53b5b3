/* session/chat_session.c: chat turns on a session: message list → template → tokens, longest
 * common prefix with the KV cache, trimming old turns to fit the window, prefill while the user
 * is still speaking, and model warm-up. */
#include "session/session.h"

#include <stdio.h>

#include "chat/chat.h"

lm_chat_params lm_chat_default_params(void) {
    lm_chat_params p;
    memset(&p, 0, sizeof p);
    p.add_generation_prompt = true;
    p.max_messages = 10;
    return p;
}

/* Builds the JSON message array of msgs[i] for i in keep (a bitmap). */
static lm_status messages_json(const lm_message *msgs, size_t n, const bool *keep, cJSON **out, lm_error *err) {
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return lm_fail_nomem(err, "messages");
    for (size_t i = 0; i < n; i++) {
        if (keep && !keep[i]) continue;
        const lm_message *m = &msgs[i];
        if (!m->role) {
            cJSON_Delete(arr);
            return lm_fail(err, LM_ERR_MISUSE, "message %zu has no role", i);
        }
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddStringToObject(o, "role", m->role)) {
            cJSON_Delete(arr);
            return lm_fail_nomem(err, "messages");
        }
        if (m->content) {
            if (!cJSON_AddStringToObject(o, "content", m->content)) {
                cJSON_Delete(arr);
                return lm_fail_nomem(err, "messages");
            }
        } else {
            cJSON_AddNullToObject(o, "content");
        }
        if (m->tool_calls_json) {
            cJSON *tc = NULL;
            lm_status st = lm_json_parse(m->tool_calls_json, strlen(m->tool_calls_json), "tool_calls", &tc, err);
            if (st) {
                cJSON_Delete(arr);
                return st;
            }
            cJSON_AddItemToObject(o, "tool_calls", tc);
        }
        if (m->tool_call_id) cJSON_AddStringToObject(o, "tool_call_id", m->tool_call_id);
        if (m->name) cJSON_AddStringToObject(o, "name", m->name);
    }
    *out = arr;
    return LM_OK;
}

static lm_status render(const lm_model *m, const lm_message *msgs, size_t n, const bool *keep,
                        const lm_chat_params *cp, bool gen_prompt, lm_buf *out, lm_error *err) {
    if (!m->chat_template)
        return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: the model has no chat template and no built-in format fits its tokenizer; pass one (chat_template)", m->path);
    cJSON *arr = NULL, *tools = NULL, *vars = NULL;
    lm_status st = messages_json(msgs, n, keep, &arr, err);
    if (!st && cp->tools_json) st = lm_json_parse(cp->tools_json, strlen(cp->tools_json), "tools", &tools, err);
    if (!st && cp->vars_json) st = lm_json_parse(cp->vars_json, strlen(cp->vars_json), "template variables", &vars, err);
    if (!st) {
        chat_vars cv = {m->tok ? tok_bos_text(m->tok) : "", m->tok ? tok_eos_text(m->tok) : "", gen_prompt, tools, vars};
        jinja_opts jo = jinja_default_opts();
        st = chat_render(m->chat_template, arr, &cv, &jo, out, err);
        if (!st && out->oom) st = lm_fail_nomem(err, "prompt");
    }
    cJSON_Delete(arr);
    cJSON_Delete(tools);
    cJSON_Delete(vars);
    return st;
}

lm_status lm_chat_render(const lm_model *m, const lm_message *msgs, size_t n, const lm_chat_params *cp_in,
                         char *out, size_t cap, size_t *len_out, lm_error *err) {
    if (!m || m->magic != LM_MODEL_MAGIC) return lm_fail(err, LM_ERR_MISUSE, "the model is NULL or freed");
    lm_chat_params cp = cp_in ? *cp_in : lm_chat_default_params();
    lm_buf b = {0};
    lm_status st = render(m, msgs, n, NULL, &cp, cp.add_generation_prompt, &b, err);
    if (st) {
        lm_buf_free(&b);
        return st;
    }
    if (len_out) *len_out = b.len;
    if (b.len >= cap) {
        lm_buf_free(&b);
        return lm_fail(err, LM_ERR_TOO_SMALL, "the prompt is %zu bytes, the buffer holds %zu", b.len, cap);
    }
    memcpy(out, b.data ? b.data : "", b.len + 1);
    lm_buf_free(&b);
    return LM_OK;
}

static size_t common_prefix(const lm_token *a, size_t na, const lm_token *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* Renders and tokenizes the conversation, dropping the oldest turns until it fits. */
static lm_status build_prompt(lm_session *s, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                              bool gen_prompt, size_t reserve, tok_vec *ids, int32_t *n_dropped, lm_buf *text_out) {
    lm_model *m = s->model;
    lm_error err = {0};
    bool *keep = lm_malloc((n ? n : 1) * sizeof *keep);
    if (!keep) return LM_ERR_NOMEM;
    size_t n_nonsys = 0;
    for (size_t i = 0; i < n; i++) {
        keep[i] = true;
        if (!msgs[i].role || strcmp(msgs[i].role, "system") != 0) n_nonsys++;
    }
    *n_dropped = 0;
    /* the guide's rule: at most the last max_messages non-system messages */
    if (cp->max_messages > 0) {
        for (size_t i = 0; i < n && n_nonsys > (size_t)cp->max_messages; i++) {
            if (msgs[i].role && strcmp(msgs[i].role, "system") == 0) continue;
            keep[i] = false;
            n_nonsys--;
            (*n_dropped)++;
        }
    }
    lm_status st;
    lm_buf text = {0};
    for (;;) {
        lm_buf_reset(&text);
        ids->n = 0;
        st = render(m, msgs, n, keep, cp, gen_prompt, &text, &err);
        if (!st) st = tok_encode(m->tok, text.data ? text.data : "", text.len, LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL, ids, &err);
        if (st) break;
        if (ids->n + reserve <= s->n_ctx) break;
        /* drop the oldest whole turn: a non-system message and what follows up to the next user */
        if (cp->no_trim || n_nonsys <= 1) {
            st = lm_fail(&err, LM_ERR_CONTEXT, "the prompt is %zu tokens and max_tokens %zu, but the context window is %zu tokens%s",
                         ids->n, reserve, s->n_ctx, cp->no_trim ? "" : " even with only the last message kept");
            break;
        }
        size_t i = 0;
        while (i < n && (!keep[i] || (msgs[i].role && strcmp(msgs[i].role, "system") == 0))) i++;
        keep[i] = false;
        n_nonsys--;
        (*n_dropped)++;
        for (i++; i < n && n_nonsys > 1; i++) {
            if (!keep[i] || (msgs[i].role && strcmp(msgs[i].role, "system") == 0)) continue;
            if (msgs[i].role && strcmp(msgs[i].role, "user") == 0) break;
            keep[i] = false;
            n_nonsys--;
            (*n_dropped)++;
        }
    }
    lm_free(keep);
    if (!st && text_out) {
        *text_out = text;
        memset(&text, 0, sizeof text);
    }
    lm_buf_free(&text);
    if (st) {
        memcpy(s->errmsg, err.msg, sizeof s->errmsg);
        return st;
    }
    return LM_OK;
}

typedef struct tee {
    lm_piece_fn fn;
    void *user;
    lm_buf text;
} tee;

static int tee_piece(const char *p, size_t n, void *user) {
    tee *t = user;
    lm_buf_append(&t->text, p, n);
    return t->fn ? t->fn(p, n, t->user) : 0;
}

/* Cuts the cache back to the common prefix with ids and prefills the rest. A full match still
 * re-evaluates the last token, because its logits are needed. */
static lm_status sync_prefix(lm_session *s, const tok_vec *ids, lm_gen_stats *stats) {
    size_t lcp = common_prefix(s->tokens.ids, s->tokens.n, ids->ids, ids->n);
    if (lcp == ids->n && lcp > 0 && !(s->logits_valid && s->tokens.n == lcp)) lcp--;
    if (lcp < s->tokens.n) {
        s->tokens.n = lcp;
        s->logits_valid = false;
    }
    if (stats) {
        stats->n_prompt = (int32_t)ids->n;
        stats->n_cached = (int32_t)lcp;
        stats->n_prefilled = (int32_t)(ids->n - lcp);
    }
    double t = lm_time_ms();
    lm_status st = session_prefill(s, ids->ids + lcp, ids->n - lcp, NULL);
    if (stats) {
        stats->prefill_ms = lm_time_ms() - t;
        size_t np = ids->n - lcp;
        stats->prefill_tok_s = stats->prefill_ms > 0 ? (double)np / (stats->prefill_ms / 1000.0) : 0;
    }
    return st;
}

lm_status lm_session_chat(lm_session *s, const lm_message *msgs, size_t n, const lm_chat_params *cp_in,
                          const lm_gen_params *gp_in, lm_piece_fn fn, void *user, lm_gen_stats *stats) {
    double t0 = lm_time_ms();
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->stop_token = -1;
    }
    lm_status st = session_check(s);
    if (st) return st;
    atomic_store(&s->cancel, false);
    if (!s->model->tok) return LM_ERR_UNSUPPORTED;
    lm_chat_params cp = cp_in ? *cp_in : lm_chat_default_params();
    lm_gen_params gp = gp_in ? *gp_in : lm_gen_default_params();
    size_t reserve = gp.max_tokens > 0 ? (size_t)gp.max_tokens : 0;
    tok_vec ids = {0};
    int32_t dropped = 0;
    lm_buf prompt = {0};
    st = build_prompt(s, msgs, n, &cp, cp.add_generation_prompt, reserve, &ids, &dropped, &prompt);
    if (stats) {
        stats->tokenize_ms = lm_time_ms() - t0;
        stats->n_dropped_messages = dropped;
    }
    /* the response cache answers greedy turns it has seen, without running the model */
    char *key = NULL;
    if (!st && s->rcache && gp.temperature <= 0.0f) {
        key = rc_make_key(prompt.data ? prompt.data : "", prompt.len, &gp);
        lm_buf hit = {0};
        lm_finish fin;
        int32_t ng;
        if (key && rc_lookup(s->rcache, key, &hit, &fin, &ng)) {
            if (hit.len && fn) fn(hit.data, hit.len, user);
            if (stats) {
                stats->n_prompt = (int32_t)ids.n;
                stats->n_generated = ng;
                stats->finish = fin;
                stats->from_cache = true;
                stats->ttft_ms = lm_time_ms() - t0;
            }
            lm_buf_free(&hit);
            lm_free(key);
            lm_buf_free(&prompt);
            tok_vec_free(&ids);
            return LM_OK;
        }
        lm_buf_free(&hit);
    }
    lm_buf_free(&prompt);
    if (!st) st = sync_prefix(s, &ids, stats);
    tok_vec_free(&ids);
    if (st) {
        lm_free(key);
        if (stats) stats->finish = st == LM_ERR_CANCELLED ? LM_FINISH_CANCELLED : LM_FINISH_ERROR;
        return st;
    }
    if (!key) return session_generate_from(s, &gp, fn, user, stats, t0);
    tee t = {fn, user, {0}};
    lm_gen_stats local;
    lm_gen_stats *sp = stats ? stats : &local;
    st = session_generate_from(s, &gp, tee_piece, &t, sp, t0);
    if (!st && !t.text.oom && (sp->finish == LM_FINISH_STOP || sp->finish == LM_FINISH_LENGTH))
        rc_store(s->rcache, key, t.text.data ? t.text.data : "", t.text.len, sp->finish, sp->n_generated);
    lm_buf_free(&t.text);
    lm_free(key);
    return st;
}

lm_status lm_session_prefill_partial(lm_session *s, const lm_message *msgs, size_t n, const lm_chat_params *cp_in) {
    lm_status st = session_check(s);
    if (st) return st;
    atomic_store(&s->cancel, false);
    if (!s->model->tok) return LM_ERR_UNSUPPORTED;
    if (n == 0 || !msgs[n - 1].content) return LM_OK;
    lm_chat_params cp = cp_in ? *cp_in : lm_chat_default_params();
    /* Render with the partial text, then keep only the prompt up to the last space of that text:
       the last word and the turn's closing markers will still change. */
    lm_model *m = s->model;
    lm_error err = {0};
    lm_buf text = {0};
    st = render(m, msgs, n, NULL, &cp, false, &text, &err);
    if (st) {
        memcpy(s->errmsg, err.msg, sizeof s->errmsg);
        lm_buf_free(&text);
        return st;
    }
    const char *partial = msgs[n - 1].content;
    size_t pl = strlen(partial);
    const char *at = NULL;
    for (const char *p = text.data; pl && (p = strstr(p, partial)); p++) at = p; /* last occurrence */
    const char *sp = NULL;
    for (size_t i = pl; i > 0; i--)
        if (partial[i - 1] == ' ') {
            sp = partial + i - 1;
            break;
        }
    if (!at || !sp) {
        lm_buf_free(&text);
        return LM_OK; /* nothing stable yet */
    }
    size_t cut = (size_t)(at - text.data) + (size_t)(sp - partial);
    tok_vec ids = {0};
    st = tok_encode(m->tok, text.data, cut, LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL, &ids, &err);
    lm_buf_free(&text);
    if (st) {
        memcpy(s->errmsg, err.msg, sizeof s->errmsg);
        tok_vec_free(&ids);
        return st;
    }
    if (ids.n > 0) ids.n--; /* the last token may merge with what follows */
    if (ids.n + 1 >= s->n_ctx) {
        tok_vec_free(&ids);
        return LM_OK;
    }
    size_t lcp = common_prefix(s->tokens.ids, s->tokens.n, ids.ids, ids.n);
    if (lcp < s->tokens.n) {
        s->tokens.n = lcp;
        s->logits_valid = false;
    }
    st = session_prefill(s, ids.ids + lcp, ids.n - lcp, NULL);
    tok_vec_free(&ids);
    return st;
}

lm_status lm_model_warmup(lm_model *m, lm_error *err) {
    lm_session *s = NULL;
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = 64;
    lm_status st = lm_session_new(m, &sp, &s, err);
    if (st) return st;
    lm_token ids[8];
    lm_token bos = lm_token_bos(m);
    for (int i = 0; i < 8; i++) ids[i] = (lm_token)((i == 0 && bos >= 0) ? bos : (i * 31) % m->hp.n_vocab);
    float *logits = lm_malloc((size_t)m->hp.n_vocab * sizeof(float));
    if (!logits) {
        lm_session_free(s);
        return lm_fail_nomem(err, "warm-up");
    }
    st = lm_session_eval(s, ids, 8, logits, NULL);
    for (int i = 0; !st && i < 4; i++) st = lm_session_eval(s, &ids[i], 1, logits, NULL);
    if (st) lm_fail(err, st, "warm-up: %s", lm_session_errmsg(s));
    lm_free(logits);
    lm_session_free(s);
    return st;
}
