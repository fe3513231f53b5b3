/* tests/unit/test_session.c: chat sessions on the real tinychat model (Qwen2 architecture, its
 * own Qwen2.5 template and byte-level BPE tokenizer): every reference conversation's greedy reply
 * exactly; prefix reuse across turns (counts asserted, logits equal to a from-scratch run);
 * partial prefill then final equals one full prefill; cancellation from another thread;
 * trimming keeps the system prompt; stop strings with a real tokenizer; unload and reload. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static lm_model *g_model;
static lm_engine *g_engine;

static int setup(void **state) {
    (void)state;
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = 2;
    lm_error err = {0};
    if (lm_model_load(tu_src("models/tinychat"), &mp, &g_model, &err) || lm_engine_new(g_model, NULL, &g_engine, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    lm_engine_free(g_engine);
    lm_model_free(g_model);
    return 0;
}

static int collect(const char *s, size_t n, void *user) {
    lm_buf_append((lm_buf *)user, s, n);
    return 0;
}

/* Converts a JSON message array into lm_message (strings borrowed from j; tool_calls printed). */
static size_t to_messages(cJSON *arr, lm_message *out, char **owned) {
    size_t n = 0;
    cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        memset(&out[n], 0, sizeof out[n]);
        out[n].role = cJSON_GetObjectItem(m, "role")->valuestring;
        cJSON *c = cJSON_GetObjectItem(m, "content");
        out[n].content = cJSON_IsString(c) ? c->valuestring : NULL;
        cJSON *tc = cJSON_GetObjectItem(m, "tool_calls");
        owned[n] = tc ? cJSON_PrintUnformatted(tc) : NULL;
        out[n].tool_calls_json = owned[n];
        cJSON *id = cJSON_GetObjectItem(m, "tool_call_id");
        out[n].tool_call_id = cJSON_IsString(id) ? id->valuestring : NULL;
        cJSON *nm = cJSON_GetObjectItem(m, "name");
        out[n].name = cJSON_IsString(nm) ? nm->valuestring : NULL;
        n++;
    }
    return n;
}

static lm_gen_params greedy(int max_tokens) {
    lm_gen_params gp = lm_gen_default_params();
    gp.temperature = 0;
    gp.max_tokens = max_tokens;
    return gp;
}

static void test_reference_replies(void **state) {
    (void)state;
    cJSON *refs = tu_json(tu_src("models/tinychat/refs.json"));
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(lm_session_new(g_engine, NULL, &s, &err), LM_OK);
    cJSON *p;
    int n_checked = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(refs, "prompts")) {
        const char *name = cJSON_GetObjectItem(p, "name")->valuestring;
        lm_message msgs[16];
        char *owned[16];
        size_t n = to_messages(cJSON_GetObjectItem(p, "messages"), msgs, owned);
        cJSON *tools = cJSON_GetObjectItem(p, "tools");
        char *tools_json = cJSON_IsArray(tools) ? cJSON_PrintUnformatted(tools) : NULL;
        lm_chat_params cp = lm_chat_default_params();
        cp.tools_json = tools_json;
        /* the rendered prompt equals the reference byte for byte */
        char prompt[16384];
        size_t plen;
        if (lm_model_chat_render(g_model, msgs, n, &cp, prompt, sizeof prompt, &plen, &err)) fail_msg("%s: %s", name, err.msg);
        assert_string_equal(prompt, cJSON_GetObjectItem(p, "prompt_text")->valuestring);
        lm_gen_params gp = greedy(64);
        lm_buf out = {0};
        lm_gen_stats st;
        if (lm_session_chat(s, msgs, n, &cp, &gp, collect, &out, &st)) fail_msg("%s: %s", name, lm_session_errmsg(s));
        const char *want = cJSON_GetObjectItem(p, "reply_text")->valuestring;
        if (strcmp(out.data ? out.data : "", want) != 0) fail_msg("%s: reply '%s', want '%s'", name, out.data, want);
        assert_int_equal(st.finish, LM_FINISH_STOP);
        assert_int_equal(st.stop_token, 2028); /* <|im_end|> */
        assert_int_equal(st.n_prompt, cJSON_GetArraySize(cJSON_GetObjectItem(p, "prompt_ids")));
        assert_int_equal(st.n_prompt, st.n_cached + st.n_prefilled);
        lm_buf_free(&out);
        for (size_t i = 0; i < n; i++) cJSON_free(owned[i]);
        cJSON_free(tools_json);
        n_checked++;
    }
    assert_int_equal(n_checked, 24);
    lm_session_free(s);
    cJSON_Delete(refs);
}

