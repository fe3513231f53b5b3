/* hub/download.c: downloads a model from the Hugging Face hub into the shared cache, laid out as
 * huggingface_hub does: models--org--name/blobs/<etag> (written as <etag>.incomplete first and
 * resumed with a Range request), snapshots/<commit>/<file> relative symlinks into blobs,
 * refs/<rev> holding the commit, and .locks/models--org--name/<etag>.lock, the file lock
 * huggingface_hub takes around each blob, so a pull beside a Python download never writes the
 * same .incomplete. A sha256 etag (LFS) or a git sha1 etag (small files) is verified; no file is
 * written past the size the hub announced, and small (non-LFS) files not past HUB_MAX_GIT_FILE.
 * A file the snapshot already holds is reported as cached without a request. Redirects may lead
 * to http and https only. Offline mode reads only the cache.
 * Owns: lm_hub_pull. Does not own: listing the cache (cache.c) or the catalog (catalog.c). */
#include "hub/hub.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A repository listing more files than this is refused (model repositories hold dozens). */
#define HUB_MAX_FILES 50000
/* Files the hub keeps in git rather than LFS (their etag is a git sha1) are small: the hub refuses
 * pushes of non-LFS files over 10 MB. Anything bigger served under such an etag is refused. */
#define HUB_MAX_GIT_FILE ((uint64_t)32 << 20)

/* ---- hashes: sha256 and sha1 (FIPS 180-4) over one padding scheme ---- */

typedef struct hasher {
    uint32_t h[8];
    uint8_t block[64];
    size_t fill;
    uint64_t bytes;
    int n_words;                                     /* 8: sha256, 5: sha1 */
    void (*compress)(uint32_t *h, const uint8_t *p); /* one 64-byte block */
} hasher;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void sha256_block(uint32_t *hs, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = be32(p + 4 * i);
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = hs[0], b = hs[1], c = hs[2], d = hs[3], e = hs[4], f = hs[5], g = hs[6], h = hs[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    hs[0] += a, hs[1] += b, hs[2] += c, hs[3] += d;
    hs[4] += e, hs[5] += f, hs[6] += g, hs[7] += h;
}

static void sha1_block(uint32_t *hs, const uint8_t *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++) w[i] = be32(p + 4 * i);
    for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = hs[0], b = hs[1], c = hs[2], d = hs[3], e = hs[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    hs[0] += a, hs[1] += b, hs[2] += c, hs[3] += d, hs[4] += e;
}

static void hash_init(hasher *s, bool sha1) {
    static const uint32_t H256[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    static const uint32_t H1[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    memset(s, 0, sizeof *s);
    s->n_words = sha1 ? 5 : 8;
    s->compress = sha1 ? sha1_block : sha256_block;
    memcpy(s->h, sha1 ? H1 : H256, (size_t)s->n_words * sizeof(uint32_t));
}

static void hash_update(hasher *s, const uint8_t *p, size_t n) {
    s->bytes += n;
    while (n) {
        size_t k = 64 - s->fill < n ? 64 - s->fill : n;
        memcpy(s->block + s->fill, p, k);
        s->fill += k, p += k, n -= k;
        if (s->fill == 64) {
            s->compress(s->h, s->block);
            s->fill = 0;
        }
    }
}

/* Pads (0x80, zeros, the bit length big-endian) and writes the digest as lowercase hex. */
static void hash_hex(hasher *s, char *out) {
    uint64_t bits = s->bytes * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    hash_update(s, &pad, 1);
    while (s->fill != 56) hash_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    hash_update(s, len, 8);
    for (int i = 0; i < s->n_words; i++) snprintf(out + 8 * i, 9, "%08x", s->h[i]);
}

/* The sha256 of a file, or (git) the git blob id: sha1 of "blob <size>\0" and the content. */
static lm_status hash_file(const char *path, bool git, char out[65], lm_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return lm_fail(err, LM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    hasher s;
    hash_init(&s, git);
    if (git) {
        struct stat sb;
        char hdr[32];
        int k = snprintf(hdr, sizeof hdr, "blob %llu", fstat(fileno(f), &sb) == 0 ? (unsigned long long)sb.st_size : 0ull);
        hash_update(&s, (const uint8_t *)hdr, (size_t)k + 1); /* with its NUL */
    }
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) hash_update(&s, buf, n);
    bool bad = ferror(f);
    fclose(f);
    if (bad) return lm_fail(err, LM_ERR_IO, "%s: read error", path);
    hash_hex(&s, out);
    return LM_OK;
}

/* ---- small helpers ---- */

static bool is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) return false;
    return true;
}

static lm_status mkdirs(const char *path, lm_error *err) {
    char tmp[4096];
    if (strlen(path) >= sizeof tmp) return lm_fail(err, LM_ERR_IO, "%s: path too long", path);
    strcpy(tmp, path);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return lm_fail(err, LM_ERR_IO, "%s: cannot create folder: %s", tmp, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return LM_OK;
}

/* A repo-relative file name from the API: valid UTF-8 without control characters (C0, DEL, C1:
 * names are printed to terminals), no backslash, no absolute path, no empty, "." or ".."
 * component. */
static bool rfilename_ok(const char *f) {
    size_t n = strlen(f);
    if (n == 0 || n > 1024 || f[0] == '/' || f[n - 1] == '/') return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)f[i];
        if (c < 0x20 || c == '\\' || c == 0x7f) return false;
        uint32_t cp;
        int l = lm_utf8_decode(f + i, n - i, &cp);
        if (c >= 0x80 && (l <= 1 || (cp >= 0x80 && cp <= 0x9f))) return false;
        i += (size_t)l;
    }
    const char *p = f;
    while (*p) {
        const char *q = strchr(p, '/');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) return false;
        p += len;
        if (*p) p++;
    }
    return true;
}

