/* core/alloc.c: the allocation functions every library allocation goes through.
 * The only mutable global here is the test hook that makes the Nth allocation fail: it must be
 * process-wide because the allocations it targets happen deep inside loaders. */
#include "core.h"

#include <stdatomic.h>
#include <stdlib.h>

static atomic_long g_fail_at;   /* 0: off; else the countdown value that fails */
static atomic_long g_count;
static atomic_bool g_fired;

void lm_alloc_fail_at(long n) {
    atomic_store(&g_count, 0);
    atomic_store(&g_fired, false);
    atomic_store(&g_fail_at, n);
}

long lm_alloc_count(void) { return atomic_load(&g_count); }
bool lm_alloc_failed(void) { return atomic_load(&g_fired); }

static bool should_fail(void) {
    long c = atomic_fetch_add(&g_count, 1) + 1;
    long at = atomic_load(&g_fail_at);
    if (LM_UNLIKELY(at > 0 && c == at)) {
        atomic_store(&g_fired, true);
        return true;
    }
    return false;
}

void *lm_malloc(size_t n) {
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *lm_calloc(size_t n, size_t size) {
    if (should_fail()) return NULL;
    if (n == 0 || size == 0) return calloc(1, 1);
    return calloc(n, size);
}

void *lm_realloc(void *p, size_t n) {
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void lm_free(void *p) { free(p); }

char *lm_strndup(const char *s, size_t n) {
    char *d = lm_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *lm_strdup(const char *s) { return s ? lm_strndup(s, strlen(s)) : NULL; }

bool lm_mul_ok(size_t a, size_t b, size_t *out) {
    if (a && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}