/* A conversation over turns: the second turn reuses the first turn's prompt and reply. */
static void test_prefix_reuse(void **state) {
    (void)state;
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(lm_session_new(g_engine, NULL, &s, &err), LM_OK);
    lm_message msgs[4] = {{.role = "user", .content = "Hi"}};
    lm_gen_params gp = greedy(64);
    lm_buf r1 = {0};
    lm_gen_stats st1, st2;
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &r1, &st1), LM_OK);
    assert_string_equal(r1.data, "Hello! How can I help you today?");
    assert_int_equal(st1.n_cached, 0);
    msgs[1] = (lm_message){.role = "assistant", .content = r1.data};
    msgs[2] = (lm_message){.role = "user", .content = "What is 12 minus 4?"};
    lm_buf r2 = {0};
    assert_int_equal(lm_session_chat(s, msgs, 3, NULL, &gp, collect, &r2, &st2), LM_OK);
    assert_string_equal(r2.data, "12 minus 4 is 8.");
    /* everything up to the end of the first reply was cached; only the new turn was prefilled */
    assert_true(st2.n_cached >= st1.n_prompt + st1.n_generated - 1);
    assert_int_equal(st2.n_prefilled, st2.n_prompt - st2.n_cached);
    assert_true(st2.n_prefilled < 30);
    /* a rewritten history (reply cut to the words spoken) reuses the common prefix */
    msgs[1].content = "Hello!";
    lm_buf r3 = {0};
    lm_gen_stats st3;
    assert_int_equal(lm_session_chat(s, msgs, 3, NULL, &gp, collect, &r3, &st3), LM_OK);
    assert_true(st3.n_cached >= st1.n_prompt);
    assert_true(st3.n_cached < st2.n_cached);
    lm_buf_free(&r1);
    lm_buf_free(&r2);
    lm_buf_free(&r3);
    lm_session_free(s);
}

/* Logits after reusing a prefix equal a from-scratch evaluation of the same tokens. */
static void test_reuse_logits(void **state) {
    (void)state;
    lm_token a[80], b[80];
    for (int i = 0; i < 80; i++) a[i] = b[i] = (lm_token)(100 + (i * 37) % 1800);
    for (int i = 50; i < 80; i++) b[i] = (lm_token)(300 + (i * 11) % 1500);
    size_t nv = (size_t)lm_model_n_vocab(g_model);
    float *l1 = malloc(nv * sizeof(float)), *l2 = malloc(nv * sizeof(float));
    lm_session *s1 = NULL, *s2 = NULL;
    lm_error err = {0};
    assert_int_equal(lm_session_new(g_engine, NULL, &s1, &err), LM_OK);
    assert_int_equal(lm_session_new(g_engine, NULL, &s2, &err), LM_OK);
    assert_int_equal(lm_session_eval(s1, a, 80, NULL, NULL), LM_OK);
    assert_int_equal(lm_session_truncate(s1, 50), LM_OK);
    assert_int_equal(lm_session_eval(s1, b + 50, 30, l1, NULL), LM_OK);
    assert_int_equal(lm_session_eval(s2, b, 50, NULL, NULL), LM_OK);
    assert_int_equal(lm_session_eval(s2, b + 50, 30, l2, NULL), LM_OK);
    for (size_t i = 0; i < nv; i++) assert_true(fabsf(l1[i] - l2[i]) <= 1e-5f);
    free(l1);
    free(l2);
    lm_session_free(s1);
    lm_session_free(s2);
}

/* Partial prefill while the user speaks, then the final call prefills only the tail and gives
 * the same reply as a single full prefill. */
static void test_partial_prefill(void **state) {
    (void)state;
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(lm_session_new(g_engine, NULL, &s, &err), LM_OK);
    lm_message msgs[2] = {{.role = "system", .content = "You are a helpful voice assistant."}, {.role = "user"}};
    const char *partials[] = {"What", "What is the", "What is the capitol", "What is the capital of", "What is the capital of Fra"};
    for (size_t i = 0; i < LM_ARRAY_LEN(partials); i++) {
        msgs[1].content = partials[i];
        assert_int_equal(lm_session_prefill_partial(s, msgs, 2, NULL), LM_OK);
    }
    size_t before = lm_session_n_past(s);
    /* system turn (12 tokens) + "<|im_start|>user\nWhat is the capital of" minus its last token */
    assert_true(before >= 18);
    msgs[1].content = "What is the capital of France?";
    lm_gen_params gp = greedy(64);
    lm_buf out = {0};
    lm_gen_stats st;
    assert_int_equal(lm_session_chat(s, msgs, 2, NULL, &gp, collect, &out, &st), LM_OK);
    assert_string_equal(out.data, "The capital of France is Paris.");
    assert_true(st.n_cached >= (int32_t)before - 1);
    assert_true(st.n_prefilled <= 10);
    lm_buf_free(&out);
    lm_session_free(s);
}

