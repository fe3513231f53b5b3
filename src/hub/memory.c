/* hub/memory.c: how much memory a model needs (weights + KV cache + a fixed overhead) and how much
 * the machine has available, so the CLI can refuse a model that would make the system swap.
 * Owns: the estimate from a catalog entry or from a model's files and config (read without
 * loading the weights), and reading the available memory (Linux /proc/meminfo, macOS sysctl).
 * Does not own: the decision (the CLI compares, prints and honours --force). */
#include "hub/hub.h"
#include "formats/formats.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#include <sys/types.h>
#endif

/* Sessions keep K and V in F16 unless lm_session_params.kv_f32 asks for F32. */
enum { KV_ELEM_BYTES = 2, SESSION_CTX_CAP = 4096 };

uint64_t hub_kv_bytes(int32_t n_layer, int32_t n_kv_head, int32_t head_dim, int32_t ctx, uint32_t elem_bytes) {
    if (n_layer <= 0 || n_kv_head <= 0 || head_dim <= 0 || ctx <= 0) return 0;
    return 2ull * (uint64_t)n_layer * (uint64_t)n_kv_head * (uint64_t)head_dim * (uint64_t)ctx * elem_bytes;
}

int32_t hub_default_ctx(int32_t n_ctx, int32_t n_ctx_train) {
    if (n_ctx > 0) return n_ctx;
    if (n_ctx_train <= 0) return 2048; /* the loaders' default when a model does not say */
    return n_ctx_train < SESSION_CTX_CAP ? n_ctx_train : SESSION_CTX_CAP;
}

static void finish(hub_mem_need *o) {
    o->kv = hub_kv_bytes(o->n_layer, o->n_kv_head, o->head_dim, o->ctx, KV_ELEM_BYTES);
    o->overhead = HUB_MEM_OVERHEAD;
    o->total = o->weights + o->kv + o->overhead;
}

void hub_mem_need_entry(const hub_model_entry *e, int32_t n_ctx, hub_mem_need *out) {
    memset(out, 0, sizeof *out);
    out->weights = (uint64_t)(e->size_gb * 1e9);
    out->ctx = hub_default_ctx(n_ctx, e->n_ctx_train);
    out->n_layer = e->n_layer;
    out->n_kv_head = e->n_kv_head;
    out->head_dim = e->head_dim;
    finish(out);
}

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

/* Reads {arch}.key as a positive u32; false when absent. */
static bool arch_u32(const gguf_file *g, const char *arch, const char *key, int32_t *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    uint32_t v = 0;
    if (!gguf_get_u32(g, full, &v) || v == 0 || v > INT32_MAX) return false;
    *out = (int32_t)v;
    return true;
}

static lm_status need_gguf(const char *path, int32_t n_ctx, hub_mem_need *o, lm_error *err) {
    struct stat st;
    if (stat(path, &st) != 0) return lm_fail(err, LM_ERR_IO, "%s: cannot read its size", path);
    o->weights = (uint64_t)st.st_size;
    gguf_file *g = NULL;
    lm_error e2 = {0};
    int32_t ctx_train = 0;
    if (gguf_open(path, true, &g, &e2) == LM_OK) {
        gguf_str a;
        if (gguf_get_str(g, "general.architecture", &a) && a.len < 64) {
            char arch[64];
            snprintf(arch, sizeof arch, "%.*s", (int)a.len, a.ptr);
            int32_t n_embd = 0, n_head = 0;
            arch_u32(g, arch, "block_count", &o->n_layer);
            arch_u32(g, arch, "embedding_length", &n_embd);
            arch_u32(g, arch, "attention.head_count", &n_head);
            o->n_kv_head = n_head;
            arch_u32(g, arch, "attention.head_count_kv", &o->n_kv_head);
            o->head_dim = n_head ? n_embd / n_head : 0;
            arch_u32(g, arch, "attention.key_length", &o->head_dim);
            arch_u32(g, arch, "context_length", &ctx_train);
        }
        gguf_close(g);
    }
    o->ctx = hub_default_ctx(n_ctx, ctx_train);
    return LM_OK;
}

static lm_status need_dir(const char *dir, int32_t n_ctx, hub_mem_need *o, lm_error *err) {
    DIR *d = opendir(dir);
    if (!d) return lm_fail(err, LM_ERR_IO, "%s: cannot list the folder", dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".safetensors")) continue;
        char *p = lm_path_join(dir, de->d_name);
        if (!p) {
            closedir(d);
            return lm_fail_nomem(err, "path");
        }
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) o->weights += (uint64_t)st.st_size; /* follows the cache's symlinks */
        lm_free(p);
    }
    closedir(d);
    hf_config c;
    memset(&c, 0, sizeof c);
    lm_error e2 = {0};
    int32_t ctx_train = 0;
    if (hf_config_load(dir, &c, &e2) == LM_OK) {
        o->n_layer = c.n_layers;
        o->n_kv_head = c.n_kv_heads;
        o->head_dim = c.head_dim;
        ctx_train = c.max_position_embeddings;
        hf_config_free(&c);
    }
    o->ctx = hub_default_ctx(n_ctx, ctx_train);
    return LM_OK;
}

lm_status hub_mem_need_path(const char *path, int32_t n_ctx, hub_mem_need *out, lm_error *err) {
    if (!path || !out) return lm_fail(err, LM_ERR_MISUSE, "hub_mem_need_path: path and out must not be NULL");
    memset(out, 0, sizeof *out);
    lm_status st = lm_is_dir(path) ? need_dir(path, n_ctx, out, err) : need_gguf(path, n_ctx, out, err);
    if (st) return st;
    finish(out);
    return LM_OK;
}

lm_status hub_mem_available(uint64_t *out, lm_error *err) {
    if (!out) return lm_fail(err, LM_ERR_MISUSE, "hub_mem_available: out must not be NULL");
#if defined(__APPLE__)
    uint64_t total = 0;
    size_t len = sizeof total;
    if (sysctlbyname("hw.memsize", &total, &len, NULL, 0) != 0 || total == 0)
        return lm_fail(err, LM_ERR_IO, "sysctl hw.memsize: cannot read the memory size");
    *out = total / 4 * 3;
    return LM_OK;
#else
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return lm_fail(err, LM_ERR_IO, "/proc/meminfo: cannot open it");
    char line[256];
    unsigned long long kb = 0;
    bool found = false;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            found = true;
            break;
        }
    fclose(f);
    if (!found) return lm_fail(err, LM_ERR_FORMAT, "/proc/meminfo: no 'MemAvailable' line (Linux 3.14 or newer has one)");
    *out = (uint64_t)kb * 1024u;
    return LM_OK;
#endif
}
