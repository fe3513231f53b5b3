/* model/model.h: the internal header of src/model.
 * Owns: the lm_model (hyper-parameters, weight views bound to roles by the architecture table,
 * tokenizer, parsed chat template, the backend its weights were prepared for) and the forward
 * pass, written once against compute/backend.h. Compute state (scratch, pools, KV caches) lives
 * in engines (session/), never in the model. */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <stdatomic.h>

#include "compute/backend.h"
#include "chat/chat.h"
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

/* The layers and weights are the backend's network description (compute/backend.h). */
typedef cm_layer lm_layer;

/* Immutable once lm_model_load returns: every field below is written by the loader only. Many
 * engines and threads read it at once with no lock. The one exception is refs, an atomic count of
 * the holders (the caller's handle and each engine made on it): the model is released when the
 * last one lets go. */
struct lm_model {
    lm_hparams hp;
    char arch_name[32];
    const char *format;       /* "gguf", "safetensors", "mlx" */
    char *path;
    cm_net net;               /* layers, embedding, output, RoPE tables: what the backend runs */
    cm_backend *be;           /* the device the weights were prepared for */
    /* owned storage */
    void **owned;             /* float copies and re-aligned tensors */
    size_t n_owned, cap_owned;
    gguf_file *gguf;
    st_set *st;
    tok_tokenizer *tok;       /* NULL when the folder has no tokenizer */
    char *chat_template;      /* owned: the model's own template or the override, or NULL */
    jinja_template *tmpl;     /* chat_template parsed at load; NULL when none or it did not parse */
    lm_error tmpl_err;        /* why chat_template did not parse (code LM_OK when it did) */
    int tool_format;          /* enum chat_tool_format of its replies (chat/tools.c) */
    lm_token *eog;            /* end-of-generation ids */
    size_t n_eog;
    uint64_t n_params, weight_bytes;
    char quant_summary[512];  /* weight types by tensor group (lm_model_info.quant) */
    lm_logger log;
    int32_t n_threads;        /* engines' default thread count (lm_model_params.n_threads) */
    atomic_int refs;
    uint32_t magic;           /* LM_MODEL_MAGIC while alive */
};

#define LM_MODEL_MAGIC 0x4C4D4D44u

/* Holders of a model (engines) take a reference and drop it when done; the last drop frees it. */
void lm_model_retain(const lm_model *m);
void lm_model_release(const lm_model *m);

/* Loaders (model/load.c). */
lm_status lm_model_load_gguf(lm_model *m, const char *path, const lm_model_params *p, lm_error *err);
lm_status lm_model_load_hf(lm_model *m, const char *dir, const lm_model_params *p, lm_error *err);
/* The vocabulary and chat template alone (lm_model_params.vocab_only; model/vocab.c): from a GGUF
 * file, a tokenizer.json file, or a folder holding tokenizer.json. m->net.layers stays NULL. */
lm_status lm_model_load_vocab(lm_model *m, const char *path, const lm_model_params *p, lm_error *err);
/* True when the folder holds tokenizer.json but no config.json. */
bool lm_model_is_tokenizer_only(const char *dir);
/* Adds p (lm_malloc'd) to the storage the model frees with itself (model/load.c); takes
 * ownership, and frees p on failure. */
lm_status lm_model_keep(lm_model *m, void *p);
/* True when id is one of the model's end-of-generation ids (model/load.c). */
bool lm_model_is_eog(const lm_model *m, lm_token id);

/* The one forward pass of every architecture in the table (model/forward.c): runs the batch
 * through the model on a compute context of m's backend: every token's K and V go into its
 * sequence's cache, and the rows that want logits get them. */
void lm_forward(const lm_model *m, cm_ctx *c, const cm_batch *b);

#endif /* LM_MODEL_H */
