/* hub/hub.h: the internal header of src/hub.
 * Owns: model references (a path, or a Hugging Face id "org/name[@revision]") and the Hugging Face
 * cache layout that huggingface_hub writes (models--org--name/refs, snapshots, blobs). */
#ifndef LM_HUB_H
#define LM_HUB_H

#include "core/core.h"

/* Splits and validates "org/name[@revision]": only [A-Za-z0-9._-] in org and name, no ".." and no
 * leading '.', '-' or '/'; revision [A-Za-z0-9._/-] without "..". false when ref is not a valid id. */
bool hub_parse_id(const char *ref, char *org, size_t org_cap, char *name, size_t name_cap,
                  char *rev, size_t rev_cap);

/* ---- downloads (download.c) ---- */

typedef struct hub_opts {
    const char *endpoint;              /* "https://huggingface.co" when NULL */
    const char *token;                 /* sent as "Authorization: Bearer ..." when not NULL/"" */
    const char *cache_dir;             /* the hub cache folder (required) */
    bool offline;                      /* never touch the network: resolve from the cache only */
    const char *const *includes;       /* fnmatch globs restricting the files (may be NULL) */
    size_t n_includes;
} hub_opts;

/* Called per received chunk: file (repo-relative), bytes done and total (0 when unknown).
 * Non-zero stops the pull with LM_ERR_CANCELLED. */
typedef int (*hub_progress_fn)(void *user, const char *file, uint64_t done, uint64_t total);

/* Splits "org/name[@rev][:QUANT]" into the id part (copied to base) and the quant (may be "").
 * false when the id or the quant is not valid. */
bool hub_split_quant(const char *ref, char *base, size_t base_cap, char *quant, size_t quant_cap);

/* Downloads what a model needs from repo_id ("org/name[@rev][:QUANT]") into the cache, laid out
 * as huggingface_hub does (blobs/<etag>, relative symlinks in snapshots/<commit>/, refs/<rev>).
 * out gets the snapshot folder, or for a GGUF repo the path of the chosen .gguf in it. */
lm_status hub_pull(const hub_opts *o, const char *repo_id, hub_progress_fn fn, void *user,
                   char *out, size_t cap, lm_error *err);

/* ---- the cache (cache.c) ---- */

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

#endif
