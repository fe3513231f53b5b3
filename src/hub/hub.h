/* hub/hub.h: the internal header of src/hub.
 * Owns: model references (a path, or a Hugging Face id "org/name[@revision]") and the Hugging Face
 * cache layout that huggingface_hub writes (models--org--name/refs, snapshots, blobs). */
#ifndef LM_HUB_H
#define LM_HUB_H

#include "core/core.h"

/* ---- downloads (download.c): lm_hub_pull in locallm.h ---- */

/* Splits "org/name[@rev][:QUANT]" into the id part (copied to base) and the quant (may be "").
 * false when the id or the quant is not valid. */
bool hub_split_quant(const char *ref, char *base, size_t base_cap, char *quant, size_t quant_cap);

/* ---- the cache (cache.c) ---- */

/* Splits and validates "org/name[@revision]": only [A-Za-z0-9._-] in org and name, no ".." and no
 * leading '.', '-' or '/'; revision [A-Za-z0-9._/-] without "..". false when ref is not a valid id. */
bool hub_parse_id(const char *ref, char *org, size_t org_cap, char *name, size_t name_cap,
                  char *rev, size_t rev_cap);

/* The snapshot folder of id "org/name[@revision]" (no :QUANT) in cache_dir: refs/<revision> read
 * for its commit unless the revision is one. LM_ERR_IO when the id is not valid, cache_dir is NULL
 * or the repo, revision or snapshot is not cached; LM_ERR_TOO_SMALL when out is too small. */
lm_status hub_cache_snapshot(const char *ref, const char *cache_dir, char *out, size_t cap, lm_error *err);

typedef struct hub_cached {
    char id[256];        /* org/name */
    char rev[128];       /* the newest ref name ("main"), "" when none */
    char commit[64];     /* the commit it points to (or the newest snapshot) */
    char format[16];     /* "gguf", "safetensors", "mlx" or "?" */
    uint64_t size;       /* bytes in blobs/ */
    int64_t mtime;       /* newest modification time in the repo folder (seconds) */
} hub_cached;

/* Lists models--*--* in cache_dir, sorted by id. *out is lm_malloc'd (lm_free). A missing cache
 * folder gives an empty list. */
lm_status hub_cache_list(const char *cache_dir, hub_cached **out, size_t *n, lm_error *err);
/* Removes models--org--name (id "org/name" must pass hub_parse_id without a revision). */
lm_status hub_cache_remove(const char *cache_dir, const char *id, lm_error *err);
/* Deletes a folder tree without following symlinks. */
lm_status hub_rmtree(const char *path, lm_error *err);

/* ---- the catalog of recommended models (catalog.c) ---- */

typedef struct hub_model_entry {
    const char *name;        /* short name, "llama3.2:3b" */
    const char *repo;        /* "org/name", with ":QUANT" for a GGUF repository */
    const char *format;      /* "mlx" or "gguf" */
    double params_b;         /* parameters, billions */
    double size_gb;          /* approximate download size, GB (1e9 bytes) */
    int32_t n_layer, n_kv_head, head_dim;
    int32_t n_ctx_train;     /* trained context (the session default is this capped at 4096) */
    const char *desc;        /* one line */
} hub_model_entry;

/* The whole table (constant, static storage) and its length. */
const hub_model_entry *hub_catalog(size_t *n);
/* The entry for a short name (exact, case-sensitive; a family name without a tag, "llama3.2",
 * gives its default size), NULL when there is none. */
const hub_model_entry *hub_catalog_find(const char *name);
/* The full short name a family name stands for ("llama3.2" -> "llama3.2:3b"), or NULL. Static. */
const char *hub_catalog_default(const char *family);
/* True when ref looks like a short name (no '/', has ':' or only [a-z0-9.-]) and is not a path. */
bool hub_is_short_name(const char *ref);
/* Expands ref into out: a catalog short name becomes its repo id, anything else is copied as is.
 * A ref that looks like a short name but is not in the catalog is LM_ERR_IO naming a few known
 * ones ("locallm ls --available" lists them all). */
lm_status hub_expand_ref(const char *ref, char *out, size_t cap, lm_error *err);

/* ---- memory needed vs. available (memory.c) ---- */

/* Fixed allowance for what is neither weights nor KV cache: compute scratch, logits, the
 * tokenizer, the thread pool, the process itself. */
#define HUB_MEM_OVERHEAD ((uint64_t)256 << 20)

typedef struct hub_mem_need {
    uint64_t weights;      /* bytes: files on disk, or the catalog's download size */
    uint64_t kv;           /* bytes of KV cache at ctx */
    uint64_t overhead;     /* HUB_MEM_OVERHEAD */
    uint64_t total;
    int32_t ctx;           /* the context the KV cache was sized for */
    int32_t n_layer, n_kv_head, head_dim; /* 0 when the config was not readable */
} hub_mem_need;

/* KV cache bytes: 2 (K and V) * n_layer * n_kv_head * head_dim * ctx * elem_bytes. */
uint64_t hub_kv_bytes(int32_t n_layer, int32_t n_kv_head, int32_t head_dim, int32_t ctx, uint32_t elem_bytes);
/* The context a session gets when asked for n_ctx (0: the trained one capped at 4096). */
int32_t hub_default_ctx(int32_t n_ctx, int32_t n_ctx_train);
/* Estimate for a catalog entry (not downloaded yet): its download size + F16 KV at the context. */
void hub_mem_need_entry(const hub_model_entry *e, int32_t n_ctx, hub_mem_need *out);
/* Estimate for a local model (a .gguf file, or a folder with config.json and *.safetensors),
 * read without loading the weights: file sizes + F16 KV at the context from its config. A config
 * that cannot be read leaves the KV part 0 (the load reports the real problem). */
lm_status hub_mem_need_path(const char *path, int32_t n_ctx, hub_mem_need *out, lm_error *err);
/* Memory the system can give without swapping: Linux MemAvailable (/proc/meminfo); macOS
 * hw.memsize * 3/4 (a simple bound: wired and compressed memory are not counted). */
lm_status hub_mem_available(uint64_t *out, lm_error *err);

#endif
