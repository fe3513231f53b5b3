/* tests/unit/test_pool.c: the thread pool runs every index exactly once per run, many runs in a
 * row, with sleeping and spinning workers; also run under TSan by make test. */
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

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_runs)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
