/* model/model.h: the internal header of src/model.
 * Owns: the lm_model (hyper-parameters, weight views bound to roles by the architecture table,
 * tokenizer, chat template), the forward pass written once against compute/backend.h, and the
 * KV cache layout. */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <pthread.h>

#include "compute/backend.h"
#include "formats/formats.h"
#include "tokenizer/tokenizer.h"

enum lm_arch { LM_ARCH_LLAMA, LM_ARCH_MISTRAL, LM_ARCH_QWEN2, LM_ARCH_QWEN3, LM_ARCH_PHI3,
               LM_ARCH_COUNT };

/* One row of the architecture table: what differs between families. */
typedef struct lm_arch_desc {
    const char *name;         /* GGUF general.architecture / HF model_type */
    bool qkv_bias;            /* q/k/v projections carry biases (qwen2) */
    bool qk_norm;             /* per-head RMSNorm of q and k before RoPE (qwen3) */
    bool fused_qkv;           /* one qkv projection [q;k;v] (phi3) */
    bool fused_gate_up;       /* one gate_up projection [gate;up] (phi3) */
    bool gguf_rope_interleaved; /* GGUF files of this arch rotate interleaved pairs */
} lm_arch_desc;

extern const lm_arch_desc lm_arch_table[LM_ARCH_COUNT];
/* Index of an architecture name, or -1. */
int lm_arch_find(const char *name);
/* "llama, mistral, qwen2, qwen3, phi3" for messages. */
const char *lm_arch_list(void);

typedef struct lm_hparams {
    int arch;
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx_train, n_rot;
    float norm_eps, rope_theta;
    bool rope_interleaved;    /* pairs (GGUF llama) vs halves (HF, NEOX) */
    int32_t sliding_window;   /* 0: none */
    float rope_attn_factor;   /* longrope magnitude scaling, 1 otherwise */
} lm_hparams;

typedef struct lm_layer {
    cm_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
    const float *attn_norm, *ffn_norm, *q_norm, *k_norm; /* float copies (owned by the model) */
    const float *bq, *bk, *bv;                           /* NULL without biases */
} lm_layer;

struct lm_model {
    lm_hparams hp;
    char arch_name[32];
    const char *format;       /* "gguf", "safetensors", "mlx" */
    char *path;
    lm_layer *layers;
    cm_matrix tok_embd;       /* (n_vocab, n_embd) */
    cm_matrix output;         /* (n_vocab, n_embd); the embedding when tied */
    const float *output_norm;
    float *inv_freq;          /* n_rot/2, scaling applied */
    float *inv_freq_long;     /* longrope long factors, or NULL */
    int32_t rope_orig_ctx;    /* longrope switch point */
    /* owned storage */
    void **owned;             /* float copies and re-aligned tensors */
    size_t n_owned, cap_owned;
    gguf_file *gguf;
    st_set *st;
    tok_tokenizer *tok;       /* NULL when the folder has no tokenizer */
    char *chat_template;      /* owned: the model's own template or the override, or NULL */
    lm_token *eog;            /* end-of-generation ids */
    size_t n_eog;
    uint64_t n_params, weight_bytes;
    char quant_summary[512];  /* weight types by tensor group (lm_model_info.quant) */
    lm_pool *pool;
    cm_ctx *cm;
    pthread_mutex_t compute_mu; /* one forward pass at a time uses the pool and scratch */
    lm_logger log;
    int32_t n_threads;
    uint32_t magic;           /* LM_MODEL_MAGIC while alive */
    uint64_t generation;      /* unique per load */
    struct lm_session *sessions; /* live sessions, detached when the model is freed */
    pthread_mutex_t sess_mu;
};

/* Marks every live session of m as orphaned (model/session.c); called by lm_model_free. */
void lm_session_detach_all(lm_model *m);

#define LM_MODEL_MAGIC 0x4C4D4D44u

/* Loaders (model/load.c). */
lm_status lm_model_load_gguf(lm_model *m, const char *path, const lm_model_params *p, lm_error *err);
lm_status lm_model_load_hf(lm_model *m, const char *dir, const lm_model_params *p, lm_error *err);
/* The vocabulary and chat template alone (lm_model_params.vocab_only; model/vocab.c): from a GGUF
 * file, a tokenizer.json file, or a folder holding tokenizer.json. m->layers stays NULL. */
lm_status lm_model_load_vocab(lm_model *m, const char *path, const lm_model_params *p, lm_error *err);
/* True when the folder holds tokenizer.json but no config.json. */
bool lm_model_is_tokenizer_only(const char *dir);
/* Computes inv_freq from hparams and scaling (model/load.c). */
lm_status lm_model_keep(lm_model *m, void *p); /* takes ownership; frees p on failure */
bool lm_model_is_eog(const lm_model *m, lm_token id);

/* KV cache of one session: per layer (n_head_kv, n_ctx, head_dim) for K and for V, elements
 * of type (CM_F16 by default: half the memory and bandwidth; CM_F32 on request). K is stored
 * with RoPE applied. */
typedef struct lm_kv {
    void *k, *v;
    uint32_t type;            /* CM_F16 or CM_F32 */
    size_t n_ctx;
    size_t layer_stride;      /* elements per layer */
    float *attn_scratch;      /* cm_attention's scratch for every thread of the model's pool */
} lm_kv;

/* Per-session scratch for a micro-batch of up to n_batch tokens. */
typedef struct lm_fwd_buf {
    size_t n_batch;
    float *x, *xb, *q, *k, *v, *att, *o, *gate, *up, *logits;
    float *rope_cs;           /* (n_batch, n_rot): cos/sin of each position, shared by all layers */
} lm_fwd_buf;

/* f32: keep the cache in F32 instead of F16. */
lm_status lm_kv_init(lm_kv *kv, const lm_model *m, size_t n_ctx, bool f32);
void lm_kv_free(lm_kv *kv);
lm_status lm_fwd_buf_init(lm_fwd_buf *b, const lm_model *m, size_t n_batch);
void lm_fwd_buf_free(lm_fwd_buf *b);

/* Runs n tokens (n <= b->n_batch) at positions pos0..pos0+n-1 through the model, writing K/V
 * into the cache. logits: NULL, or n_vocab floats for the last token; all_logits: NULL or
 * n * n_vocab. The caller holds no lock; this takes the model's compute lock. */
void lm_forward(const lm_model *m, lm_kv *kv, lm_fwd_buf *b, const lm_token *ids, size_t n,
                size_t pos0, float *logits, float *all_logits);

#endif /* LM_MODEL_H */
