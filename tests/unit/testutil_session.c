/* tests/unit/testutil_session.c: testutil.h's helpers that need the whole library (sessions on
 * engines); apart from testutil.c so the kernel tests build with the CPU backend alone
 * (tests/arm/run.sh). */
#include "testutil.h"

lm_status tu_session_new(const lm_model *m, const lm_session_params *sp, lm_session **s, lm_error *err) {
    lm_engine *e = NULL;
    lm_status st = lm_engine_new(m, NULL, &e, err);
    if (st) return st;
    st = lm_session_new(e, sp, s, err);
    lm_engine_free(e);
    return st;
}