/* An etag used as a blob file name: [A-Za-z0-9._-], not starting with '.', 1..128 chars. */
static bool etag_ok(const char *e) {
    size_t n = strlen(e);
    if (n == 0 || n > 128 || e[0] == '.') return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)e[i]) && e[i] != '-' && e[i] != '_' && e[i] != '.') return false;
    return true;
}

static bool ends_with_ci(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcasecmp(s + a - b, suf) == 0;
}

static bool contains_ci(const char *s, const char *sub) {
    size_t n = strlen(sub);
    for (; *s; s++)
        if (strncasecmp(s, sub, n) == 0) return true;
    return n == 0;
}

bool hub_split_quant(const char *ref, char *base, size_t base_cap, char *quant, size_t quant_cap) {
    const char *slash = strchr(ref, '/');
    const char *colon = slash ? strrchr(slash, ':') : NULL;
    size_t bn = colon ? (size_t)(colon - ref) : strlen(ref);
    if (bn >= base_cap) return false;
    memcpy(base, ref, bn);
    base[bn] = 0;
    quant[0] = 0;
    if (colon) {
        const char *q = colon + 1;
        size_t qn = strlen(q);
        if (qn == 0 || qn >= quant_cap || qn > 32) return false;
        for (size_t i = 0; i < qn; i++)
            if (!isalnum((unsigned char)q[i]) && q[i] != '_' && q[i] != '-' && q[i] != '.') return false;
        memcpy(quant, q, qn + 1);
    }
    char o[128], nm[128], rv[256];
    return hub_parse_id(base, o, sizeof o, nm, sizeof nm, rv, sizeof rv);
}

/* ---- choosing files ---- */

static bool wanted_name(const char *f) {
    static const char *const NAMES[] = {"config.json", "generation_config.json", "tokenizer.json",
                                        "tokenizer_config.json", "special_tokens_map.json",
                                        "chat_template.jinja", "model.safetensors.index.json"};
    for (size_t k = 0; k < sizeof NAMES / sizeof NAMES[0]; k++)
        if (strcmp(f, NAMES[k]) == 0) return true;
    return ends_with_ci(f, ".safetensors");
}

static bool included(const lm_hub_params *o, const char *f) {
    if (!o->n_includes) return true;
    for (size_t k = 0; k < o->n_includes; k++)
        if (fnmatch(o->includes[k], f, 0) == 0) return true;
    return false;
}

/* Marks the files to fetch in keep[]. A repo with .gguf files yields one .gguf: the first (in
 * name order) that passes the includes and contains quant (default Q4_K_M unless includes name
 * one). gguf_index gets its index (-1 when not a GGUF repo). */
