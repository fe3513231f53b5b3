/* hub/cache.c: the Hugging Face cache folder, laid out exactly as huggingface_hub writes it:
 * <cache>/models--org--name/refs/<revision> holds a commit hash, and
 * <cache>/models--org--name/snapshots/<commit>/ holds the files (symlinks into blobs/).
 * Owns: validating ids (hub_parse_id), finding a cached snapshot, listing models--org--name folders
 * (ref, commit, size of blobs, format, last change) and removing one. Symlinks are never followed
 * when deleting. */
#include "hub/hub.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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

lm_status hub_cache_snapshot(const char *ref, const char *cache_dir, char *out, size_t cap, lm_error *err) {
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

lm_status hub_rmtree(const char *path, lm_error *err) {
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        if (errno == ENOENT) return LM_OK;
        return lm_fail(err, LM_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return lm_fail(err, LM_ERR_IO, "%s: cannot open folder: %s", path, strerror(errno));
        struct dirent *e;
        lm_status st = LM_OK;
        while (!st && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char *sub = lm_path_join(path, e->d_name);
            if (!sub) st = lm_fail_nomem(err, "path");
            else st = hub_rmtree(sub, err);
            lm_free(sub);
        }
        closedir(d);
        if (st) return st;
        if (rmdir(path) != 0) return lm_fail(err, LM_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        return LM_OK;
    }
    if (unlink(path) != 0) return lm_fail(err, LM_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    return LM_OK;
}

lm_status hub_cache_remove(const char *cache_dir, const char *id, lm_error *err) {
    char org[128], name[128], rev[256];
    if (!cache_dir || !id || strchr(id, '@') || strchr(id, ':') ||
        !hub_parse_id(id, org, sizeof org, name, sizeof name, rev, sizeof rev))
        return lm_fail(err, LM_ERR_MISUSE, "'%s' is not a valid Hugging Face model id (org/name)", id ? id : "(null)");
    char path[4096];
    snprintf(path, sizeof path, "%s/models--%s--%s", cache_dir, org, name);
    if (!lm_is_dir(path)) return lm_fail(err, LM_ERR_IO, "%s is not in the cache (no %s)", id, path);
    return hub_rmtree(path, err);
}

/* Adds the sizes of the files in dir (no recursion needed for blobs/) and tracks mtimes. */
static uint64_t dir_size(const char *dir, int64_t *mtime) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    uint64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p = lm_path_join(dir, e->d_name);
        struct stat sb;
        bool ok = p && lstat(p, &sb) == 0 && S_ISREG(sb.st_mode);
        lm_free(p);
        if (!ok) continue;
        sum += (uint64_t)sb.st_size;
        if ((int64_t)sb.st_mtime > *mtime) *mtime = (int64_t)sb.st_mtime;
    }
    closedir(d);
    return sum;
}

/* True when some file under dir (depth levels of real subfolders; a symlink to a folder is not
 * followed, so a snapshot holding `ln -s . a` is not walked again and again) ends with suffix. */
static bool has_suffix_file(const char *dir, const char *suffix, int depth) {
    DIR *d = opendir(dir);
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(e->d_name);
        if (n >= sl && strcmp(e->d_name + n - sl, suffix) == 0) found = true;
        else if (depth > 0) {
            char *p = lm_path_join(dir, e->d_name);
            struct stat sb;
            if (p && lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) found = has_suffix_file(p, suffix, depth - 1);
            lm_free(p);
        }
    }
    closedir(d);
    return found;
}

