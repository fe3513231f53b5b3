/* provider/provider.c: the public provider calls (dispatch through the vtable), the local
 * provider (a session on a loaded model) and the fallback manager. */
#include "provider/provider.h"
#include "session/session.h"

#include <stdio.h>

void lm_provider_free(lm_provider *p) {
    if (p) p->ops->destroy(p);
}

const char *lm_provider_name(const lm_provider *p) { return p ? p->name : ""; }
bool lm_provider_is_ready(lm_provider *p) { return p && p->ops->is_ready(p); }
void lm_provider_cancel(lm_provider *p) {
    if (p) p->ops->cancel(p);
}
const char *lm_provider_answered_by(const lm_provider *p) { return p && p->answered_by[0] ? p->answered_by : NULL; }
const char *lm_provider_skipped(const lm_provider *p) { return p ? p->skipped : ""; }

lm_status lm_provider_chat(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                           const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_gen_stats *stats, lm_error *err) {
    if (!p) return lm_fail(err, LM_ERR_MISUSE, "provider is NULL");
    lm_error_clear(err);
    return p->ops->chat(p, msgs, n, cp, gp, fn, user, stats, err);
}

/* ---- local ---- */

typedef struct local_provider {
    lm_provider base;
    lm_session *s;
} local_provider;

static bool local_ready(lm_provider *p) {
    local_provider *lp = (local_provider *)p;
    return lp->s && lp->s->model && lp->s->model->magic == LM_MODEL_MAGIC;
}

static lm_status local_chat(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                            const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_gen_stats *stats, lm_error *err) {
    local_provider *lp = (local_provider *)p;
    lm_status st = lm_session_chat(lp->s, msgs, n, cp, gp, fn, user, stats);
    if (st) lm_fail(err, st, "%s: %s", p->name, lm_session_errmsg(lp->s));
    return st;
}

static void local_cancel(lm_provider *p) { lm_session_cancel(((local_provider *)p)->s); }

static void local_destroy(lm_provider *p) {
    lm_session_free(((local_provider *)p)->s);
    lm_free(p);
}

static const provider_ops LOCAL_OPS = {local_ready, local_chat, local_cancel, local_destroy};

lm_status lm_provider_local_new(lm_model *m, const lm_session_params *sp, lm_provider **out, lm_error *err) {
    if (!out) return lm_fail(err, LM_ERR_MISUSE, "out is NULL");
    local_provider *lp = lm_calloc(1, sizeof *lp);
    if (!lp) return lm_fail_nomem(err, "provider");
    lp->base.ops = &LOCAL_OPS;
    snprintf(lp->base.name, sizeof lp->base.name, "local");
    lm_status st = lm_session_new(m, sp, &lp->s, err);
    if (st) {
        lm_free(lp);
        return st;
    }
    *out = &lp->base;
    return LM_OK;
}

/* ---- fallback ---- */

typedef struct fallback_provider {
    lm_provider base;
    lm_provider **list;
    size_t n;
    lm_provider *_Atomic running;
} fallback_provider;

typedef struct piece_tap {
    lm_piece_fn fn;
    void *user;
    size_t n_pieces;
} piece_tap;

static int tap(const char *s, size_t n, void *user) {
    piece_tap *t = user;
    t->n_pieces++;
    return t->fn ? t->fn(s, n, t->user) : 0;
}

static bool fallback_ready(lm_provider *p) {
    fallback_provider *fp = (fallback_provider *)p;
    for (size_t i = 0; i < fp->n; i++)
        if (lm_provider_is_ready(fp->list[i])) return true;
    return false;
}

static lm_status fallback_chat(lm_provider *p, const lm_message *msgs, size_t n, const lm_chat_params *cp,
                               const lm_gen_params *gp, lm_piece_fn fn, void *user, lm_gen_stats *stats, lm_error *err) {
    fallback_provider *fp = (fallback_provider *)p;
    p->answered_by[0] = 0;
    p->skipped[0] = 0;
    atomic_store(&p->cancel, false);
    lm_buf why = {0};
    lm_status last = LM_ERR_NETWORK;
    for (size_t i = 0; i < fp->n; i++) {
        lm_provider *q = fp->list[i];
        if (atomic_load(&p->cancel)) {
            lm_buf_free(&why);
            return lm_fail(err, LM_ERR_CANCELLED, "cancelled");
        }
        if (!lm_provider_is_ready(q)) {
            lm_buf_printf(&why, "%s%s: not ready", why.len ? "; " : "", q->name);
            continue;
        }
        piece_tap t = {fn, user, 0};
        lm_error e = {0};
        atomic_store(&fp->running, q);
        lm_status st = lm_provider_chat(q, msgs, n, cp, gp, tap, &t, stats, &e);
        atomic_store(&fp->running, NULL);
        if (st == LM_OK) {
            snprintf(p->answered_by, sizeof p->answered_by, "%s", q->name);
            snprintf(p->skipped, sizeof p->skipped, "%s", why.data ? why.data : "");
            lm_buf_free(&why);
            return LM_OK;
        }
        if (t.n_pieces > 0 || st == LM_ERR_CANCELLED) {
            /* text already reached the caller: report, never retry elsewhere */
            snprintf(p->answered_by, sizeof p->answered_by, "%s", q->name);
            lm_buf_free(&why);
            if (err) *err = e;
            return st;
        }
        last = st;
        lm_buf_printf(&why, "%s%s", why.len ? "; " : "", e.msg[0] ? e.msg : lm_status_str(st));
    }
    snprintf(p->skipped, sizeof p->skipped, "%s", why.data ? why.data : "");
    lm_fail(err, last, "no provider could answer: %s", why.data ? why.data : "none configured");
    lm_buf_free(&why);
    return last;
}

static void fallback_cancel(lm_provider *p) {
    fallback_provider *fp = (fallback_provider *)p;
    atomic_store(&p->cancel, true);
    lm_provider *q = atomic_load(&fp->running);
    if (q) lm_provider_cancel(q);
}

static void fallback_destroy(lm_provider *p) {
    lm_free(((fallback_provider *)p)->list);
    lm_free(p);
}

static const provider_ops FALLBACK_OPS = {fallback_ready, fallback_chat, fallback_cancel, fallback_destroy};

lm_status lm_provider_fallback_new(lm_provider *const *list, size_t n, lm_provider **out, lm_error *err) {
    if (!out || (n && !list)) return lm_fail(err, LM_ERR_MISUSE, "fallback: list and out are required");
    fallback_provider *fp = lm_calloc(1, sizeof *fp);
    if (!fp) return lm_fail_nomem(err, "provider");
    fp->list = lm_malloc((n ? n : 1) * sizeof *fp->list);
    if (!fp->list) {
        lm_free(fp);
        return lm_fail_nomem(err, "provider");
    }
    for (size_t i = 0; i < n; i++) fp->list[i] = list[i];
    fp->n = n;
    fp->base.ops = &FALLBACK_OPS;
    snprintf(fp->base.name, sizeof fp->base.name, "fallback");
    *out = &fp->base;
    return LM_OK;
}