static lm_status choose(const lm_hub_params *o, const char *id, const char *quant, char **files, size_t n,
                        bool *keep, long *gguf_index, lm_error *err) {
    bool gguf = false;
    for (size_t i = 0; i < n; i++) gguf |= ends_with_ci(files[i], ".gguf");
    *gguf_index = -1;
    size_t count = 0;
    if (gguf) {
        const char *q = quant[0] ? quant : (o->n_includes ? "" : "Q4_K_M");
        for (size_t i = 0; i < n; i++) {
            keep[i] = false;
            if (!ends_with_ci(files[i], ".gguf") || !included(o, files[i]) || !contains_ci(files[i], q)) continue;
            if (*gguf_index < 0 || strcmp(files[i], files[*gguf_index]) < 0) *gguf_index = (long)i;
        }
        if (*gguf_index < 0) {
            lm_buf b = {0};
            for (size_t i = 0; i < n; i++)
                if (ends_with_ci(files[i], ".gguf")) lm_buf_printf(&b, "%s%s", b.len ? ", " : "", files[i]);
            lm_status st = lm_fail(err, LM_ERR_IO, "%s: no .gguf file matches '%s'%s (available: %s); pick one with :QUANT or --include",
                                   id, q, o->n_includes ? " and the --include globs" : "", b.data ? b.data : "none");
            lm_buf_free(&b);
            return st;
        }
        keep[*gguf_index] = true;
        return LM_OK;
    }
    for (size_t i = 0; i < n; i++) {
        keep[i] = wanted_name(files[i]) && included(o, files[i]);
        count += keep[i];
    }
    if (!count) return lm_fail(err, LM_ERR_UNSUPPORTED, "%s: the repository has no model files locallm can use (config.json, *.safetensors, *.gguf)%s", id, o->n_includes ? " matching --include" : "");
    return LM_OK;
}

/* ---- HTTP ---- */

typedef struct repo_ctx repo_ctx;
static int report(repo_ctx *r, lm_hub_event ev, const char *file, uint64_t done, uint64_t total);

typedef struct xfer {
    lm_buf body;            /* for API calls */
    FILE *f;                /* for downloads */
    bool write_failed;
    int write_errno;
    char etag[160], linked_etag[160];
    uint64_t linked_size, content_length;
    repo_ctx *r;            /* progress goes to r's callback */
    const char *file;
    uint64_t base, total, done;
    uint64_t limit;         /* a download may not pass this size (0: no limit) */
    bool over_limit, cancelled;
    long status;            /* the status of the current response */
} xfer;

static size_t on_body(char *p, size_t sz, size_t nm, void *u) {
    xfer *x = u;
    size_t n = sz * nm;
    if (x->f) {
        if (x->status != 200 && x->status != 206) return n; /* an error body: not file data */
        if (x->status == 200 && x->base && !x->done) {
            /* the server ignored the Range: the body is the whole file from byte 0 */
            if (fflush(x->f) != 0 || ftruncate(fileno(x->f), 0) != 0) {
                x->write_failed = true;
                x->write_errno = errno;
                return 0;
            }
            x->base = 0;
        }
        if (x->limit && (x->base + x->done > x->limit || n > x->limit - x->base - x->done)) {
            x->over_limit = true; /* never more on disk than announced */
            return 0;
        }
        if (fwrite(p, 1, n, x->f) != n) {
            x->write_failed = true;
            x->write_errno = errno;
            return 0;
        }
        x->done += n;
        if (report(x->r, LM_HUB_FILE_PROGRESS, x->file, x->base + x->done, x->total)) {
            x->cancelled = true;
            return 0;
        }
        return n;
    }
    if (x->body.len + n > (64u << 20)) return 0;
    return lm_buf_append(&x->body, p, n) ? n : 0;
}

static void header_value(const char *p, size_t n, char *out, size_t cap) {
    while (n && (*p == ' ' || *p == '\t')) p++, n--;
    while (n && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' ')) n--;
    if (n >= 2 && p[0] == 'W' && p[1] == '/') p += 2, n -= 2;
    if (n >= 2 && p[0] == '"' && p[n - 1] == '"') p++, n -= 2;
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *u) {
    xfer *x = u;
    size_t n = sz * nm;
    char v[160];
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        const char *sp = memchr(p, ' ', n);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->etag[0] = 0; /* ETag of the final response */
        x->content_length = 0;
    } else if (n > 14 && strncasecmp(p, "X-Linked-Etag:", 14) == 0) {
        header_value(p + 14, n - 14, x->linked_etag, sizeof x->linked_etag);
    } else if (n > 5 && strncasecmp(p, "ETag:", 5) == 0) {
        header_value(p + 5, n - 5, x->etag, sizeof x->etag);
    } else if (n > 14 && strncasecmp(p, "X-Linked-Size:", 14) == 0) {
        header_value(p + 14, n - 14, v, sizeof v);
        x->linked_size = strtoull(v, NULL, 10);
    } else if (n > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
        header_value(p + 15, n - 15, v, sizeof v);
        x->content_length = strtoull(v, NULL, 10);
    }
    return n;
}

static int on_progress(void *u, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    return ((xfer *)u)->cancelled;
}

enum req_kind { REQ_API, REQ_HEAD, REQ_GET };

/* Runs one request. range_from > 0 adds a Range header. Metadata (REQ_API, REQ_HEAD) gets
 * etag_timeout_s to connect, a HEAD as much to answer; a transfer fails after download_timeout_s
 * without a byte. Only http and https are spoken, redirects included. */
