/* tests/arm/cmocka/cmocka.h: the part of cmocka's API the kernel unit tests use (test_quants.c,
 * test_quants_mlx.c), so `make test-arm` can run them unchanged under qemu-aarch64 without an
 * aarch64 build of cmocka. A failed assertion prints where and why, then jumps back to the runner,
 * which goes on with the next test; cmocka_run_group_tests returns the number of failed tests. */
#ifndef LM_TESTS_ARM_CMOCKA_H
#define LM_TESTS_ARM_CMOCKA_H

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef void (*CMUnitTestFunction)(void **state);
typedef int (*CMFixtureFunction)(void **state);
struct CMUnitTest {
    const char *name;
    CMUnitTestFunction test_func;
};
#define cmocka_unit_test(f) {#f, f}

extern jmp_buf cm_shim_jmp;
extern long cm_shim_asserts;
void cm_shim_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
int cm_shim_run(const char *group, const struct CMUnitTest *tests, size_t n, CMFixtureFunction setup,
                CMFixtureFunction teardown);

#define cmocka_run_group_tests(tests, setup, teardown) \
    cm_shim_run(__FILE__, tests, sizeof(tests) / sizeof((tests)[0]), setup, teardown)

#define CM_SHIM_CHECK(cond, ...)                                          \
    do {                                                                  \
        cm_shim_asserts++;                                                \
        if (!(cond)) cm_shim_fail(__FILE__, __LINE__, __VA_ARGS__);       \
    } while (0)

#define fail_msg(...) cm_shim_fail(__FILE__, __LINE__, __VA_ARGS__)
#define fail() cm_shim_fail(__FILE__, __LINE__, "fail()")
#define assert_true(c) CM_SHIM_CHECK((c), "assert_true(%s)", #c)
#define assert_false(c) CM_SHIM_CHECK(!(c), "assert_false(%s)", #c)
#define assert_null(p) CM_SHIM_CHECK((p) == NULL, "assert_null(%s)", #p)
#define assert_non_null(p) CM_SHIM_CHECK((p) != NULL, "assert_non_null(%s)", #p)
#define assert_ptr_equal(a, b) CM_SHIM_CHECK((a) == (b), "assert_ptr_equal(%s, %s)", #a, #b)
#define assert_int_equal(a, b)                                                                       \
    do {                                                                                             \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                             \
        CM_SHIM_CHECK(a_ == b_, "assert_int_equal(%s, %s): %jd != %jd", #a, #b, a_, b_);             \
    } while (0)
#define assert_int_not_equal(a, b)                                                                   \
    do {                                                                                             \
        intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b);                                             \
        CM_SHIM_CHECK(a_ != b_, "assert_int_not_equal(%s, %s): both %jd", #a, #b, a_);               \
    } while (0)
#define assert_float_equal(a, b, eps)                                                                \
    do {                                                                                             \
        double a_ = (double)(a), b_ = (double)(b);                                                   \
        CM_SHIM_CHECK(fabs(a_ - b_) <= (double)(eps), "assert_float_equal(%s, %s): %.9g != %.9g",    \
                      #a, #b, a_, b_);                                                               \
    } while (0)
#define assert_memory_equal(a, b, n) \
    CM_SHIM_CHECK(memcmp((a), (b), (n)) == 0, "assert_memory_equal(%s, %s, %s)", #a, #b, #n)
#define assert_string_equal(a, b)                                                                    \
    do {                                                                                             \
        const char *a_ = (a), *b_ = (b);                                                             \
        CM_SHIM_CHECK(a_ && b_ && strcmp(a_, b_) == 0, "assert_string_equal(%s, %s): \"%s\" != \"%s\"", \
                      #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                               \
    } while (0)

#endif
