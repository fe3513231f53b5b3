/* session/chat_session.c: chat turns on a session: message list → template → tokens, longest
 * common prefix with the KV cache, trimming old turns to fit the window, prefill while the user
 * is still speaking. */
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
    if (!m->tmpl) return lm_fail(err, m->tmpl_err.code ? m->tmpl_err.code : LM_ERR_FORMAT, "%s: chat template: %s", m->path, m->tmpl_err.msg);
    cJSON *arr = NULL, *tools = NULL, *vars = NULL;
    lm_status st = messages_json(msgs, n, keep, &arr, err);
    if (!st && cp->tools_json) st = lm_json_parse(cp->tools_json, strlen(cp->tools_json), "tools", &tools, err);
    if (!st && cp->vars_json) st = lm_json_parse(cp->vars_json, strlen(cp->vars_json), "template variables", &vars, err);
    if (!st) {
        chat_vars cv = {m->tok ? tok_bos_text(m->tok) : "", m->tok ? tok_eos_text(m->tok) : "", gen_prompt, tools, vars};
        jinja_opts jo = jinja_default_opts();
        st = chat_render_parsed(m->tmpl, arr, &cv, &jo, out, err);
        if (!st && out->oom) st = lm_fail_nomem(err, "prompt");
    }
    cJSON_Delete(arr);
    cJSON_Delete(tools);
    cJSON_Delete(vars);
    return st;
}

lm_status lm_model_chat_render(const lm_model *m, const lm_message *msgs, size_t n, const lm_chat_params *cp_in,
                         char *out, size_t cap, size_t *len_out, lm_error *err) {
    if (!m || m->magic != LM_MODEL_MAGIC) return lm_fail(err, LM_ERR_MISUSE, "the model is NULL or freed");
    lm_chat_params cp = cp_in ? *cp_in : lm_chat_default_params();
    lm_buf b = {0};
    lm_status st = render(m, msgs, n, NULL, &cp, cp.add_generation_prompt, &b, err);
    if (st) {
        lm_buf_free(&b);
        return st;
    }
    return lm_buf_copy_out(&b, out, cap, len_out, "prompt", err);
}