static CURLcode perform(const lm_hub_params *o, const char *url, xfer *x, enum req_kind kind, uint64_t range_from,
                        long *status, char *errbuf) {
    lm_curl_init();
    CURL *c = curl_easy_init();
    if (!c) return CURLE_FAILED_INIT;
    struct curl_slist *hdrs = NULL;
    char auth[4200];
    if (o->token && o->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    hdrs = curl_slist_append(hdrs, "User-Agent: locallm");
    char range[64];
    if (range_from) {
        snprintf(range, sizeof range, "%llu-", (unsigned long long)range_from);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    long etag_s = o->etag_timeout_s > 0 ? o->etag_timeout_s : 10;
    long dl_s = o->download_timeout_s > 0 ? o->download_timeout_s : 60;
    errbuf[0] = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the _STR forms; the bit masks are deprecated */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, etag_s);
    if (kind == REQ_HEAD) curl_easy_setopt(c, CURLOPT_TIMEOUT, etag_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, dl_s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    if (kind == REQ_HEAD) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(c);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

/* The commit of a revision already in the cache ("" when none). */
static void cached_commit(const lm_hub_params *o, const char *org, const char *name, const char *rev, char *out, size_t cap) {
    char path[4096], *text = NULL;
    size_t len = 0;
    lm_error e = {0};
    out[0] = 0;
    snprintf(path, sizeof path, "%s/models--%s--%s/refs/%s", o->cache_dir, org, name, rev);
    if (lm_read_text(path, &text, &len, &e) == LM_OK) {
        if (is_hex(text, 40)) snprintf(out, cap, "%s", text);
        lm_free(text);
    }
}

static lm_status http_error(const lm_hub_params *o, const char *org, const char *name, const char *rev, const char *url,
                            CURLcode rc, long status, const char *errbuf, lm_error *err) {
    const char *ep = o->endpoint;
    if (rc == CURLE_OK || rc == CURLE_HTTP_RETURNED_ERROR) {
        if (status == 404)
            return lm_fail(err, LM_ERR_NETWORK, "repository %s/%s not found (or private) at %s (revision '%s')", org, name, ep, rev);
        if (status == 401 || status == 403)
            return lm_fail(err, LM_ERR_NETWORK, "%s/%s: access denied (HTTP %ld): the repository is gated or private; set HF_TOKEN or run `huggingface-cli login`%s",
                           org, name, status, o->token && o->token[0] ? " (the token sent was refused)" : "");
        return lm_fail(err, LM_ERR_NETWORK, "%s: HTTP %ld", url, status);
    }
    if (rc == CURLE_UNSUPPORTED_PROTOCOL)
        return lm_fail(err, LM_ERR_NETWORK, "%s: refused a redirect to a URL that is not http or https (%s)", url,
                       errbuf[0] ? errbuf : curl_easy_strerror(rc));
    char commit[64];
    cached_commit(o, org, name, rev, commit, sizeof commit);
    if (commit[0])
        return lm_fail(err, LM_ERR_NETWORK, "cannot reach %s (%s); the cache already has %s/%s@%s (commit %.12s): use it with HF_HUB_OFFLINE=1",
                       ep, errbuf[0] ? errbuf : curl_easy_strerror(rc), org, name, rev, commit);
    return lm_fail(err, LM_ERR_NETWORK, "cannot reach %s (%s)", ep, errbuf[0] ? errbuf : curl_easy_strerror(rc));
}

/* URL-escapes a path, keeping '/'. */
static bool put_escaped(lm_buf *b, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~/", c)) lm_buf_putc(b, (char)c);
        else lm_buf_printf(b, "%%%02X", c);
    }
    return !b->oom;
}

/* ---- one file ---- */

struct repo_ctx {
    const lm_hub_params *o;
    const char *org, *name, *rev, *commit;
    char dir[2048];      /* cache/models--org--name */
    char locks[2048];    /* cache/.locks/models--org--name */
    size_t index, n_files;
};

/* Tells the caller's progress callback; non-zero means cancel. */
static int report(repo_ctx *r, lm_hub_event ev, const char *file, uint64_t done, uint64_t total) {
    if (!r || !r->o->progress) return 0;
    lm_hub_progress p = {.event = ev, .file = file, .done = done, .total = total, .index = r->index, .n_files = r->n_files};
    return r->o->progress(&p, r->o->progress_user);
}

static lm_status link_snapshot(repo_ctx *r, const char *file, const char *etag, lm_error *err) {
    char path[4096], target[4096];
    snprintf(path, sizeof path, "%s/snapshots/%s/%s", r->dir, r->commit, file);
    char *slash = strrchr(path, '/');
    *slash = 0;
    lm_status st = mkdirs(path, err);
    if (st) return st;
    *slash = '/';
    size_t off = 0;
    off += (size_t)snprintf(target, sizeof target, "../../");
    for (const char *p = file; (p = strchr(p, '/')) != NULL; p++) off += (size_t)snprintf(target + off, sizeof target - off, "../");
    snprintf(target + off, sizeof target - off, "blobs/%s", etag);
    char cur[4096];
    ssize_t n = readlink(path, cur, sizeof cur - 1);
    if (n >= 0) {
        cur[n] = 0;
        if (strcmp(cur, target) == 0) return LM_OK;
    }
    if (unlink(path) != 0 && errno != ENOENT) return lm_fail(err, LM_ERR_IO, "%s: cannot replace: %s", path, strerror(errno));
    if (symlink(target, path) != 0) return lm_fail(err, LM_ERR_IO, "%s: cannot create symlink: %s", path, strerror(errno));
    return LM_OK;
}

/* Takes .locks/models--org--name/<etag>.lock as huggingface_hub does (its filelock package:
 * flock(LOCK_EX) on that file, which stays behind), polling while another process holds it and
 * telling the callback about once a second. *fd gets the lock; close() releases it. A file
 * system without flock gives -1: the download goes ahead unlocked. */
static lm_status lock_blob(repo_ctx *r, const char *file, const char *etag, uint64_t total, int *fd, lm_error *err) {
    *fd = -1;
    lm_status st = mkdirs(r->locks, err);
    if (st) return st;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.lock", r->locks, etag);
    int lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) return lm_fail(err, LM_ERR_IO, "%s: cannot open the lock file: %s", path, strerror(errno));
    double last = -1e9;
    while (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK) {
            close(lfd);
            return LM_OK;
        }
        double now = lm_time_ms();
        if (now - last >= 1000) {
            last = now;
            if (report(r, LM_HUB_FILE_WAITING, file, 0, total)) {
                close(lfd);
                return lm_fail(err, LM_ERR_CANCELLED, "pull cancelled while %s waited for %s", file, path);
            }
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    *fd = lfd;
    return LM_OK;
}

/* Downloads blob into part (resuming what part holds) and renames it once complete and verified. */
static lm_status download_blob(repo_ctx *r, const char *file, const char *url, const char *etag, uint64_t total,
                               uint64_t limit, const char *blob, const char *part, lm_error *err) {
    const lm_hub_params *o = r->o;
    struct stat sb;
    uint64_t have = stat(part, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    if ((total && have > total) || (limit && have > limit)) have = 0;
    FILE *f = fopen(part, have ? "ab" : "wb");
    if (!f) return lm_fail(err, LM_ERR_IO, "%s: cannot open for writing: %s", part, strerror(errno));
    xfer x = {.f = f, .r = r, .file = file, .base = have, .total = total, .limit = limit};
    char errbuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURLcode rc = CURLE_OK;
    lm_status st = LM_OK;
    if (report(r, LM_HUB_FILE_START, file, have, total)) {
        fclose(f);
        return lm_fail(err, LM_ERR_CANCELLED, "pull cancelled");
    }
    if (!(total && have == total)) rc = perform(o, url, &x, REQ_GET, have, &status, errbuf);
    if (fclose(f) != 0 && !x.write_failed) x.write_failed = true, x.write_errno = errno;
    if (x.write_failed)
        return lm_fail(err, LM_ERR_IO, "%s: write failed: %s", part, strerror(x.write_errno));
    if (x.cancelled)
        return lm_fail(err, LM_ERR_CANCELLED, "download of %s cancelled (partial file kept: %s)", file, part);
    if (x.over_limit) {
        unlink(part);
        if (total)
            return lm_fail(err, LM_ERR_FORMAT, "%s: the server sent more than the %llu bytes it announced; the partial file was deleted",
                           file, (unsigned long long)total);
        return lm_fail(err, LM_ERR_FORMAT, "%s: a file kept in git (not LFS) is larger than %llu bytes; refused, the partial file was deleted",
                       file, (unsigned long long)limit);
    }
    if (rc != CURLE_OK || (status != 200 && status != 206 && status != 416 && !(total && have == total))) {
        if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_OPERATION_TIMEDOUT)
            return lm_fail(err, LM_ERR_NETWORK, "download of %s from %s was interrupted (%s); run the pull again to resume from %s",
                           file, o->endpoint, errbuf[0] ? errbuf : curl_easy_strerror(rc), part);
        return http_error(o, r->org, r->name, r->rev, url, rc, status, errbuf, err);
    }
    if (stat(part, &sb) != 0 || (total && (uint64_t)sb.st_size != total))
        return lm_fail(err, LM_ERR_NETWORK, "download of %s is incomplete (%llu of %llu bytes); run the pull again to resume",
                       file, (unsigned long long)(stat(part, &sb) == 0 ? sb.st_size : 0), (unsigned long long)total);
    bool git = is_hex(etag, 40);
    if (git || is_hex(etag, 64)) {
        char got[65];
        if ((st = hash_file(part, git, got, err))) return st;
        if (strcmp(got, etag) != 0) {
            unlink(part);
            return lm_fail(err, LM_ERR_FORMAT, "%s: %s mismatch (expected %s, got %s); the partial file was deleted",
                           file, git ? "git sha1" : "sha256", etag, got);
        }
    }
    if (rename(part, blob) != 0) return lm_fail(err, LM_ERR_IO, "%s: cannot rename to %s: %s", part, blob, strerror(errno));
    if (report(r, LM_HUB_FILE_DONE, file, (uint64_t)sb.st_size, (uint64_t)sb.st_size))
        return lm_fail(err, LM_ERR_CANCELLED, "pull cancelled");
    return LM_OK;
}

static lm_status fetch_file(repo_ctx *r, const char *file, lm_error *err) {
    const lm_hub_params *o = r->o;
    /* A snapshot is named by its commit, so a file it already holds is that commit's file:
     * complete (blobs are renamed into place only once whole and verified). No request. */
    char snap[4200];
    struct stat sb;
    snprintf(snap, sizeof snap, "%s/snapshots/%s/%s", r->dir, r->commit, file);
    if (stat(snap, &sb) == 0 && S_ISREG(sb.st_mode))
        return report(r, LM_HUB_FILE_CACHED, file, (uint64_t)sb.st_size, (uint64_t)sb.st_size)
                   ? lm_fail(err, LM_ERR_CANCELLED, "pull cancelled")
                   : LM_OK;
    lm_buf url = {0};
    lm_buf_printf(&url, "%s/%s/%s/resolve/%s/", o->endpoint, r->org, r->name, r->commit);
    if (!put_escaped(&url, file)) {
        lm_buf_free(&url);
        return lm_fail_nomem(err, "download URL");
    }
    lm_status st = LM_OK;
    char errbuf[CURL_ERROR_SIZE];
    long status = 0;
    int lock = -1;
    xfer h = {0};
    CURLcode rc = perform(o, url.data, &h, REQ_HEAD, 0, &status, errbuf);
    if (rc != CURLE_OK || status >= 400) {
        if (rc == CURLE_OPERATION_TIMEDOUT)
            st = lm_fail(err, LM_ERR_NETWORK, "%s: no answer within %d s (%s)", url.data,
                         o->etag_timeout_s > 0 ? o->etag_timeout_s : 10, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        else
            st = http_error(o, r->org, r->name, r->rev, url.data, rc, status, errbuf, err);
        goto done;
    }
    char etag[160];
    snprintf(etag, sizeof etag, "%s", h.linked_etag[0] ? h.linked_etag : h.etag);
    if (!etag_ok(etag)) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: the server sent no usable ETag for %s ('%s')", url.data, file, etag);
        goto done;
    }
    uint64_t total = h.linked_size ? h.linked_size : h.content_length;
    bool git = is_hex(etag, 40);
    if (git && total > HUB_MAX_GIT_FILE) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: announced as %llu bytes, but a file kept in git (not LFS, etag %.12s) may have at most %llu; refused",
                     file, (unsigned long long)total, etag, (unsigned long long)HUB_MAX_GIT_FILE);
        goto done;
    }
    char blob[4096], part[4200];
    snprintf(blob, sizeof blob, "%s/blobs/%s", r->dir, etag);
    snprintf(part, sizeof part, "%s.incomplete", blob);
    if (!lm_path_exists(blob)) {
        if ((st = lock_blob(r, file, etag, total, &lock, err))) goto done;
        /* another process may have finished it while we waited */
        if (!lm_path_exists(blob) &&
            (st = download_blob(r, file, url.data, etag, total, total ? total : git ? HUB_MAX_GIT_FILE : 0, blob, part, err)))
            goto done;
    } else if (report(r, LM_HUB_FILE_CACHED, file, total, total)) {
        st = lm_fail(err, LM_ERR_CANCELLED, "pull cancelled");
        goto done;
    }
    st = link_snapshot(r, file, etag, err);
done:
    if (lock >= 0) close(lock);
    lm_buf_free(&h.body);
    lm_buf_free(&url);
    return st;
}

