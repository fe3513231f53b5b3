/* hub/resolve.c: model references → local paths (lm_hub_resolve). A path that exists is used as
 * it is; a short name from the catalog ("llama3.2:3b") is first replaced by its repo id; an id
 * "org/name[@revision]" is looked up in the Hugging Face cache (cache.c), and "org/name:QUANT"
 * picks the matching .gguf of the cached snapshot as an offline pull does (download.c). */
#include "hub/hub.h"

lm_status lm_hub_resolve(const char *ref, const char *cache_dir, char *out, size_t cap, lm_error *err) {
    if (!ref || !out) return lm_fail(err, LM_ERR_MISUSE, "lm_hub_resolve: ref and out must not be NULL");
    if (lm_path_exists(ref)) {
        if (strlen(ref) >= cap) return lm_fail(err, LM_ERR_TOO_SMALL, "path of %zu bytes does not fit", strlen(ref));
        memcpy(out, ref, strlen(ref) + 1);
        return LM_OK;
    }
    /* a catalog short name ("llama3.2:3b") stands for its repo id */
    char expanded[512];
    lm_status st = hub_expand_ref(ref, expanded, sizeof expanded, err);
    if (st) return st;
    ref = expanded;
    if (strchr(ref, ':') && cache_dir) {
        /* a GGUF repo with a :QUANT suffix: the matching .gguf of the cached snapshot */
        lm_hub_params hp = lm_hub_default_params();
        hp.cache_dir = cache_dir;
        hp.offline = true;
        return lm_hub_pull(ref, &hp, out, cap, err);
    }
    return hub_cache_snapshot(ref, cache_dir, out, cap, err);
}
