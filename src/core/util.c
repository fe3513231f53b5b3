/* core/util.c: clocks, the growable buffer, half-float conversions, CPU features and the RNG.
 * Small pieces every area needs; UTF-8 is utf8.c, JSON is json.c. */
#include "core.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ---- time ---- */

uint64_t lm_time_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double lm_time_ms(void) { return (double)lm_time_ns() / 1e6; }

void lm_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

/* ---- buffer ---- */

static bool buf_reserve(lm_buf *b, size_t extra) {
    if (b->oom) return false;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *d = lm_realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

bool lm_buf_append(lm_buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return false;
    if (n) memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
    return true;
}

bool lm_buf_puts(lm_buf *b, const char *s) { return lm_buf_append(b, s, strlen(s)); }
bool lm_buf_putc(lm_buf *b, char c) { return lm_buf_append(b, &c, 1); }

bool lm_buf_printf(lm_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    if ((size_t)n < sizeof tmp) return lm_buf_append(b, tmp, (size_t)n);
    if (!buf_reserve(b, (size_t)n)) return false;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

void lm_buf_reset(lm_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

void lm_buf_free(lm_buf *b) {
    lm_free(b->data);
    memset(b, 0, sizeof *b);
}

char *lm_buf_take(lm_buf *b) {
    char *d = b->data;
    if (!d) d = lm_strdup("");
    memset(b, 0, sizeof *b);
    return d;
}

lm_status lm_buf_copy_out(lm_buf *b, char *out, size_t cap, size_t *len_out, const char *what, lm_error *err) {
    size_t n = b->len;
    if (len_out) *len_out = n;
    if (n >= cap) {
        lm_buf_free(b);
        return lm_fail(err, LM_ERR_TOO_SMALL, "the %s is %zu bytes, the buffer holds %zu", what, n, cap);
    }
    if (n) memcpy(out, b->data, n);
    out[n] = 0;
    lm_buf_free(b);
    return LM_OK;
}

/* ---- half floats ---- */

float lm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            mant &= 0x3FF;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    union { uint32_t u; float f; } v = {bits};
    return v.f;
}

uint16_t lm_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t x = v.u;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t exp = (x >> 23) & 0xFF;
    uint32_t mant = x & 0x7FFFFF;
    if (exp == 0xFF) return sign | 0x7C00 | (mant ? 0x200 : 0);
    int e = (int)exp - 127 + 15;
    if (e >= 31) return sign | 0x7C00;
    if (e <= 0) {
        if (e < -10) return sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t half = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return sign | (uint16_t)half;
}

uint16_t lm_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((v.u >> 16) | 0x40);
    uint32_t r = v.u + 0x7FFF + ((v.u >> 16) & 1);
    return (uint16_t)(r >> 16);
}

/* ---- CPU features ---- */

static uint32_t g_features;
static pthread_once_t g_features_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static void detect_features(void) {
    unsigned a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool osxsave = (c >> 27) & 1;
    bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    uint64_t xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((uint64_t)hi << 32) | lo;
    }
    bool ymm = (xcr0 & 6) == 6, zmm = (xcr0 & 0xE6) == 0xE6;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        if (avx && ymm && ((b >> 5) & 1)) f |= LM_CPU_AVX2;
        if (ymm && fma) f |= LM_CPU_FMA;
        if (ymm && f16c) f |= LM_CPU_F16C;
        if (zmm && ((b >> 16) & 1)) f |= LM_CPU_AVX512F;
        if (zmm && ((b >> 17) & 1)) f |= LM_CPU_AVX512DQ;
        if (zmm && ((b >> 30) & 1)) f |= LM_CPU_AVX512BW;
        if (zmm && ((b >> 31) & 1)) f |= LM_CPU_AVX512VL;
        if (zmm && ((c >> 11) & 1)) f |= LM_CPU_AVX512VNNI;
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && zmm && ((a >> 5) & 1)) f |= LM_CPU_AVX512BF16;
    }
    g_features = f;
}
#elif defined(__aarch64__)
static void detect_features(void) {
    g_features = LM_CPU_NEON;
#if defined(__ARM_FEATURE_DOTPROD) || defined(__APPLE__)
    g_features |= LM_CPU_DOTPROD;
#elif defined(__linux__)
#include <sys/auxv.h>
    unsigned long hw = getauxval(AT_HWCAP);
    if (hw & (1ul << 20)) g_features |= LM_CPU_DOTPROD; /* HWCAP_ASIMDDP */
#endif
}
#else
static void detect_features(void) { g_features = 0; }
#endif

uint32_t lm_cpu_features(void) {
    pthread_once(&g_features_once, detect_features);
    return g_features;
}

/* ---- RNG: xoshiro256** seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void lm_rng_seed(lm_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lm_rng_next(lm_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double lm_rng_uniform(lm_rng *r) { return (double)(lm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