/* ---- offline resolution ---- */

/* Adds the files under root/rel (names relative to root) to names. Real folders are descended, at
 * most 16 deep; a symlink is followed only when it leads to a file (huggingface_hub links files,
 * never folders), so a snapshot holding `ln -s . a` cannot make the walk recurse. At most
 * HUB_MAX_FILES names. */
static void collect(const char *root, const char *rel, int depth, char ***names, size_t *n, size_t *cap) {
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && *n < HUB_MAX_FILES) {
        if (e->d_name[0] == '.') continue;
        char sub[4096], full[8200];
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat sb;
        if (lstat(full, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            if (depth < 16 && strlen(sub) < 1024) collect(root, sub, depth + 1, names, n, cap);
            continue;
        }
        if (S_ISLNK(sb.st_mode) && (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode))) continue;
        if (!S_ISREG(sb.st_mode)) continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            char **nn = lm_realloc(*names, nc * sizeof *nn);
            if (!nn) break;
            *names = nn, *cap = nc;
        }
        (*names)[*n] = lm_strdup(sub);
        if ((*names)[*n]) (*n)++;
    }
    closedir(d);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) lm_free(names[i]);
    lm_free(names);
}

static lm_status finish_out(const char *snap, char **files, long gi, char *out, size_t cap, lm_error *err) {
    size_t ls = strlen(snap), lf = gi >= 0 ? strlen(files[gi]) : 0;
    size_t n = ls + (gi >= 0 ? 1 + lf : 0);
    if (n >= cap) return lm_fail(err, LM_ERR_TOO_SMALL, "path of %zu bytes does not fit", n);
    memcpy(out, snap, ls);
    if (gi >= 0) {
        out[ls] = '/';
        memcpy(out + ls + 1, files[gi], lf);
    }
    out[n] = 0;
    return LM_OK;
}

