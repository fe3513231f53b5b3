/* session/response_cache.c: an LRU of greedy replies keyed by prompt text + sampling parameters
 * (the guide's "cache common responses"). A doubly linked list in recency order; lookups are a
 * linear scan over at most `capacity` entries comparing a 64-bit hash first, which is plenty for
 * the few hundred short exchanges it is meant for. */
#include "session/session.h"

#include <pthread.h>
#include <stdio.h>

typedef struct rc_entry {
    struct rc_entry *prev, *next;
    uint64_t hash;
    char *key;
    char *text;
    size_t text_len;
    lm_finish finish;
    int32_t n_generated;
} rc_entry;

struct lm_response_cache {
    pthread_mutex_t mu;
    rc_entry *head, *tail; /* head: most recent */
    size_t n, capacity;
    uint64_t hits, misses;
};

lm_status lm_response_cache_new(size_t capacity, lm_response_cache **out, lm_error *err) {
    if (!out) return lm_fail(err, LM_ERR_MISUSE, "lm_response_cache_new: out is NULL");
    lm_response_cache *c = lm_calloc(1, sizeof *c);
    *out = c;
    if (!c) return lm_fail(err, LM_ERR_NOMEM, "lm_response_cache_new: out of memory");
    pthread_mutex_init(&c->mu, NULL);
    c->capacity = capacity ? capacity : 256;
    return LM_OK;
}

static void entry_free(rc_entry *e) {
    lm_free(e->key);
    lm_free(e->text);
    lm_free(e);
}

void lm_response_cache_free(lm_response_cache *c) {
    if (!c) return;
    for (rc_entry *e = c->head, *n; e; e = n) {
        n = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&c->mu);
    lm_free(c);
}

void lm_response_cache_stats(const lm_response_cache *c, uint64_t *hits, uint64_t *misses) {
    lm_response_cache *m = (lm_response_cache *)c;
    pthread_mutex_lock(&m->mu);
    if (hits) *hits = c->hits;
    if (misses) *misses = c->misses;
    pthread_mutex_unlock(&m->mu);
}

void lm_session_set_response_cache(lm_session *s, lm_response_cache *c) {
    if (s) s->rcache = c;
}

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

char *rc_make_key(const char *prompt, size_t len, const lm_gen_params *gp) {
    lm_buf b = {0};
    lm_buf_append(&b, prompt, len);
    lm_buf_printf(&b, "\x1f%d|%.6g|%.6g|%.6g|%d|%.6g|%.6g|%.6g|%d|%d", gp->max_tokens, gp->repeat_penalty,
                  gp->presence_penalty, gp->frequency_penalty, gp->penalty_last_n, gp->top_p, gp->min_p,
                  gp->temperature, gp->top_k, gp->ignore_eos);
    for (int i = 0; i < LM_MAX_STOP && gp->stop[i]; i++) lm_buf_printf(&b, "\x1e%s", gp->stop[i]);
    /* structured output: a constrained reply is a different reply */
    lm_buf_printf(&b, "\x1d%d\x1d%s\x1d%s", gp->json_object, gp->grammar ? gp->grammar : "",
                  gp->json_schema ? gp->json_schema : "");
    if (b.oom) {
        lm_buf_free(&b);
        return NULL;
    }
    return lm_buf_take(&b);
}

static void unlink_entry(lm_response_cache *c, rc_entry *e) {
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(lm_response_cache *c, rc_entry *e) {
    e->next = c->head;
    e->prev = NULL;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

bool rc_lookup(lm_response_cache *c, const char *key, lm_buf *text, lm_finish *finish, int32_t *n_gen) {
    uint64_t h = fnv1a(key, strlen(key));
    pthread_mutex_lock(&c->mu);
    for (rc_entry *e = c->head; e; e = e->next) {
        if (e->hash == h && strcmp(e->key, key) == 0) {
            unlink_entry(c, e);
            push_front(c, e);
            lm_buf_append(text, e->text, e->text_len);
            *finish = e->finish;
            *n_gen = e->n_generated;
            c->hits++;
            pthread_mutex_unlock(&c->mu);
            return true;
        }
    }
    c->misses++;
    pthread_mutex_unlock(&c->mu);
    return false;
}

void rc_store(lm_response_cache *c, const char *key, const char *text, size_t len, lm_finish finish, int32_t n_gen) {
    rc_entry *e = lm_calloc(1, sizeof *e);
    if (!e) return;
    e->key = lm_strdup(key);
    e->text = lm_strndup(text, len);
    if (!e->key || !e->text) {
        entry_free(e);
        return;
    }
    e->hash = fnv1a(key, strlen(key));
    e->text_len = len;
    e->finish = finish;
    e->n_generated = n_gen;
    pthread_mutex_lock(&c->mu);
    for (rc_entry *o = c->head; o; o = o->next)
        if (o->hash == e->hash && strcmp(o->key, key) == 0) {
            unlink_entry(c, o);
            entry_free(o);
            c->n--;
            break;
        }
    push_front(c, e);
    c->n++;
    while (c->n > c->capacity) {
        rc_entry *old = c->tail;
        unlink_entry(c, old);
        entry_free(old);
        c->n--;
    }
    pthread_mutex_unlock(&c->mu);
}
