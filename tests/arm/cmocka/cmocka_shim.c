/* tests/arm/cmocka/cmocka_shim.c: the runner behind tests/arm/cmocka/cmocka.h. */
#include "cmocka.h"

#include <stdarg.h>

jmp_buf cm_shim_jmp;
long cm_shim_asserts;

void cm_shim_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("  FAIL %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    longjmp(cm_shim_jmp, 1);
}

int cm_shim_run(const char *group, const struct CMUnitTest *tests, size_t n, CMFixtureFunction setup,
                CMFixtureFunction teardown) {
    volatile int failed = 0; /* changed between setjmp and longjmp */
    void *state = NULL;
    if (setup && setup(&state)) {
        printf("%s: group setup failed\n", group);
        return (int)n;
    }
    for (size_t i = 0; i < n; i++) {
        void *st = state;
        if (setjmp(cm_shim_jmp) == 0) {
            tests[i].test_func(&st);
            printf("  ok   %s\n", tests[i].name);
        } else {
            printf("  FAILED %s\n", tests[i].name);
            failed++;
        }
    }
    if (teardown) teardown(&state);
    printf("%s: %zu tests, %d failed, %ld assertions\n", group, n, failed, cm_shim_asserts);
    return failed;
}