static lm_status pull_offline(const lm_hub_params *o, const char *base, const char *quant, char *out, size_t cap, lm_error *err) {
    char snap[4096];
    lm_error e = {0};
    if (hub_cache_snapshot(base, o->cache_dir, snap, sizeof snap, &e) != LM_OK)
        return lm_fail(err, LM_ERR_IO, "offline mode (HF_HUB_OFFLINE=1): %s", e.msg);
    char **names = NULL;
    size_t n = 0, ncap = 0;
    collect(snap, "", 0, &names, &n, &ncap);
    bool gguf = false;
    for (size_t i = 0; i < n; i++) gguf |= ends_with_ci(names[i], ".gguf");
    lm_status st = LM_OK;
    long gi = -1;
    if (gguf) {
        bool *keep = lm_calloc(n, sizeof *keep);
        if (!keep) st = lm_fail_nomem(err, "file list");
        else st = choose(o, base, quant, names, n, keep, &gi, err);
        lm_free(keep);
        if (st) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
            st = lm_fail(err, st, "offline mode (HF_HUB_OFFLINE=1): %s", msg);
        }
    }
    if (!st) st = finish_out(snap, names, gi, out, cap, err);
    free_names(names, n);
    return st;
}

/* ---- the pull ---- */

lm_hub_params lm_hub_default_params(void) {
    lm_hub_params p;
    memset(&p, 0, sizeof p);
    p.etag_timeout_s = 10;
    p.download_timeout_s = 60;
    return p;
}