static size_t common_prefix(const lm_token *a, size_t na, const lm_token *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

static bool is_system(const lm_message *m) { return m->role && strcmp(m->role, "system") == 0; }
static bool is_user(const lm_message *m) { return m->role && strcmp(m->role, "user") == 0; }

/* Renders keep's messages and tokenizes them into p. */
static lm_status render_tokens(const lm_model *m, const lm_message *msgs, size_t n, const bool *keep,
                               const lm_chat_params *cp, chat_prompt *p, lm_error *err) {
    lm_buf_reset(&p->text);
    p->ids.n = 0;
    lm_status st = render(m, msgs, n, keep, cp, cp->add_generation_prompt, &p->text, err);
    if (!st)
        st = tok_encode(m->tok, p->text.data ? p->text.data : "", p->text.len, LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL,
                        &p->ids, err);
    return st;
}

void chat_prompt_free(chat_prompt *p) {
    tok_vec_free(&p->ids);
    lm_buf_free(&p->text);
    memset(p, 0, sizeof *p);
}

/* Trimming: which turns to drop. Dropping the first k turns (k = 1..n_starts-1; turn j starts at
 * message starts[j]) only shortens the prompt, so the least k that fits is searched for. */
typedef struct trim_ctx {
    const lm_model *m;
    const lm_message *msgs;
    size_t n, n_ctx, reserve;
    const bool *keep;
    bool *trial;
    const size_t *starts;
    const lm_chat_params *cp;
    const atomic_bool *cancel;
    chat_prompt *p;
    size_t rendered;            /* the k whose rendering p holds */
} trim_ctx;

/* Renders the conversation without its first k turns into t->p; *fits: it fits the window. */
static lm_status try_cut(trim_ctx *t, size_t k, bool *fits, lm_error *err) {
    if (t->cancel && atomic_load(t->cancel))
        return lm_fail(err, LM_ERR_CANCELLED, "cancelled while the conversation was trimmed to fit");
    memcpy(t->trial, t->keep, t->n * sizeof *t->trial);
    for (size_t i = t->starts[0]; i < t->starts[k]; i++)
        if (!is_system(&t->msgs[i])) t->trial[i] = false;
    lm_status st = render_tokens(t->m, t->msgs, t->n, t->trial, t->cp, t->p, err);
    t->rendered = k;
    *fits = !st && t->p->ids.n + t->reserve <= t->n_ctx;
    return st;
}

/* The first guess: where each turn begins in the full rendering (its content's first bytes,
 * found in order) tells how many bytes dropping the first k turns removes; tokens are taken in
 * proportion. About one pass over the text (at most 64 bytes compared at a place, so contents
 * like "aaaa..." cost no more); 0 when a content is not found (a template that rewrites it). Only
 * a guess: search_cut checks it. */
static size_t guess_cut(const trim_ctx *t, size_t n_starts, const char *text, size_t len, size_t n_tokens) {
    size_t need = t->p->ids.n + t->reserve - t->n_ctx; /* tokens to drop (the full prompt is over) */
    const char *from = text, *end = text + len, *first = NULL;
    for (size_t j = 0; j < n_starts; j++) {
        const char *c = t->msgs[t->starts[j]].content;
        size_t cl = c ? strlen(c) : 0;
        if (cl > 64) cl = 64;
        const char *at = NULL;
        for (const char *q = from; cl && q + cl <= end && (q = memchr(q, c[0], (size_t)(end - q - cl + 1))); q++)
            if (memcmp(q, c, cl) == 0) {
                at = q;
                break;
            }
        if (!at) return 0;
        if (j == 0) first = at;
        else if ((double)(at - first) / (double)len * (double)n_tokens >= (double)need) return j;
        from = at + cl;
    }
    return n_starts - 1;
}

/* The least k in [1, hi] that fits, from the guess outwards (galloping, then bisection): a good
 * guess costs two renderings, a bad one O(log n). Returns 0 when none fits; t->p holds the last
 * rendering tried. */
static lm_status search_cut(trim_ctx *t, size_t hi, size_t guess, size_t *best, lm_error *err) {
    size_t lo = 1, step = 1;
    bool fits;
    *best = 0;
    if (guess < lo || guess > hi) guess = lo + (hi - lo) / 2;
    lm_status st = try_cut(t, guess, &fits, err);
    if (st) return st;
    if (fits) { /* look below for a smaller cut */
        *best = hi = guess;
        while (lo < hi) {
            size_t k = guess > lo + step ? guess - step : lo;
            if ((st = try_cut(t, k, &fits, err))) return st;
            if (!fits) {
                lo = k + 1;
                break;
            }
            *best = hi = k;
            step *= 2;
        }
        hi = *best - 1;
    } else { /* look above */
        lo = guess + 1;
        while (lo <= hi) {
            size_t k = guess + step < hi ? guess + step : hi;
            if ((st = try_cut(t, k, &fits, err))) return st;
            if (fits) {
                *best = k;
                hi = k - 1;
                break;
            }
            lo = k + 1;
            step *= 2;
        }
    }
    while (lo <= hi && lo >= 1) { /* the answer is best, or lies in [lo, hi] */
        size_t k = lo + (hi - lo) / 2;
        if ((st = try_cut(t, k, &fits, err))) return st;
        if (fits) {
            *best = k;
            if (k == lo) break;
            hi = k - 1;
        } else {
            lo = k + 1;
        }
    }
    return LM_OK;
}

/* Drops the fewest old turns that make the prompt in p (the full conversation, over the window)
 * fit, leaving the result in p. */
static lm_status trim_turns(trim_ctx *t, size_t n_starts, lm_error *err) {
    t->trial = lm_malloc(t->n * sizeof *t->trial);
    if (!t->trial) return lm_fail_nomem(err, "messages");
    size_t guess = t->p->text.len ? guess_cut(t, n_starts, t->p->text.data, t->p->text.len, t->p->ids.n) : 0;
    size_t best;
    lm_status st = search_cut(t, n_starts - 1, guess, &best, err);
    if (!st && !best) {
        bool fits;
        st = try_cut(t, n_starts - 1, &fits, err);
        if (!st)
            st = lm_fail(err, LM_ERR_CONTEXT, "the prompt is %zu tokens and max_tokens %zu, but the context window is %zu tokens even with only the last message kept",
                         t->p->ids.n, t->reserve, t->n_ctx);
    } else if (!st) {
        bool fits;
        if (t->rendered != best) st = try_cut(t, best, &fits, err);
        for (size_t i = t->starts[0]; !st && i < t->starts[best]; i++) t->p->n_dropped += !is_system(&t->msgs[i]);
    }
    lm_free(t->trial);
    return st;
}

/* Old turns are dropped whole (a non-system message and what follows up to the next user
 * message), oldest first, system messages always kept, the last turn never. The full rendering
 * says where each turn begins, which gives the first guess of how many to drop; a few renderings
 * around it find the least that fits (the prompt only shrinks as more are dropped), so a long
 * conversation costs a few renderings, not one per turn nor log2(turns). */
lm_status chat_prompt_build(const lm_model *m, size_t n_ctx, const lm_message *msgs, size_t n,
                            const lm_chat_params *cp, size_t reserve, const atomic_bool *cancel, chat_prompt *p,
                            lm_error *err) {
    memset(p, 0, sizeof *p);
    if (!m->tok) return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer", m->path);
    bool *keep = lm_malloc((n ? n : 1) * sizeof *keep);
    size_t *starts = lm_malloc((n ? n : 1) * sizeof *starts);
    if (!keep || !starts) {
        lm_free(keep);
        lm_free(starts);
        return lm_fail_nomem(err, "messages");
    }
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role) {
            lm_free(keep);
            lm_free(starts);
            return lm_fail(err, LM_ERR_MISUSE, "message %zu has no role", i);
        }
        keep[i] = true;
    }
    /* the guide's rule: at most the last max_messages non-system messages */
    size_t n_nonsys = 0, first = 0;
    for (size_t i = 0; i < n; i++) n_nonsys += !is_system(&msgs[i]);
    if (cp->max_messages > 0)
        for (size_t i = 0; i < n && n_nonsys > (size_t)cp->max_messages; i++) {
            if (is_system(&msgs[i])) continue;
            keep[i] = false;
            n_nonsys--;
            p->n_dropped++;
            first = i + 1;
        }
    /* turn starts among the kept messages: the first non-system one, then each user message */
    size_t n_starts = 0;
    for (size_t i = first; i < n; i++) {
        if (!keep[i] || is_system(&msgs[i])) continue;
        if (n_starts == 0 || is_user(&msgs[i])) starts[n_starts++] = i;
    }
    lm_status st = render_tokens(m, msgs, n, keep, cp, p, err);
    if (!st && p->ids.n + reserve > n_ctx) {
        if (cp->no_trim || n_starts < 2) {
            st = lm_fail(err, LM_ERR_CONTEXT, "the prompt is %zu tokens and max_tokens %zu, but the context window is %zu tokens%s",
                         p->ids.n, reserve, n_ctx, cp->no_trim ? "" : " even with only the last message kept");
        } else {
            trim_ctx t = {m, msgs, n, n_ctx, reserve, keep, NULL, starts, cp, cancel, p, 0};
            st = trim_turns(&t, n_starts, err);
        }
    }
    lm_free(keep);
    lm_free(starts);
    if (!st && (p->text.oom)) st = lm_fail_nomem(err, "prompt");
    if (st) chat_prompt_free(p);
    return st;
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