typedef struct {
    lm_session *s;
    useconds_t delay;
} cancel_arg;

static void *cancel_later(void *p) {
    cancel_arg *a = p;
    usleep(a->delay);
    lm_session_cancel(a->s);
    return NULL;
}

static void test_cancel_prefill(void **state) {
    (void)state;
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = 2048;
    sp.n_batch = 8;
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(lm_session_new(g_engine, &sp, &s, &err), LM_OK);
    lm_token ids[2000];
    for (int i = 0; i < 2000; i++) ids[i] = (lm_token)(50 + (i * 13) % 1900);
    cancel_arg a = {s, 20000};
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, &a);
    lm_status st = lm_session_eval(s, ids, 2000, NULL, NULL);
    pthread_join(th, NULL);
    assert_int_equal(st, LM_ERR_CANCELLED);
    size_t n = lm_session_n_past(s);
    assert_true(n < 2000 && n % 8 == 0); /* stopped at a micro-batch boundary */
    assert_memory_equal(lm_session_tokens(s), ids, n * sizeof(lm_token));
    /* the session is still usable and correct */
    lm_message msgs[1] = {{.role = "user", .content = "What is 7 plus 5?"}};
    lm_gen_params gp = greedy(32);
    lm_buf out = {0};
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &out, NULL), LM_OK);
    assert_string_equal(out.data, "7 plus 5 is 12.");
    lm_buf_free(&out);
    lm_session_free(s);
}

static int stop_after_two(const char *t, size_t n, void *user) {
    (void)t;
    (void)n;
    return ++*(int *)user >= 2;
}

static void test_callback_stop_and_stop_strings(void **state) {
    (void)state;
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(lm_session_new(g_engine, NULL, &s, &err), LM_OK);
    lm_message msgs[1] = {{.role = "user", .content = "What is the capital of France?"}};
    lm_gen_params gp = greedy(64);
    int calls = 0;
    lm_gen_stats st;
    /* a callback's stop is LM_ERR_CANCELLED (one rule for every stop the caller asks for) */
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, stop_after_two, &calls, &st), LM_ERR_CANCELLED);
    assert_non_null(strstr(lm_session_errmsg(s), "stopped by the caller"));
    assert_int_equal(st.finish, LM_FINISH_CANCELLED);
    assert_int_equal(calls, 2);
    /* a stop string spanning tokens is never delivered */
    gp.stop[0] = "is Par";
    lm_buf out = {0};
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &out, &st), LM_OK);
    assert_string_equal(out.data, "The capital of France ");
    assert_int_equal(st.finish, LM_FINISH_STOP);
    lm_buf_free(&out);
    /* max_tokens */
    gp.stop[0] = NULL;
    gp.max_tokens = 3;
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &out, &st), LM_OK);
    assert_int_equal(st.finish, LM_FINISH_LENGTH);
    assert_int_equal(st.n_generated, 3);
    assert_string_equal(out.data, "The capital of");
    lm_buf_free(&out);
    lm_session_free(s);
}

static void test_trimming(void **state) {
    (void)state;
    lm_session_params sp = lm_session_default_params();
    sp.n_ctx = 160;
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(lm_session_new(g_engine, &sp, &s, &err), LM_OK);
    lm_message msgs[13];
    msgs[0] = (lm_message){.role = "system", .content = "You are a helpful voice assistant."};
    for (int i = 0; i < 6; i++) {
        msgs[1 + 2 * i] = (lm_message){.role = "user", .content = "What is the capital of France?"};
        msgs[2 + 2 * i] = (lm_message){.role = "assistant", .content = "The capital of France is Paris."};
    }
    msgs[12] = (lm_message){.role = "user", .content = "What is 7 plus 5?"};
    lm_gen_params gp = greedy(24);
    lm_buf out = {0};
    lm_gen_stats st;
    assert_int_equal(lm_session_chat(s, msgs, 13, NULL, &gp, collect, &out, &st), LM_OK);
    assert_true(st.n_dropped_messages >= 2);
    assert_true(st.n_prompt + 24 <= 160);
    assert_string_equal(out.data, "7 plus 5 is 12.");
    /* the system prompt is still the start of the context */
    char text[4096];
    size_t len;
    assert_int_equal(lm_model_detokenize(g_model, lm_session_tokens(s), lm_session_n_past(s), false, text, sizeof text, &len, &err), LM_OK);
    assert_non_null(strstr(text, "<|im_start|>system\nYou are a helpful voice assistant.<|im_end|>"));
    /* a single message longer than the window is an error naming the sizes */
    static char big[8000];
    memset(big, 0, sizeof big);
    for (int i = 0; i < 700; i++) strcat(big, "word ");
    lm_message one[1] = {{.role = "user", .content = big}};
    assert_int_equal(lm_session_chat(s, one, 1, NULL, &gp, collect, &out, &st), LM_ERR_CONTEXT);
    assert_non_null(strstr(lm_session_errmsg(s), "context window is 160"));
    lm_buf_free(&out);
    lm_session_free(s);
}