lm_status lm_hub_pull(const char *repo_id, const lm_hub_params *opts, char *out, size_t cap, lm_error *err) {
    if (!opts || !repo_id || !out || !opts->cache_dir || !opts->cache_dir[0])
        return lm_fail(err, LM_ERR_MISUSE, "lm_hub_pull: ref, params, params->cache_dir and out must not be NULL");
    lm_hub_params o = *opts;
    if (!o.endpoint || !o.endpoint[0]) o.endpoint = "https://huggingface.co";
    char expanded[512];
    lm_status xst = hub_expand_ref(repo_id, expanded, sizeof expanded, err);
    if (xst) return xst;
    repo_id = expanded;
    char base[512], quant[64], org[128], name[128], rev[256];
    if (!hub_split_quant(repo_id, base, sizeof base, quant, sizeof quant) ||
        !hub_parse_id(base, org, sizeof org, name, sizeof name, rev, sizeof rev))
        return lm_fail(err, LM_ERR_MISUSE, "'%s' is not a valid Hugging Face model id (org/name[@revision][:QUANT]: letters, digits, '.', '_', '-'; no '..')", repo_id);
    if (o.offline) return pull_offline(&o, base, quant, out, cap, err);
    if (strncmp(o.endpoint, "http://", 7) != 0 && strncmp(o.endpoint, "https://", 8) != 0)
        return lm_fail(err, LM_ERR_MISUSE, "endpoint '%s' must start with http:// or https://", o.endpoint);
    size_t el = strlen(o.endpoint);
    char ep[1024];
    if (el >= sizeof ep) return lm_fail(err, LM_ERR_MISUSE, "endpoint too long");
    memcpy(ep, o.endpoint, el + 1);
    while (el > 8 && ep[el - 1] == '/') ep[--el] = 0;
    o.endpoint = ep;

    lm_buf url = {0};
    lm_buf_printf(&url, "%s/api/models/%s/%s/revision/", ep, org, name);
    put_escaped(&url, rev);
    if (url.oom) return lm_fail_nomem(err, "API URL");
    xfer x = {0};
    char errbuf[CURL_ERROR_SIZE];
    long status = 0;
    CURLcode rc = perform(&o, url.data, &x, REQ_API, 0, &status, errbuf);
    lm_status st = LM_OK;
    cJSON *j = NULL;
    char **files = NULL;
    bool *keep = NULL;
    size_t n = 0;
    if (rc != CURLE_OK || status != 200) {
        st = http_error(&o, org, name, rev, url.data, rc, status, errbuf, err);
        goto done;
    }
    st = lm_json_parse(x.body.data ? x.body.data : "", x.body.len, url.data, &j, err);
    if (st) goto done;
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(j, "sha");
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(j, "siblings");
    if (!cJSON_IsString(sha) || !is_hex(sha->valuestring, 40) || !cJSON_IsArray(sib)) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: expected an object with \"sha\" (40 hex digits) and \"siblings\" (an array)", url.data);
        goto done;
    }
    int ns = cJSON_GetArraySize(sib);
    if (ns > HUB_MAX_FILES) {
        st = lm_fail(err, LM_ERR_FORMAT, "%s: the repository lists %d files, more than the %d a model repository may have; refusing it",
                     url.data, ns, HUB_MAX_FILES);
        goto done;
    }
    files = lm_calloc((size_t)ns + 1, sizeof *files);
    keep = lm_calloc((size_t)ns + 1, sizeof *keep);
    if (!files || !keep) {
        st = lm_fail_nomem(err, "file list");
        goto done;
    }
    /* walked as a linked list: cJSON_GetArrayItem(i) in a loop is quadratic in the file count */
    const cJSON *item;
    cJSON_ArrayForEach(item, sib) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(item, "rfilename");
        if (!cJSON_IsString(f)) {
            st = lm_fail(err, LM_ERR_FORMAT, "%s: siblings[%zu].rfilename: expected a string", url.data, n);
            goto done;
        }
        if (!rfilename_ok(f->valuestring)) {
            st = lm_fail(err, LM_ERR_FORMAT, "%s: siblings[%zu].rfilename '%s' is not a safe relative path; refusing the repository", url.data, n, f->valuestring);
            goto done;
        }
        if (!(files[n] = lm_strdup(f->valuestring))) {
            st = lm_fail_nomem(err, "file list");
            goto done;
        }
        n++;
    }
    long gi = -1;
    st = choose(&o, base, quant, files, n, keep, &gi, err);
    if (st) goto done;
    repo_ctx r = {.o = &o, .org = org, .name = name, .rev = rev, .commit = sha->valuestring};
    snprintf(r.dir, sizeof r.dir, "%s/models--%s--%s", o.cache_dir, org, name);
    snprintf(r.locks, sizeof r.locks, "%s/.locks/models--%s--%s", o.cache_dir, org, name);
    for (size_t i = 0; i < n; i++) r.n_files += keep[i];
    char path[4096];
    snprintf(path, sizeof path, "%s/blobs", r.dir);
    if ((st = mkdirs(path, err))) goto done;
    snprintf(path, sizeof path, "%s/snapshots/%s", r.dir, r.commit);
    if ((st = mkdirs(path, err))) goto done;
    for (size_t i = 0; i < n; i++) {
        if (!keep[i]) continue;
        if ((st = fetch_file(&r, files[i], err))) goto done;
        r.index++;
    }
    if (!is_hex(rev, 40)) {
        char refs[4096];
        snprintf(refs, sizeof refs, "%s/refs/%s", r.dir, rev);
        char *slash = strrchr(refs, '/');
        *slash = 0;
        if ((st = mkdirs(refs, err))) goto done;
        *slash = '/';
        FILE *f = fopen(refs, "wb");
        bool ok = f && fputs(r.commit, f) >= 0;
        if (f && fclose(f) != 0) ok = false;
        if (!ok) {
            st = lm_fail(err, LM_ERR_IO, "%s: cannot write: %s", refs, strerror(errno));
            goto done;
        }
    }
    st = finish_out(path, files, gi, out, cap, err);
done:
    if (files) free_names(files, n);
    lm_free(keep);
    cJSON_Delete(j);
    lm_buf_free(&x.body);
    lm_buf_free(&url);
    return st;
}