/* Cuts the cache back to the common prefix with ids; the rest is the prompt still to evaluate
 * (*n_new tokens from *from). A full match still re-evaluates the last token when its logits are
 * not held, because generation starts from them. */
static void sync_prefix(lm_session *s, const tok_vec *ids, size_t *from, lm_gen_stats *stats) {
    size_t lcp = common_prefix(s->tokens.ids, s->tokens.n, ids->ids, ids->n);
    if (lcp == ids->n && lcp > 0 && !(s->logits_valid && s->tokens.n == lcp)) lcp--;
    session_truncate(s, lcp);
    if (stats) {
        stats->n_prompt = (int32_t)ids->n;
        stats->n_cached = (int32_t)lcp;
        stats->n_prefilled = (int32_t)(ids->n - lcp);
    }
    *from = lcp;
}

lm_status session_chat_prompt(lm_session *s, const chat_prompt *p, const lm_gen_params *gp_in, lm_piece_fn fn,
                              void *user, lm_gen_stats *stats, double t0) {
    lm_gen_params gp = gp_in ? *gp_in : lm_gen_default_params();
    /* the response cache answers greedy turns it has seen, without running the model */
    char *key = NULL;
    if (s->rcache && gp.temperature <= 0.0f) {
        key = rc_make_key(p->text.data ? p->text.data : "", p->text.len, &gp);
        lm_buf hit = {0};
        lm_finish fin;
        int32_t ng;
        if (key && rc_lookup(s->rcache, key, &hit, &fin, &ng)) {
            bool stopped = hit.len && fn && fn(hit.data, hit.len, user) != 0;
            if (stats) {
                stats->n_prompt = (int32_t)p->ids.n;
                stats->n_generated = ng;
                stats->finish = stopped ? LM_FINISH_CANCELLED : fin;
                stats->from_cache = true;
                stats->ttft_ms = lm_time_ms() - t0;
            }
            lm_buf_free(&hit);
            lm_free(key);
            return stopped ? session_fail(s, LM_ERR_CANCELLED, "stopped by the caller (a cached reply)") : LM_OK;
        }
        lm_buf_free(&hit);
    }
    size_t from;
    sync_prefix(s, &p->ids, &from, stats);
    if (!key) return session_generate(s, p->ids.ids + from, p->ids.n - from, &gp, fn, user, stats, t0);
    tee t = {fn, user, {0}};
    lm_gen_stats local;
    lm_gen_stats *sp = stats ? stats : &local;
    lm_status st = session_generate(s, p->ids.ids + from, p->ids.n - from, &gp, tee_piece, &t, sp, t0);
    if (!st && !t.text.oom && (sp->finish == LM_FINISH_STOP || sp->finish == LM_FINISH_LENGTH))
        rc_store(s->rcache, key, t.text.data ? t.text.data : "", t.text.len, sp->finish, sp->n_generated);
    lm_buf_free(&t.text);
    lm_free(key);
    return st;
}

