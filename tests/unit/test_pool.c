/* tests/unit/test_pool.c: the thread pool runs every index exactly once per run, many runs in a
 * row, with sleeping and spinning workers, and lets go of a thread that keeps the others waiting;
 * also run under TSan by make test. */
#include "testutil.h"

#include <stdatomic.h>
#include <unistd.h>

typedef struct {
    atomic_int hits[16];
    atomic_long sum;
} ctx_t;

static void task(void *p, int ith, int nth) {
    ctx_t *c = p;
    atomic_fetch_add(&c->hits[ith], 1);
    long s = 0;
    for (int i = ith; i < 1000; i += nth) s += i;
    atomic_fetch_add(&c->sum, s);
}

static void test_runs(void **state) {
    (void)state;
    for (int n = 1; n <= 4; n++) {
        lm_pool *p = lm_pool_new(n);
        assert_non_null(p);
        assert_int_equal(lm_pool_size(p), n);
        ctx_t c;
        memset(&c, 0, sizeof c);
        for (int r = 0; r < 2000; r++) lm_pool_run(p, task, &c);
        for (int i = 0; i < n; i++) assert_int_equal(atomic_load(&c.hits[i]), 2000);
        assert_int_equal(atomic_load(&c.sum), 2000L * 499500L);
        /* let workers fall asleep, then run again */
        usleep(50 * 1000);
        lm_pool_run(p, task, &c);
        for (int i = 0; i < n; i++) assert_int_equal(atomic_load(&c.hits[i]), 2001);
        lm_pool_free(p);
    }
    lm_pool_free(NULL);
}

typedef struct {
    atomic_int chunks; /* chunks run, all runs */
    atomic_int on_worker; /* chunks run by a thread other than the caller */
} slow_ctx;

/* A worker's chunk takes 3 ms off the CPU, as a thread that lost its time slice would. */
static void slow_worker_chunk(void *p, int chunk, int n_chunks, int ith) {
    (void)chunk, (void)n_chunks;
    slow_ctx *c = p;
    atomic_fetch_add(&c->chunks, 1);
    if (ith != 0) {
        atomic_fetch_add(&c->on_worker, 1);
        usleep(3000);
    }
}

/* Runs whose caller waits milliseconds for a worker's chunk lose most of their wall time: within
 * a few 100 ms windows the pool runs on the caller alone, and every chunk still runs once. */
static void test_lets_go_of_a_stalling_thread(void **state) {
    (void)state;
    lm_pool *p = lm_pool_new(2);
    assert_non_null(p);
    slow_ctx c;
    memset(&c, 0, sizeof c);
    int runs = 0;
    double t0 = lm_time_ms();
    /* long enough for the drop, short of the 2 s before the pool tries the thread again */
    while (lm_time_ms() - t0 < 800) {
        lm_pool_run_chunks(p, slow_worker_chunk, &c, 8);
        runs++;
    }
    int before = atomic_load(&c.on_worker);
    for (int r = 0; r < 200; r++) lm_pool_run_chunks(p, slow_worker_chunk, &c, 8);
    runs += 200;
    assert_int_equal(atomic_load(&c.chunks), runs * 8);
    assert_true(before > 0); /* the worker did take part at first */
    /* the 200 runs took about no time: the caller ran their chunks (a worker woken by a run in
     * flight as it leaves may still take one) */
    assert_true(atomic_load(&c.on_worker) - before <= 1);
    lm_pool_free(p);
}

/* Two kinds of runs back to back on the same two contexts, as a matrix product's quantization
 * (few chunks) and its product (many) are: each chunk must run once, with its own run's function,
 * context and chunk count. A thread that paired the last run's claim word with the next run's
 * count once ran a chunk of neither (TSan saw its write beside the caller's reads). */
typedef struct {
    int kind, n;
    atomic_int hits[16];
    atomic_int *bad;
} kind_ctx;