/* Handles may be freed in any order: a session keeps its engine and model alive (the leak
 * checker of the sanitizer build sees that the last free releases everything). */
static void test_warmup_unload_reload(void **state) {
    (void)state;
    lm_error err = {0};
    assert_int_equal(lm_engine_warmup(g_engine, &err), LM_OK);
    lm_model *m2 = NULL;
    lm_engine *e2 = NULL;
    assert_int_equal(lm_model_load(tu_src("models/tinychat"), NULL, &m2, &err), LM_OK);
    assert_int_equal(lm_engine_new(m2, NULL, &e2, &err), LM_OK);
    assert_ptr_equal(lm_engine_model(e2), m2);
    lm_session *s = NULL;
    assert_int_equal(lm_session_new(e2, NULL, &s, &err), LM_OK);
    lm_model_free(m2);
    lm_engine_free(e2);
    lm_message msgs[1] = {{.role = "user", .content = "Hello!"}};
    lm_gen_params gp = greedy(8);
    lm_buf out = {0};
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &out, NULL), LM_OK);
    assert_int_equal(strncmp(out.data, "Hello! How can I help", 21), 0);
    lm_session_free(s);
    /* load again after unloading */
    assert_int_equal(lm_model_load(tu_src("models/tinychat"), NULL, &m2, &err), LM_OK);
    assert_int_equal(lm_engine_new(m2, NULL, &e2, &err), LM_OK);
    assert_int_equal(lm_session_new(e2, NULL, &s, &err), LM_OK);
    lm_buf_reset(&out);
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &out, NULL), LM_OK);
    assert_int_equal(strncmp(out.data, "Hello! How can I help", 21), 0);
    lm_buf_free(&out);
    lm_session_free(s);
    lm_engine_free(e2);
    lm_model_free(m2);
}

static void test_response_cache(void **state) {
    (void)state;
    lm_response_cache *rc = NULL;
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(lm_response_cache_new(2, &rc, &err), LM_OK);
    assert_int_equal(lm_session_new(g_engine, NULL, &s, &err), LM_OK);
    lm_session_set_response_cache(s, rc);
    lm_message msgs[1] = {{.role = "user", .content = "What colour is the sky?"}};
    lm_gen_params gp = greedy(32);
    lm_buf a = {0}, b = {0};
    lm_gen_stats st;
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &a, &st), LM_OK);
    assert_false(st.from_cache);
    size_t past = lm_session_n_past(s);
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &b, &st), LM_OK);
    assert_true(st.from_cache);
    assert_string_equal(a.data, "The sky is blue.");
    assert_string_equal(a.data, b.data);
    assert_int_equal(lm_session_n_past(s), past); /* no compute on a hit */
    uint64_t hits, misses;
    lm_response_cache_stats(rc, &hits, &misses);
    assert_int_equal(hits, 1);
    assert_int_equal(misses, 1);
    /* sampled turns are never cached; other parameters make another key */
    gp.temperature = 0.7f;
    lm_buf_reset(&b);
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &b, &st), LM_OK);
    assert_false(st.from_cache);
    gp = greedy(5);
    lm_buf_reset(&b);
    assert_int_equal(lm_session_chat(s, msgs, 1, NULL, &gp, collect, &b, &st), LM_OK);
    assert_false(st.from_cache);
    lm_buf_free(&a);
    lm_buf_free(&b);
    lm_session_free(s);
    lm_response_cache_free(rc);
}

static int cancel_load(float f, const char *stage, void *user) {
    (void)stage;
    (void)user;
    return f > 0.5f;
}

