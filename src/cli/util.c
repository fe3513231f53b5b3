/* cli/util.c: the bottom layer of the locallm tool's helpers; it calls no other file of cli/.
 * Owns: error/usage messages, strict number and list parsing, the legacy option scanner, the
 * Hugging Face folders and environment switches, the memory check and --force, reading files and
 * streams, JSON string escaping and the clock.
 * Does not own: option tables (options.c), loading a model (load.c) or any subcommand's
 * behaviour (one file per subcommand). */
#include "cli/cli.h"
#include "hub/hub.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("locallm: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_EXIT_ERROR;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("locallm: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "Try 'locallm %s --help' for usage.\n", cmd);
    else
        fputs("Try 'locallm --help' for usage.\n", stderr);
    return CLI_EXIT_USAGE;
}

bool cli_parse_i32(const char *cmd, const char *opt, const char *s, int32_t min, int32_t max,
                   int32_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    /* strtoll skips leading blanks; a number here starts with a digit or a sign. */
    bool ok = *s && (*s == '-' || *s == '+' || (*s >= '0' && *s <= '9')) && end && *end == '\0' &&
              errno == 0;
    if (!ok) {
        cli_usage_error(cmd, "%s: '%s' is not an integer", opt, s);
        return false;
    }
    if (v < min || v > max) {
        cli_usage_error(cmd, "%s: %lld is out of range (expected %ld to %ld)", opt, v, (long)min,
                        (long)max);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

bool cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    /* strtoull accepts "-1" and wraps it; only plain digits are a valid seed. */
    if (!(*s >= '0' && *s <= '9')) {
        cli_usage_error(cmd, "%s: '%s' is not a non-negative integer", opt, s);
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0) {
        cli_usage_error(cmd, "%s: '%s' is not a non-negative integer that fits 64 bits", opt, s);
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool cli_parse_float(const char *cmd, const char *opt, const char *s, float min, float max,
                     float *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    bool ok = *s && (*s == '-' || *s == '+' || *s == '.' || (*s >= '0' && *s <= '9')) && end &&
              *end == '\0' && errno == 0 && isfinite(v);
    if (!ok) {
        cli_usage_error(cmd, "%s: '%s' is not a number", opt, s);
        return false;
    }
    if (v < min || v > max) {
        cli_usage_error(cmd, "%s: %g is out of range (expected %g to %g)", opt, v, (double)min,
                        (double)max);
        return false;
    }
    *out = (float)v;
    return true;
}

bool cli_parse_i32_list(const char *cmd, const char *opt, const char *s, int32_t min,
                        int32_t max, int32_t **vals, size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        if (*p == ',') cap++;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) {
        cli_error("out of memory parsing %s", opt);
        return false;
    }
    size_t count = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        /* Blanks around items are fine ("1, 2"); empty items are not. */
        while (len && (*p == ' ' || *p == '\t')) p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        char item[32];
        if (len == 0 || len >= sizeof item) {
            cli_usage_error(cmd, "%s: '%s' is not a comma-separated list of integers", opt, s);
            free(v);
            return false;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (!cli_parse_i32(cmd, opt, item, min, max, &v[count])) {
            free(v);
            return false;
        }
        count++;
        if (!comma) break;
        p = comma + 1;
    }
    *vals = v;
    *n = count;
    return true;
}

bool cli_parse_ids(const char *cmd, const char *opt, const char *s, lm_token **ids, size_t *n) {
    return cli_parse_i32_list(cmd, opt, s, 0, INT32_MAX, ids, n);
}

bool cli_opt(int argc, char **argv, int *i, const char *name, const char *alt, const char **val,
             bool *bad, const char *cmd) {
    const char *a = argv[*i];
    const char *names[2] = {name, alt};
    for (int k = 0; k < 2; k++) {
        const char *nm = names[k];
        if (!nm) continue;
        size_t len = strlen(nm);
        if (strncmp(a, nm, len) != 0) continue;
        if (a[len] == '\0') {
            if (*i + 1 >= argc) {
                cli_usage_error(cmd, "option %s needs a value", nm);
                *bad = true;
                return true;
            }
            *val = argv[++*i];
            return true;
        }
        /* "--name=value" only for long options, so "-n5" is not mistaken for "-n=5". */
        if (a[len] == '=' && nm[0] == '-' && nm[1] == '-') {
            *val = a + len + 1;
            return true;
        }
    }
    return false;
}

bool cli_is_help(const char *arg) {
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

bool cli_env_true(const char *name) {
    const char *v = getenv(name);
    if (!v) return false;
    return strcmp(v, "1") == 0 || strcasecmp(v, "ON") == 0 || strcasecmp(v, "YES") == 0 || strcasecmp(v, "TRUE") == 0;
}

/* huggingface_hub's HF_HOME: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
 * ~/.cache/huggingface. Into buf; false when none is known. */
static bool hf_home(char *buf, size_t cap) {
    const char *home = getenv("HF_HOME");
    if (home && *home) return (size_t)snprintf(buf, cap, "%s", home) < cap;
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg) return (size_t)snprintf(buf, cap, "%s/huggingface", xdg) < cap;
    const char *h = getenv("HOME");
    if (!h || !*h) return false;
    return (size_t)snprintf(buf, cap, "%s/.cache/huggingface", h) < cap;
}

char *cli_hf_cache_dir(void) {
    const char *c = getenv("HF_HUB_CACHE");
    if (!c || !*c) c = getenv("HUGGINGFACE_HUB_CACHE"); /* the older name, still read by huggingface_hub */
    if (c && *c) return strdup(c);
    char home[4000], buf[4096];
    if (!hf_home(home, sizeof home)) return NULL;
    snprintf(buf, sizeof buf, "%s/hub", home);
    return strdup(buf);
}

char *cli_hf_token_path(void) {
    const char *p = getenv("HF_TOKEN_PATH");
    if (p && *p) return strdup(p);
    char home[4000], buf[4096];
    if (!hf_home(home, sizeof home)) return NULL;
    snprintf(buf, sizeof buf, "%s/token", home);
    return strdup(buf);
}

static bool g_force;     /* --force: the process-wide answer to the memory check */

void cli_set_force(bool force) { g_force = force; }

bool cli_mem_available(uint64_t *out) {
    const char *o = getenv("LM_MEM_AVAILABLE_OVERRIDE");
    if (o && *o >= '0' && *o <= '9') {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(o, &end, 10);
        if (*end == '\0' && errno == 0) {
            *out = (uint64_t)v;
            return true;
        }
    }
    lm_error err = {0};
    return hub_mem_available(out, &err) == LM_OK;
}

static void human_bytes(char *out, size_t cap, uint64_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double b = (double)n;
    int k = 0;
    while (b >= 1024.0 && k < 4) b /= 1024.0, k++;
    snprintf(out, cap, k ? "%.1f %s" : "%.0f %s", b, u[k]);
}

/* The guide's RAM table as a check: true when need fits the available memory (or it is unknown,
 * or --force); else prints needed vs available and returns false. */
bool cli_mem_check_need(const char *what, const char *verb, const hub_mem_need *need) {
    uint64_t avail = 0;
    if (g_force || !cli_mem_available(&avail) || need->total <= avail) return true;
    char t[32], w[32], kv[32], ov[32], av[32];
    human_bytes(t, sizeof t, need->total);
    human_bytes(w, sizeof w, need->weights);
    human_bytes(kv, sizeof kv, need->kv);
    human_bytes(ov, sizeof ov, need->overhead);
    human_bytes(av, sizeof av, avail);
    cli_error("not enough memory for %s: it needs about %s (weights %s + KV cache %s at %d tokens + "
              "overhead %s) but only %s is available; use a smaller model or context, or --force to %s "
              "it anyway",
              what, t, w, kv, (int)need->ctx, ov, av, verb);
    return false;
}

bool cli_mem_check_path(const char *what, const char *path, int32_t n_ctx, int32_t n_seq) {
    hub_mem_need need;
    lm_error err = {0};
    if (hub_mem_need_path(path, n_ctx, &need, &err) != LM_OK) return true; /* the load says what is wrong */
    if (n_seq > 1) {
        need.kv *= (uint64_t)n_seq;
        need.total = need.weights + need.kv + need.overhead;
    }
    return cli_mem_check_need(what, "load", &need);
}


char *cli_read_stream(FILE *f, size_t *len) {
    char *text = NULL;
    if (lm_read_fd(fileno(f), "input", &text, len, NULL) != LM_OK) return NULL;
    return text;
}

/* Any kind of file, FIFOs included (`-f <(...)`), unlike lm_read_text. */
char *cli_read_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    char *text = NULL;
    lm_status st = lm_read_fd(fd, path, &text, len, NULL);
    int e = errno;
    close(fd);
    errno = e;
    return st == LM_OK ? text : NULL;
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

double cli_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