static void kind_chunk(void *p, int chunk, int n_chunks, int ith, int kind) {
    (void)ith;
    kind_ctx *c = p;
    if (c->kind != kind || n_chunks != c->n || chunk < 0 || chunk >= c->n) {
        atomic_fetch_add(c->bad, 1);
        return;
    }
    atomic_fetch_add(&c->hits[chunk], 1);
}
static void kind0_chunk(void *p, int chunk, int n_chunks, int ith) { kind_chunk(p, chunk, n_chunks, ith, 0); }
static void kind1_chunk(void *p, int chunk, int n_chunks, int ith) { kind_chunk(p, chunk, n_chunks, ith, 1); }

static void test_runs_do_not_mix(void **state) {
    (void)state;
    lm_pool *p = lm_pool_new(3);
    assert_non_null(p);
    atomic_int bad;
    atomic_init(&bad, 0);
    kind_ctx a = {.kind = 0, .n = 2, .bad = &bad}, b = {.kind = 1, .n = 16, .bad = &bad};
    for (int r = 0; r < 100000; r++) {
        kind_ctx *c = r & 1 ? &b : &a;
        for (int i = 0; i < c->n; i++) atomic_store(&c->hits[i], 0);
        lm_pool_run_chunks(p, r & 1 ? kind1_chunk : kind0_chunk, c, c->n);
        for (int i = 0; i < c->n; i++)
            if (atomic_load(&c->hits[i]) != 1) fail_msg("run %d: chunk %d ran %d times", r, i, atomic_load(&c->hits[i]));
        if (atomic_load(&bad)) fail_msg("run %d: a chunk ran with another run's function, context or count", r);
    }
    lm_pool_free(p);
}

/* 2^-70 squared is 2^-140, a subnormal float: zero with subnormals off (core.h), kept with them on. */
static float tiny_square(void) {
    volatile float t = 0x1p-70f;
    return t * t;
}

typedef struct fp_ctx {
    atomic_int kept[4]; /* per thread: chunks whose product stayed subnormal */
    atomic_int ran[4];
} fp_ctx;

static void fp_chunk(void *p, int chunk, int n_chunks, int ith) {
    (void)chunk;
    (void)n_chunks;
    fp_ctx *c = p;
    for (volatile int spin = 0; spin < 20000; spin++) {} /* leave chunks for the other threads */
    atomic_fetch_add(&c->ran[ith], 1);
    if (tiny_square() != 0.0f) atomic_fetch_add(&c->kept[ith], 1);
}

static void test_subnormals_off(void **state) {
    (void)state;
    assert_true(tiny_square() > 0.0f); /* a C program starts with them on */
#if defined(__x86_64__) || defined(_M_X64)
    unsigned saved = lm_fp_subnormals_off();
    assert_true(tiny_square() == 0.0f);
    lm_fp_restore(saved);
    assert_true(tiny_square() > 0.0f);
    /* the pool's own threads run with them off; the caller keeps its own state */
    lm_pool *p = lm_pool_new(3);
    assert_non_null(p);
    fp_ctx c;
    memset(&c, 0, sizeof c);
    for (int r = 0; r < 50 && !(atomic_load(&c.ran[1]) && atomic_load(&c.ran[2])); r++) lm_pool_run_chunks(p, fp_chunk, &c, 64);
    assert_true(atomic_load(&c.ran[1]) > 0 && atomic_load(&c.ran[2]) > 0);
    assert_int_equal(atomic_load(&c.kept[1]), 0);
    assert_int_equal(atomic_load(&c.kept[2]), 0);
    assert_int_equal(atomic_load(&c.kept[0]), atomic_load(&c.ran[0]));
    lm_pool_free(p);
#else
    lm_fp_restore(lm_fp_subnormals_off()); /* a no-op here: nothing to check but that it is one */
    assert_true(tiny_square() > 0.0f);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_runs), cmocka_unit_test(test_runs_do_not_mix),
                                       cmocka_unit_test(test_lets_go_of_a_stalling_thread),
                                       cmocka_unit_test(test_subnormals_off)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
