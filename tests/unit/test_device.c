/* tests/unit/test_device.c: choosing where a model runs (lm_model_params.device).
 * "cpu" runs on the CPU; an unknown name is a usage error naming it; "cuda" and "cuda:N" are the
 * GPU when this build has the CUDA backend (LM_TEST_HAVE_CUDA) and a GPU is present, a clear
 * error otherwise (UNSUPPORTED without the backend, IO without a GPU); NULL and "auto" take the
 * GPU when both hold and else the CPU; the load logs the device it chose. Whether a GPU is present
 * is read from the driver's device node, so the same test holds on CI (no GPU) and on a GPU
 * machine. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "model/model.h"

#ifdef LM_TEST_HAVE_CUDA
static const bool HAVE_CUDA = true;
#else
static const bool HAVE_CUDA = false;
#endif

static bool gpu_present(void) { return access("/dev/nvidiactl", F_OK) == 0 && access("/dev/nvidia0", F_OK) == 0; }

static char g_log[4096];

static void collect(lm_log_level level, const char *msg, void *user) {
    (void)level;
    (void)user;
    size_t n = strlen(g_log);
    snprintf(g_log + n, sizeof g_log - n, "%s\n", msg);
}

static lm_status load(const char *device, lm_model **m, lm_error *err) {
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = 1;
    mp.device = device;
    mp.log = collect;
    g_log[0] = 0;
    memset(err, 0, sizeof *err);
    return lm_model_load(tu_data("stories260K/stories260K-f32.gguf"), &mp, m, err);
}

/* One greedy step through a session: the model runs wherever it was loaded. */
static lm_token next_token(lm_model *m) {
    lm_session *s = NULL;
    lm_error err = {0};
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = 64;
    if (tu_session_new(m, &sp, &s, &err)) fail_msg("%s", err.msg);
    lm_token ids[3] = {1, 403, 407};
    float *logits = malloc((size_t)lm_model_n_vocab(m) * sizeof *logits);
    assert_non_null(logits);
    if (lm_session_eval(s, ids, 3, logits, NULL)) fail_msg("%s", lm_session_errmsg(s));
    lm_token best = 0;
    for (int32_t i = 1; i < lm_model_n_vocab(m); i++)
        if (logits[i] > logits[best]) best = i;
    free(logits);
    lm_session_free(s);
    return best;
}

static void test_cpu(void **state) {
    (void)state;
    lm_model *m = NULL;
    lm_error err;
    assert_int_equal(load("cpu", &m, &err), LM_OK);
    assert_string_equal(m->be->ops->name, "cpu");
    lm_model_info info;
    lm_model_get_info(m, &info);
    assert_null(strstr(info.kernels, "cuda"));
    assert_non_null(strstr(g_log, "device cpu"));
    lm_model_free(m);
}

static void test_unknown(void **state) {
    (void)state;
    lm_model *m = NULL;
    lm_error err;
    assert_int_equal(load("vulkan", &m, &err), LM_ERR_MISUSE);
    assert_null(m);
    assert_non_null(strstr(err.msg, "unknown device 'vulkan'"));
    assert_int_equal(load("cuda:x", &m, &err), LM_ERR_MISUSE);
    assert_non_null(strstr(err.msg, "expected cuda:N"));
    assert_int_equal(load("cudax", &m, &err), LM_ERR_MISUSE);
}

static void test_cuda(void **state) {
    (void)state;
    lm_model *m = NULL;
    lm_error err;
    lm_status st = load("cuda", &m, &err);
    if (!HAVE_CUDA) {
        assert_int_equal(st, LM_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.msg, "no CUDA backend"));
    } else if (!gpu_present()) {
        assert_int_equal(st, LM_ERR_IO);
        assert_non_null(strstr(err.msg, "no CUDA GPU"));
    } else {
        if (st) fail_msg("cuda on a machine with a GPU: %s", err.msg);
        assert_string_equal(m->be->ops->name, "cuda");
        assert_non_null(strstr(g_log, "device cuda"));
        /* it runs, and agrees with the CPU on the greedy token */
        lm_model *cpu = NULL;
        lm_error e2;
        assert_int_equal(load("cpu", &cpu, &e2), LM_OK);
        assert_int_equal(next_token(m), next_token(cpu));
        lm_model_free(cpu);
        lm_model_free(m);
        m = NULL;
    }
    assert_null(m);
    /* no machine has GPU 77 */
    st = load("cuda:77", &m, &err);
    assert_null(m);
    if (!HAVE_CUDA) {
        assert_int_equal(st, LM_ERR_UNSUPPORTED);
    } else {
        assert_int_equal(st, LM_ERR_IO);
        assert_non_null(strstr(err.msg, "cuda:77"));
    }
}

static void test_auto(void **state) {
    (void)state;
    const char *names[2] = {NULL, "auto"};
    bool gpu = HAVE_CUDA && gpu_present();
    for (int i = 0; i < 2; i++) {
        lm_model *m = NULL;
        lm_error err;
        if (load(names[i], &m, &err)) fail_msg("device %s: %s", names[i] ? names[i] : "NULL", err.msg);
        assert_string_equal(m->be->ops->name, gpu ? "cuda" : "cpu");
        assert_non_null(strstr(g_log, gpu ? "device cuda" : "device cpu"));
        /* a CUDA build with no GPU says why it took the CPU */
        if (HAVE_CUDA && !gpu) assert_non_null(strstr(g_log, "no CUDA GPU"));
        assert_int_not_equal(next_token(m), -1);
        lm_model_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_cuda),
        cmocka_unit_test(test_auto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