lm_status lm_session_chat(lm_session *s, const lm_message *msgs, size_t n, const lm_chat_params *cp_in,
                          const lm_gen_params *gp_in, lm_piece_fn fn, void *user, lm_gen_stats *stats) {
    double t0 = lm_time_ms();
    session_stats_start(stats);
    lm_status st = session_begin(s);
    if (st) return st;
    const lm_model *m = s->eng->model;
    if (!m->tok) return session_fail(s, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer, so it cannot chat", m->path);
    lm_chat_params cp = cp_in ? *cp_in : lm_chat_default_params();
    lm_gen_params gp = gp_in ? *gp_in : lm_gen_default_params();
    size_t reserve = gp.max_tokens > 0 ? (size_t)gp.max_tokens : 0;
    chat_prompt p;
    lm_error err = {0};
    st = chat_prompt_build(m, s->n_ctx, msgs, n, &cp, reserve, &s->cancel, &p, &err);
    if (stats) {
        stats->tokenize_ms = lm_time_ms() - t0;
        stats->n_dropped_messages = st ? 0 : p.n_dropped;
    }
    if (st) {
        if (stats) stats->finish = LM_FINISH_ERROR;
        return session_fail(s, st, "%s", err.msg);
    }
    st = session_chat_prompt(s, &p, &gp, fn, user, stats, t0);
    chat_prompt_free(&p);
    return st;
}

lm_status lm_session_prefill_partial(lm_session *s, const lm_message *msgs, size_t n, const lm_chat_params *cp_in) {
    lm_status st = session_begin(s);
    if (st) return st;
    const lm_model *m = s->eng->model;
    if (!m->tok) return session_fail(s, LM_ERR_UNSUPPORTED, "%s: the model has no tokenizer, so it cannot chat", m->path);
    if (n == 0 || !msgs[n - 1].content) return LM_OK;
    lm_chat_params cp = cp_in ? *cp_in : lm_chat_default_params();
    /* Render with the partial text, then keep only the prompt up to the last space of that text:
       the last word and the turn's closing markers will still change. */
    lm_error err = {0};
    lm_buf text = {0};
    st = render(m, msgs, n, NULL, &cp, false, &text, &err);
    if (st) {
        lm_buf_free(&text);
        return session_fail(s, st, "%s", err.msg);
    }
    const char *partial = msgs[n - 1].content;
    size_t pl = strlen(partial);
    const char *at = NULL;
    for (const char *q = text.data; pl && q && (q = strstr(q, partial)); q++) at = q; /* last occurrence */
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
        tok_vec_free(&ids);
        return session_fail(s, st, "%s", err.msg);
    }
    if (ids.n > 0) ids.n--; /* the last token may merge with what follows */
    if (ids.n + 1 >= s->n_ctx) {
        tok_vec_free(&ids);
        return LM_OK;
    }
    size_t lcp = common_prefix(s->tokens.ids, s->tokens.n, ids.ids, ids.n);
    session_truncate(s, lcp);
    st = session_prefill(s, ids.ids + lcp, ids.n - lcp, NULL);
    tok_vec_free(&ids);
    return st;
}
