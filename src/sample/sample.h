/* sample/sample.h: the internal header of src/sample.
 * Owns: turning logits into the next token (penalties, top-k, top-p, min-p, temperature, seed)
 * and the stop-string matcher that holds back text which could still become a stop string. */
#ifndef LM_SAMPLE_H
#define LM_SAMPLE_H

#include "core/core.h"

typedef struct smp_sampler {
    lm_gen_params p;
    lm_rng rng;
    size_t n_vocab;
    float *prob;     /* n_vocab scratch */
    int32_t *idx;    /* n_vocab scratch */
    int32_t *counts; /* n_vocab scratch for penalties */
} smp_sampler;

lm_status smp_init(smp_sampler *s, const lm_gen_params *p, size_t n_vocab);
void smp_free(smp_sampler *s);
/* Picks the next token. logits (n_vocab) are modified in place. history: tokens so far (for
 * penalties). Deterministic for a given seed and inputs. */
lm_token smp_sample(smp_sampler *s, float *logits, const lm_token *history, size_t n_history);

/* Stop strings: feed text, get what may be delivered now. */
typedef struct smp_stop {
    const char *const *stop; /* borrowed, NULL-terminated within LM_MAX_STOP */
    size_t n_stop;
    lm_buf pending;
    bool hit;
} smp_stop;

void smp_stop_init(smp_stop *st, const char *const *stop, size_t n);
/* Appends text; appends to out what can be delivered. Sets st->hit when a stop string is found
 * (the stop string and anything after it are dropped). */
void smp_stop_push(smp_stop *st, const char *text, size_t len, lm_buf *out);
/* End of generation: releases held-back text (unless a stop string was hit). */
void smp_stop_flush(smp_stop *st, lm_buf *out);
void smp_stop_free(smp_stop *st);

#endif
