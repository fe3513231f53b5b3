/* tests/arm/engine_stub.c: the engine and session entry points tests/unit/testutil.c's
 * tu_session_new calls, for the kernel unit tests run under qemu, which link core/ and
 * compute/cpu/ only (no model, session or engine code). Those tests never make a session; a call
 * would fail as the library does for a model it cannot run. */
#include "core/core.h"

lm_status lm_engine_new(const lm_model *m, const lm_engine_params *p, lm_engine **out, lm_error *err) {
    (void)m;
    (void)p;
    if (out) *out = NULL;
    return lm_fail(err, LM_ERR_UNSUPPORTED, "engines are not linked into the ARM kernel tests");
}

void lm_engine_free(lm_engine *e) { (void)e; }

lm_status lm_session_new(lm_engine *e, const lm_session_params *p, lm_session **out, lm_error *err) {
    (void)e;
    (void)p;
    if (out) *out = NULL;
    return lm_fail(err, LM_ERR_UNSUPPORTED, "sessions are not linked into the ARM kernel tests");
}
