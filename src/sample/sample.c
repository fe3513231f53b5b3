/* sample/sample.c: the sampler chain, with an optional grammar mask before it, and the
 * stop-string matcher (see sample.h). */
#include "sample/sample.h"

#include <math.h>
#include <stdlib.h>

lm_gen_params lm_gen_default_params(void) {
    lm_gen_params p;
    memset(&p, 0, sizeof p);
    p.max_tokens = 256;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.penalty_last_n = 64;
    p.seed = 0xC0FFEE;
    p.top_logprobs = -1;
    return p;
}

lm_status smp_init(smp_sampler *s, const lm_gen_params *p, size_t n_vocab, const smp_vocab *vocab,
                   lm_error *err) {
    memset(s, 0, sizeof *s);
    s->p = *p;
    /* the texts are borrowed for this call only; the compiled grammar is what stays */
    s->p.grammar = NULL;
    s->p.json_schema = NULL;
    s->n_vocab = n_vocab;
    lm_rng_seed(&s->rng, p->seed);
    int n_req = (p->grammar != NULL) + (p->json_schema != NULL) + (p->json_object ? 1 : 0);
    if (n_req > 1)
        return lm_fail(err, LM_ERR_MISUSE, "structured output: set only one of grammar, json_schema and json_object");
    if (n_req && (!vocab || !vocab->tok))
        return lm_fail(err, LM_ERR_MISUSE, "structured output needs the model's tokenizer");
    s->prob = lm_malloc(n_vocab * sizeof(float));
    s->idx = lm_malloc(n_vocab * sizeof(int32_t));
    s->counts = lm_calloc(n_vocab, sizeof(int32_t));
    if (!s->prob || !s->idx || !s->counts) {
        smp_free(s);
        return lm_fail_nomem(err, "the sampler");
    }
    if (!n_req) return LM_OK;
    lm_buf text = {0};
    lm_status st = LM_OK;
    const char *gt = p->grammar;
    size_t gl = gt ? strlen(gt) : 0;
    if (p->json_schema) {
        st = smp_json_schema_grammar(p->json_schema, strlen(p->json_schema), 0, &text, err);
    } else if (p->json_object && !smp_json_object_grammar(&text)) {
        st = lm_fail_nomem(err, "the JSON grammar");
    }
    if (!p->grammar) {
        gt = text.data ? text.data : "";
        gl = text.len;
    }
    if (!st) st = smp_grammar_compile(gt, gl, &s->grammar, err);
    lm_buf_free(&text);
    if (!st) st = smp_matcher_new(s->grammar, vocab->tok, vocab->eog, vocab->n_eog, n_vocab, &s->matcher, err);
    if (st) smp_free(s);
    return st;
}

void smp_free(smp_sampler *s) {
    lm_free(s->prob);
    lm_free(s->idx);
    lm_free(s->counts);
    smp_matcher_free(s->matcher);
    smp_grammar_free(s->grammar);
    memset(s, 0, sizeof *s);
}

void smp_prepare(smp_sampler *s) {
    if (s->matcher && !s->status && !smp_matcher_done(s->matcher) && !smp_matcher_mask(s->matcher, NULL))
        s->status = LM_ERR_NOMEM;
}

static void apply_penalties(smp_sampler *s, float *logits, const lm_token *hist, size_t n_hist) {
    const lm_gen_params *p = &s->p;
    bool rep = p->repeat_penalty != 1.0f && p->repeat_penalty > 0;
    bool pres = p->presence_penalty != 0.0f, freq = p->frequency_penalty != 0.0f;
    if (!rep && !pres && !freq) return;
    size_t start = 0;
    if (p->penalty_last_n >= 0 && n_hist > (size_t)p->penalty_last_n) start = n_hist - (size_t)p->penalty_last_n;
    for (size_t i = start; i < n_hist; i++)
        if (hist[i] >= 0 && (size_t)hist[i] < s->n_vocab) s->counts[hist[i]]++;
    for (size_t i = start; i < n_hist; i++) {
        lm_token t = hist[i];
        if (t < 0 || (size_t)t >= s->n_vocab || s->counts[t] == 0) continue;
        int32_t c = s->counts[t];
        if (rep) logits[t] = logits[t] > 0 ? logits[t] / p->repeat_penalty : logits[t] * p->repeat_penalty;
        logits[t] -= (float)c * p->frequency_penalty + (c > 0 ? p->presence_penalty : 0.0f);
        s->counts[t] = 0; /* applied once per distinct token; also resets for the next call */
    }
}

/* Orders candidate indices by logit, descending (ties: lower id first). Merge sort with a
 * scratch array, so the comparison needs no global state. */
static bool before(const float *l, int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); }

static void sort_desc(int32_t *idx, int32_t *tmp, size_t n, const float *l) {
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = LM_MIN(lo + w, n), hi = LM_MIN(lo + 2 * w, n), i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = before(l, idx[j], idx[i]) ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
}

/* Moves the k best indices to the front, sorted (k small: a bounded insertion list). */
static void top_k_desc(int32_t *idx, size_t n, size_t k, const float *l) {
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = idx[i];
        if (have == k && !before(l, c, idx[k - 1])) continue;
        size_t pos = have < k ? have++ : k - 1;
        while (pos > 0 && before(l, c, idx[pos - 1])) {
            idx[pos] = idx[pos - 1];
            pos--;
        }
        idx[pos] = c;
    }
}

/* The grammar takes the token picked; -1 (with s->status) if it cannot. */
static lm_token accepted(smp_sampler *s, lm_token id) {
    if (!s->matcher) return id;
    lm_status st = smp_matcher_accept(s->matcher, id);
    if (st) {
        s->status = st;
        return -1;
    }
    return id;
}

