/* hub/resolve.c: model references → local paths. A path that exists is used as it is; an id
 * "org/name[@revision]" is looked up in the Hugging Face cache exactly as huggingface_hub lays it
 * out: <cache>/models--org--name/refs/<revision> holds a commit hash, and
 * <cache>/models--org--name/snapshots/<commit>/ holds the files (symlinks into blobs/). A short
 * name from the catalog ("llama3.2:3b") is first replaced by its repo id. */
#include "hub/hub.h"

#include <ctype.h>
#include <stdio.h>

static bool id_char(char c) { return isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-'; }

static bool part_ok(const char *s, size_t n) {
    if (n == 0 || n > 96 || s[0] == '.' || s[0] == '-') return false;
    for (size_t i = 0; i < n; i++)
        if (!id_char(s[i])) return false;
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == '.' && s[i + 1] == '.') return false;
    return true;
}

bool hub_parse_id(const char *ref, char *org, size_t org_cap, char *name, size_t name_cap, char *rev,
                  size_t rev_cap) {
    const char *slash = strchr(ref, '/');
    if (!slash) return false;
    const char *at = strchr(slash + 1, '@');
    size_t on = (size_t)(slash - ref);
    size_t nn = at ? (size_t)(at - slash - 1) : strlen(slash + 1);
    if (!part_ok(ref, on) || !part_ok(slash + 1, nn) || on >= org_cap || nn >= name_cap) return false;
    const char *r = at ? at + 1 : "main";
    size_t rn = strlen(r);
    if (rn == 0 || rn >= rev_cap || r[0] == '/' || r[0] == '.' || strstr(r, "..")) return false;
    for (size_t i = 0; i < rn; i++)
        if (!id_char(r[i]) && r[i] != '/') return false;
    memcpy(org, ref, on);
    org[on] = 0;
    memcpy(name, slash + 1, nn);
    name[nn] = 0;
    memcpy(rev, r, rn + 1);
    return true;
}

static bool is_commit(const char *s) {
    if (strlen(s) != 40) return false;
    for (int i = 0; i < 40; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) return false;
    return true;
}

lm_status lm_resolve_model(const char *ref, const char *cache_dir, char *out, size_t cap, lm_error *err) {
    if (!ref || !out) return lm_fail(err, LM_ERR_MISUSE, "lm_resolve_model: ref and out must not be NULL");
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
    char org[128], name[128], rev[256];
    if (!hub_parse_id(ref, org, sizeof org, name, sizeof name, rev, sizeof rev))
        return lm_fail(err, LM_ERR_IO, "%s: no such file or folder, and not a Hugging Face model id (org/name[@revision])", ref);
    if (!cache_dir) return lm_fail(err, LM_ERR_IO, "%s: not a local path, and no Hugging Face cache folder is known", ref);
    char repo[1024], path[1400], commit[256];
    snprintf(repo, sizeof repo, "%s/models--%s--%s", cache_dir, org, name);
    if (!lm_is_dir(repo))
        return lm_fail(err, LM_ERR_IO, "%s: not in the Hugging Face cache (%s); download it first (locallm pull %s/%s)", ref, repo, org, name);
    if (is_commit(rev)) {
        snprintf(commit, sizeof commit, "%s", rev);
    } else {
        snprintf(path, sizeof path, "%s/refs/%s", repo, rev);
        char *text = NULL;
        size_t len = 0;
        lm_error e2 = {0};
        if (lm_read_text(path, &text, &len, &e2))
            return lm_fail(err, LM_ERR_IO, "%s: revision '%s' is not in the cache (no %s)", ref, rev, path);
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' ')) text[--len] = 0;
        bool ok = is_commit(text);
        snprintf(commit, sizeof commit, "%s", text);
        lm_free(text);
        if (!ok) return lm_fail(err, LM_ERR_FORMAT, "%s: %s does not hold a commit hash", ref, path);
    }
    snprintf(path, sizeof path, "%s/snapshots/%s", repo, commit);
    if (!lm_is_dir(path)) return lm_fail(err, LM_ERR_IO, "%s: snapshot %s is missing from the cache", ref, path);
    if (strlen(path) >= cap) return lm_fail(err, LM_ERR_TOO_SMALL, "path of %zu bytes does not fit", strlen(path));
    memcpy(out, path, strlen(path) + 1);
    return LM_OK;
}
