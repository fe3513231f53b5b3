/* sample/sample.c: the sampler chain and the stop-string matcher (see sample.h). */
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

lm_status smp_init(smp_sampler *s, const lm_gen_params *p, size_t n_vocab) {
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->n_vocab = n_vocab;
    lm_rng_seed(&s->rng, p->seed);
    s->prob = lm_malloc(n_vocab * sizeof(float));
    s->idx = lm_malloc(n_vocab * sizeof(int32_t));
    s->counts = lm_calloc(n_vocab, sizeof(int32_t));
    if (!s->prob || !s->idx || !s->counts) {
        smp_free(s);
        return LM_ERR_NOMEM;
    }
    return LM_OK;
}

void smp_free(smp_sampler *s) {
    lm_free(s->prob);
    lm_free(s->idx);
    lm_free(s->counts);
    memset(s, 0, sizeof *s);
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

lm_token smp_sample(smp_sampler *s, float *logits, const lm_token *hist, size_t n_hist) {
    const lm_gen_params *p = &s->p;
    size_t n = s->n_vocab;
    apply_penalties(s, logits, hist, n_hist);
    if (p->temperature <= 0.0f) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return (lm_token)best;
    }
    size_t k = n;
    if (p->top_k > 0 && (size_t)p->top_k < n) k = (size_t)p->top_k;
    for (size_t i = 0; i < n; i++) s->idx[i] = (int32_t)i;
    if (k <= 256) {
        top_k_desc(s->idx, n, k, logits);
    } else {
        sort_desc(s->idx, s->counts, n, logits); /* counts doubles as scratch; zeroed after */
        memset(s->counts, 0, n * sizeof *s->counts);
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
        if (r < acc) return s->idx[i];
    }
    return s->idx[k - 1];
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