lm_token smp_sample(smp_sampler *s, float *logits, const lm_token *hist, size_t n_hist) {
    const lm_gen_params *p = &s->p;
    size_t n = s->n_vocab;
    if (s->status) return -1;
    apply_penalties(s, logits, hist, n_hist);
    bool greedy = p->temperature <= 0.0f;
    if (greedy && !s->matcher) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return (lm_token)best;
    }
    if (greedy) {
        /* the unconstrained choice is usually allowed: then no mask is needed */
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        if (smp_matcher_allows(s->matcher, (lm_token)best)) return accepted(s, (lm_token)best);
    }
    /* candidates: every id, or those the grammar allows */
    size_t nc = n;
    if (s->matcher) {
        uint32_t n_allowed = 0;
        const uint64_t *mask = smp_matcher_mask(s->matcher, &n_allowed);
        if (!mask) {
            s->status = LM_ERR_NOMEM;
            return -1;
        }
        if (n_allowed == 0) return -1;
        if (greedy) { /* the best allowed one, without listing them */
            int32_t best = -1;
            for (size_t w = 0; w < (n + 63) / 64; w++) {
                uint64_t bits = mask[w];
                if (bits == ~0ull) {
                    for (size_t i = w * 64; i < w * 64 + 64; i++)
                        if (best < 0 || logits[i] > logits[best]) best = (int32_t)i;
                } else {
                    for (; bits; bits &= bits - 1) {
                        size_t i = w * 64 + smp_ctz64(bits);
                        if (best < 0 || logits[i] > logits[best]) best = (int32_t)i;
                    }
                }
            }
            return accepted(s, best);
        }
        nc = 0;
        for (size_t w = 0; w < (n + 63) / 64; w++) {
            uint64_t bits = mask[w];
            if (bits == ~0ull) {
                for (int j = 0; j < 64; j++) s->idx[nc++] = (int32_t)(w * 64 + (size_t)j);
            } else {
                for (; bits; bits &= bits - 1) s->idx[nc++] = (int32_t)(w * 64 + smp_ctz64(bits));
            }
        }
    } else {
        for (size_t i = 0; i < n; i++) s->idx[i] = (int32_t)i;
    }
    size_t k = nc;
    if (p->top_k > 0 && (size_t)p->top_k < nc) k = (size_t)p->top_k;
    if (k <= 256) {
        top_k_desc(s->idx, nc, k, logits);
    } else {
        sort_desc(s->idx, s->counts, nc, logits); /* counts doubles as scratch; zeroed after */
        memset(s->counts, 0, nc * sizeof *s->counts);
    }
    float maxl = logits[s->idx[0]];
    double sum = 0;
    for (size_t i = 0; i < k; i++) {
        s->prob[i] = expf((logits[s->idx[i]] - maxl) / p->temperature);
        sum += s->prob[i];
    }
    for (size_t i = 0; i < k; i++) s->prob[i] = (float)(s->prob[i] / sum);
    /* top-p: smallest prefix with cumulative probability >= top_p */
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        double cum = 0;
        size_t keep = k;
        for (size_t i = 0; i < k; i++) {
            cum += s->prob[i];
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        k = keep;
    }
    /* min-p: drop candidates below min_p times the best probability */
    if (p->min_p > 0.0f) {
        float floor_p = s->prob[0] * p->min_p;
        size_t keep = 1;
        while (keep < k && s->prob[keep] >= floor_p) keep++;
        k = keep;
    }
    sum = 0;
    for (size_t i = 0; i < k; i++) sum += s->prob[i];
    double r = lm_rng_uniform(&s->rng) * sum, acc = 0;
    for (size_t i = 0; i < k; i++) {
        acc += s->prob[i];
        if (r < acc) return accepted(s, s->idx[i]);
    }
    return accepted(s, s->idx[k - 1]);
}

/* ---- stop strings ---- */

void smp_stop_init(smp_stop *st, const char *const *stop, size_t n) {
    memset(st, 0, sizeof *st);
    st->stop = stop;
    st->n_stop = n;
}

void smp_stop_free(smp_stop *st) { lm_buf_free(&st->pending); }

void smp_stop_push(smp_stop *st, const char *text, size_t len, lm_buf *out) {
    if (st->hit) return;
    lm_buf_append(&st->pending, text, len);
    const char *d = st->pending.data ? st->pending.data : "";
    size_t pl = st->pending.len;
    /* earliest full match */
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < st->n_stop; i++) {
        const char *s = st->stop[i];
        size_t sl = s ? strlen(s) : 0;
        if (!sl || sl > pl) continue;
        for (size_t at = 0; at + sl <= pl && at < best; at++)
            if (memcmp(d + at, s, sl) == 0) {
                best = at;
                break;
            }
    }
    if (best != SIZE_MAX) {
        lm_buf_append(out, d, best);
        st->hit = true;
        lm_buf_reset(&st->pending);
        return;
    }
    /* hold back the longest suffix that is a prefix of some stop string */
    size_t hold = 0;
    for (size_t i = 0; i < st->n_stop; i++) {
        const char *s = st->stop[i];
        size_t sl = s ? strlen(s) : 0;
        for (size_t k = LM_MIN(sl - (sl ? 1 : 0), pl); k > hold; k--)
            if (memcmp(d + pl - k, s, k) == 0) {
                hold = k;
                break;
            }
    }
    size_t give = pl - hold;
    if (give) {
        lm_buf_append(out, d, give);
        memmove(st->pending.data, d + give, hold);
        st->pending.len = hold;
        st->pending.data[hold] = 0;
    }
}

void smp_stop_flush(smp_stop *st, lm_buf *out) {
    if (!st->hit && st->pending.len) lm_buf_append(out, st->pending.data, st->pending.len);
    lm_buf_reset(&st->pending);
}