static void describe(const char *repo, hub_cached *c) {
    char p[4400];
    c->mtime = 0;
    snprintf(p, sizeof p, "%s/blobs", repo);
    c->size = dir_size(p, &c->mtime);
    c->rev[0] = c->commit[0] = 0;
    snprintf(p, sizeof p, "%s/refs/main", repo);
    const char *ref = "main";
    char *text = NULL;
    size_t len = 0;
    lm_error e = {0};
    if (lm_read_text(p, &text, &len, &e) != LM_OK) {
        /* another ref: the first one found */
        snprintf(p, sizeof p, "%s/refs", repo);
        DIR *d = opendir(p);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.') continue;
            snprintf(c->rev, sizeof c->rev, "%.127s", de->d_name);
            break;
        }
        if (d) closedir(d);
        ref = c->rev;
        if (ref[0]) {
            snprintf(p, sizeof p, "%s/refs/%s", repo, ref);
            if (lm_read_text(p, &text, &len, &e) != LM_OK) text = NULL;
        }
    } else {
        snprintf(c->rev, sizeof c->rev, "main");
    }
    if (text) {
        while (len && (text[len - 1] == '\n' || text[len - 1] == ' ')) text[--len] = 0;
        snprintf(c->commit, sizeof c->commit, "%s", text);
        lm_free(text);
    }
    if (!c->commit[0]) {
        snprintf(p, sizeof p, "%s/snapshots", repo);
        DIR *d = opendir(p);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            if (de->d_name[0] != '.') {
                snprintf(c->commit, sizeof c->commit, "%.63s", de->d_name);
                break;
            }
        if (d) closedir(d);
    }
    snprintf(c->format, sizeof c->format, "?");
    if (!c->commit[0] || strchr(c->commit, '/')) return;
    char snap[2200];
    snprintf(snap, sizeof snap, "%s/snapshots/%s", repo, c->commit);
    if (has_suffix_file(snap, ".gguf", 2)) {
        snprintf(c->format, sizeof c->format, "gguf");
        return;
    }
    if (has_suffix_file(snap, ".safetensors", 2)) {
        snprintf(c->format, sizeof c->format, "safetensors");
        snprintf(p, sizeof p, "%s/config.json", snap);
        cJSON *j = NULL;
        if (lm_json_load(p, &j, &e) == LM_OK) {
            if (cJSON_GetObjectItemCaseSensitive(j, "quantization")) snprintf(c->format, sizeof c->format, "mlx");
            cJSON_Delete(j);
        }
    }
}

static int by_id(const void *a, const void *b) { return strcmp(((const hub_cached *)a)->id, ((const hub_cached *)b)->id); }

lm_status hub_cache_list(const char *cache_dir, hub_cached **out, size_t *n, lm_error *err) {
    *out = NULL;
    *n = 0;
    if (!cache_dir) return lm_fail(err, LM_ERR_MISUSE, "hub_cache_list: no cache folder");
    DIR *d = opendir(cache_dir);
    if (!d) {
        if (errno == ENOENT) return LM_OK;
        return lm_fail(err, LM_ERR_IO, "%s: cannot open folder: %s", cache_dir, strerror(errno));
    }
    hub_cached *list = NULL;
    size_t cap = 0;
    struct dirent *e;
    lm_status st = LM_OK;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "models--", 8) != 0) continue;
        const char *rest = e->d_name + 8;
        const char *sep = strstr(rest, "--");
        if (!sep) continue;
        char id[256];
        snprintf(id, sizeof id, "%.*s/%s", (int)(sep - rest), rest, sep + 2);
        char o[128], nm[128], rv[256];
        if (!hub_parse_id(id, o, sizeof o, nm, sizeof nm, rv, sizeof rv)) continue;
        char repo[2048];
        snprintf(repo, sizeof repo, "%s/%s", cache_dir, e->d_name);
        if (!lm_is_dir(repo)) continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            hub_cached *nl = lm_realloc(list, nc * sizeof *nl);
            if (!nl) {
                st = lm_fail_nomem(err, "cache list");
                break;
            }
            list = nl, cap = nc;
        }
        hub_cached *c = &list[*n];
        memset(c, 0, sizeof *c);
        snprintf(c->id, sizeof c->id, "%s", id);
        describe(repo, c);
        (*n)++;
    }
    closedir(d);
    if (st) {
        lm_free(list);
        *n = 0;
        return st;
    }
    if (*n) qsort(list, *n, sizeof *list, by_id);
    *out = list;
    return LM_OK;
}
