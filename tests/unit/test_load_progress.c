/* tests/unit/test_load_progress.c: the load progress callback (lm_model_params.progress) that the
 * CLI draws as a bar. For a GGUF file and a Hugging Face folder: it starts at 0, never goes back,
 * is called at least once per layer, and ends at exactly 1.0; returning non-zero cancels the load
 * with LM_ERR_CANCELLED, after which the callback is not called again. */
#include "testutil.h"

#include "locallm.h"

typedef struct rec {
    float f[256];
    int n;
    int cancel_at; /* call index that returns non-zero, -1: never */
    bool bad_stage;
} rec;

static int on_progress(float fraction, const char *stage, void *user) {
    rec *r = user;
    if (!stage || !*stage) r->bad_stage = true;
    if (r->n < (int)LM_ARRAY_LEN(r->f)) r->f[r->n] = fraction;
    r->n++;
    return r->n - 1 == r->cancel_at;
}

static void check_whole_load(const char *path, int n_layer) {
    lm_model_params mp = lm_model_default_params();
    rec r = {.cancel_at = -1};
    mp.progress = on_progress;
    mp.progress_user = &r;
    lm_model *m = NULL;
    lm_error err = {0};
    assert_int_equal(lm_model_load(path, &mp, &m, &err), LM_OK);
    assert_non_null(m);
    assert_false(r.bad_stage);
    assert_true(r.n >= n_layer + 2); /* opening, one per layer, ready */
    assert_true(r.n <= (int)LM_ARRAY_LEN(r.f));
    assert_true(r.f[0] == 0.0f);
    for (int i = 1; i < r.n; i++) {
        assert_true(r.f[i] >= r.f[i - 1]);
        assert_true(r.f[i] >= 0.0f && r.f[i] <= 1.0f);
    }
    assert_true(r.f[r.n - 1] == 1.0f);
    /* the per-layer steps are spread out: no single jump covers more than half the bar */
    for (int i = 1; i < r.n; i++) assert_true(r.f[i] - r.f[i - 1] <= 0.5f);
    lm_model_free(m);

    /* cancel at every call in turn: each is LM_ERR_CANCELLED and stops the callbacks */
    int total = r.n;
    for (int k = 0; k < total; k++) {
        rec c = {.cancel_at = k};
        mp.progress_user = &c;
        lm_model *m2 = NULL;
        assert_int_equal(lm_model_load(path, &mp, &m2, &err), LM_ERR_CANCELLED);
        assert_null(m2);
        assert_non_null(strstr(err.msg, "loading cancelled"));
        assert_int_equal(c.n, k + 1);
    }
}

static void gguf_f32(void **state) {
    (void)state;
    check_whole_load(tu_data("stories260K/stories260K-f32.gguf"), 5);
}

static void gguf_q8_0(void **state) {
    (void)state;
    check_whole_load(tu_data("stories260K/stories260K-q8_0.gguf"), 5);
}

static void hf_folder(void **state) {
    (void)state;
    check_whole_load(tu_data("stories260K/hf"), 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gguf_f32),
        cmocka_unit_test(gguf_q8_0),
        cmocka_unit_test(hf_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