static void test_load_progress_cancel(void **state) {
    (void)state;
    lm_model_params mp = lm_model_default_params();
    mp.progress = cancel_load;
    lm_model *m = NULL;
    lm_error err = {0};
    assert_int_equal(lm_model_load(tu_src("models/tinychat"), &mp, &m, &err), LM_ERR_CANCELLED);
    assert_null(m);
}

typedef struct lp_rec {
    int n;
    lm_token ids[64];
    float lp[64];
    int32_t n_top[64];
    lm_token top0[64];
    float top_lp[64][LM_MAX_TOP_LOGPROBS];
} lp_rec;

static int on_token(const lm_token_info *t, void *user) {
    lp_rec *r = user;
    if (r->n < 64) {
        r->ids[r->n] = t->id;
        r->lp[r->n] = t->logprob;
        r->n_top[r->n] = t->n_top;
        r->top0[r->n] = t->n_top ? t->top_ids[0] : -1;
        for (int i = 0; i < t->n_top; i++) r->top_lp[r->n][i] = t->top_logprobs[i];
    }
    r->n++;
    return 0;
}

/* Each generated token reaches token_fn with its log-probability and the most likely
 * alternatives: greedy picks the first of them, and the numbers are the log-softmax of the
 * logits an evaluation gives at the same place. */
static void test_logprobs(void **state) {
    (void)state;
    lm_session *s = NULL;
    lm_error err = {0};
    assert_int_equal(lm_session_new(g_engine, NULL, &s, &err), LM_OK);
    lm_token prompt[6];
    size_t n = 0;
    assert_int_equal(lm_model_tokenize(g_model, "<|im_start|>user\nHello!<|im_end|>\n", 33, LM_TOK_PARSE_SPECIAL, prompt, 6, &n, &err), LM_OK);
    lm_gen_params gp = greedy(8);
    gp.ignore_eos = true;
    gp.token_fn = on_token;
    lp_rec rec;
    memset(&rec, 0, sizeof rec);
    gp.token_user = &rec;
    gp.top_logprobs = 5;
    assert_int_equal(lm_session_generate(s, prompt, n, &gp, NULL, NULL, NULL), LM_OK);
    assert_int_equal(rec.n, 8);
    for (int i = 0; i < rec.n; i++) {
        assert_int_equal(rec.n_top[i], 5);
        assert_int_equal(rec.top0[i], rec.ids[i]); /* greedy takes the most likely */
        assert_true(rec.lp[i] <= 0.0f && fabsf(rec.lp[i] - rec.top_lp[i][0]) < 1e-6f);
        double total = 0;
        for (int k = 0; k < 5; k++) {
            if (k) assert_true(rec.top_lp[i][k] <= rec.top_lp[i][k - 1]);
            total += exp(rec.top_lp[i][k]);
        }
        assert_true(total <= 1.0 + 1e-5);
    }
    /* the first token's numbers against the logits of an evaluation of the same prompt */
    size_t nv = (size_t)lm_model_n_vocab(g_model);
    float *logits = malloc(nv * sizeof(float));
    lm_session *s2 = NULL;
    assert_int_equal(lm_session_new(g_engine, NULL, &s2, &err), LM_OK);
    assert_int_equal(lm_session_eval(s2, prompt, n, logits, NULL), LM_OK);
    double mx = logits[0], sum = 0;
    for (size_t i = 1; i < nv; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (size_t i = 0; i < nv; i++) sum += exp(logits[i] - mx);
    double want = logits[rec.ids[0]] - mx - log(sum);
    assert_true(fabs(want - rec.lp[0]) < 1e-4);
    /* without token_fn nothing is computed; with top_logprobs -1 no alternatives */
    gp.top_logprobs = -1;
    memset(&rec, 0, sizeof rec);
    assert_int_equal(lm_session_truncate(s, 0), LM_OK);
    assert_int_equal(lm_session_generate(s, prompt, n, &gp, NULL, NULL, NULL), LM_OK);
    assert_int_equal(rec.n, 8);
    assert_int_equal(rec.n_top[0], 0);
    /* token_fn returning non-zero stops, keeping the token */
    free(logits);
    lm_session_free(s2);
    lm_session_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_replies),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_reuse_logits),
        cmocka_unit_test(test_partial_prefill),
        cmocka_unit_test(test_cancel_prefill),
        cmocka_unit_test(test_callback_stop_and_stop_strings),
        cmocka_unit_test(test_trimming),
        cmocka_unit_test(test_warmup_unload_reload),
        cmocka_unit_test(test_load_progress_cancel),
        cmocka_unit_test(test_response_cache),
        cmocka_unit_test(test_logprobs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
