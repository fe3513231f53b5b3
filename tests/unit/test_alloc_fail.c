/* tests/unit/test_alloc_fail.c: allocation-failure injection over whole loads of real fixtures.
 * For N = 1, 2, ... the Nth allocation fails (lm_alloc_fail_at): the load must return
 * LM_ERR_NOMEM with a message, hand out nothing, and free everything it had allocated; once N
 * passes the number of allocations the load succeeds and the result is checked. A load may also
 * succeed with an optional allocation failed (pcre2's JIT compile, which falls back to the
 * interpreter): the result is checked the same way and counted as recovered. Covered: models
 * (stories260K GGUF f32 and q8_0, its HF folder, tinychat, an MLX q4 folder), tokenizers
 * (stories260K and tinychat tokenizer.json; llama2's 32k one for the first 2000 N and then a
 * stride) and templates (Jinja parse + render of real chat templates, chat_render).
 *
 * Leaks are caught during the sweep, not only at exit: under AddressSanitizer with LSan's
 * recoverable check, which names the failing allocation within LEAK_EVERY. */
#include "testutil.h"

#include "chat/chat.h"
#include "tokenizer/tokenizer.h"
#include "locallm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AF_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define AF_ASAN 1
#endif
#ifdef AF_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* One attempt: does the whole load (and its check, on success) and frees what it made.
 * Returns the load's status; err is filled on failure. */
typedef lm_status (*attempt_fn)(const void *arg, lm_error *err);

/* LeakSanitizer's check scans the whole heap (a few ms): it runs every LEAK_EVERY attempts and
 * after the last one. A leak stays unreachable, so it is still found, within LEAK_EVERY of the N
 * that made it. Without AddressSanitizer this test checks statuses and results only (the
 * ASan+UBSan ctest run checks the leaks). */
#define LEAK_EVERY 16

static void check_no_leak(const char *what, long n, bool last) {
#ifdef AF_ASAN
    if ((n % LEAK_EVERY == 0 || last) && __lsan_do_recoverable_leak_check())
        fail_msg("%s: leak with one of the allocations %ld..%ld failing (LeakSanitizer report above)",
                 what, n > LEAK_EVERY ? n - LEAK_EVERY + 1 : 1, n);
#else
    (void)what, (void)n, (void)last;
#endif
}

/* Sweeps N from 1 until the load succeeds. Up to dense, every N; past it, every stride-th N
 * (stride 1: all). Returns the number of allocations of a full load. */
static long sweep(const char *what, attempt_fn fn, const void *arg, long dense, long stride) {
    lm_error err = {0};
    /* A first full load: lazily made process-wide state (locale, regex tables, stdio) exists
     * before the leak check compares. Counts the allocations as well. */
    lm_alloc_fail_at(0);
    lm_alloc_fail_at(-1); /* armed at a count never reached: just counts */
    lm_status st = fn(arg, &err);
    long total = lm_alloc_count();
    lm_alloc_fail_at(0);
    if (st != LM_OK) fail_msg("%s: plain load failed: %s", what, err.msg);
    assert_true(total > 0);
    long tried = 0, fallbacks = 0;
    for (long n = 1;; n = n < dense ? n + 1 : n + stride) {
        memset(&err, 0, sizeof err);
        lm_alloc_fail_at(n);
        st = fn(arg, &err);
        bool fired = lm_alloc_failed();
        lm_alloc_fail_at(0);
        tried++;
        if (!fired) {
            /* past the last allocation: the load succeeded and was checked */
            if (st != LM_OK) fail_msg("%s: no allocation failed at %ld but got %d: %s", what, n, st, err.msg);
            assert_true(n > total);
            check_no_leak(what, n, true);
            break;
        }
        if (st == LM_OK) {
            /* an optional allocation (pcre2's JIT, a cache) failed and the load went on without
             * it; fn checked that the result works */
            fallbacks++;
            check_no_leak(what, n, false);
            continue;
        }
        if (st != LM_ERR_NOMEM)
            fail_msg("%s: allocation %ld of %ld failing gave status %d (%s), expected LM_ERR_NOMEM",
                     what, n, total, st, err.msg);
        if (err.msg[0] == 0) fail_msg("%s: allocation %ld failing left no message", what, n);
        check_no_leak(what, n, false);
        if (n > total + stride + 1) fail_msg("%s: still failing at %ld, past %ld allocations", what, n, total);
    }
    printf("  %-36s %6ld allocations, %6ld failure points tried, %ld of them recovered\n", what,
           total, tried, fallbacks);
    return total;
}

/* Every N for a load of the file or folder at path (copied first: tu_data's buffers rotate). */
static void sweep_path(const char *what, attempt_fn fn, const char *path) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    sweep(what, fn, p, 1L << 30, 1);
}

/* ---- models ---- */

static lm_status load_model(const void *arg, lm_error *err) {
    const char *path = arg;
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = 1;
    lm_model *m = NULL;
    lm_status st = lm_model_load(path, &mp, &m, err);
    if (st != LM_OK) {
        assert_null(m);
        return st;
    }
    lm_model_info info;
    lm_model_get_info(m, &info);
    assert_true(info.n_vocab > 0);
    assert_true(info.n_layer > 0 && info.quant && strstr(info.quant, "attn: "));
    lm_model_free(m);
    return LM_OK;
}

static void test_model_gguf(void **state) {
    (void)state;
    sweep_path("stories260K-f32.gguf", load_model, tu_data("stories260K/stories260K-f32.gguf"));
    sweep_path("stories260K-q8_0.gguf", load_model, tu_data("stories260K/stories260K-q8_0.gguf"));
}

static lm_status load_model_read(const void *arg, lm_error *err) {
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = 1;
    mp.use_mmap = false;
    lm_model *m = NULL;
    lm_status st = lm_model_load(arg, &mp, &m, err);
    if (st == LM_OK) lm_model_free(m);
    else assert_null(m);
    return st;
}

static void test_model_gguf_read(void **state) {
    (void)state;
    sweep_path("stories260K-q8_0.gguf (no mmap)", load_model_read, tu_data("stories260K/stories260K-q8_0.gguf"));
}

static void test_model_hf(void **state) {
    (void)state;
    sweep_path("stories260K/hf", load_model, tu_data("stories260K/hf"));
    sweep_path("models/llama3-mlx-q4 (MLX)", load_model, tu_data("models/llama3-mlx-q4"));
}

static void test_model_tinychat(void **state) {
    (void)state;
    sweep_path("models/tinychat", load_model, tu_src("models/tinychat"));
}

/* lm_model_params.vocab_only: the tokenizer and template alone */
static lm_status load_vocab(const void *arg, lm_error *err) {
    lm_model_params mp = lm_model_default_params();
    mp.vocab_only = true;
    lm_model *m = NULL;
    lm_status st = lm_model_load(arg, &mp, &m, err);
    if (st != LM_OK) {
        assert_null(m);
        return st;
    }
    assert_true(lm_model_n_vocab(m) > 0);
    lm_model_free(m);
    return LM_OK;
}

static void test_model_vocab_only(void **state) {
    (void)state;
    sweep_path("stories260K-f32.gguf (vocab_only)", load_vocab, tu_data("stories260K/stories260K-f32.gguf"));
    sweep_path("models/tinychat (vocab_only)", load_vocab, tu_src("models/tinychat"));
}

/* A folder whose chat_template.jinja (which wins over tokenizer_config.json's template) cannot
 * be read or allocated must fail the load, never fall back to tokenizer_config.json's template:
 * on success the rendered prompt must come from the file. */
#define TEMPLATE_MARK "FROM-CHAT-TEMPLATE-JINJA"

static lm_status load_model_template(const void *arg, lm_error *err) {
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = 1;
    lm_model *m = NULL;
    lm_status st = lm_model_load(arg, &mp, &m, err);
    if (st != LM_OK) {
        assert_null(m);
        return st;
    }
    lm_message msg = {"user", "hi", NULL, NULL, NULL};
    char out[256];
    size_t len = 0;
    st = lm_model_chat_render(m, &msg, 1, NULL, out, sizeof out, &len, err);
    if (st == LM_OK && !strstr(out, TEMPLATE_MARK))
        fail_msg("the load succeeded with another template than chat_template.jinja: '%s'", out);
    lm_model_free(m);
    return st;
}

static void link_tinychat(const char *dir) {
    static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors",
                                        "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < LM_ARRAY_LEN(files); i++) {
        char from[4200], to[4200];
        snprintf(from, sizeof from, "%s/%s", tu_src("models/tinychat"), files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        assert_int_equal(symlink(from, to), 0);
    }
}

static void test_model_template_file(void **state) {
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_temp_dir());
    link_tinychat(dir);
    tu_put_in(dir, "chat_template.jinja",
              TEMPLATE_MARK "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}");
    sweep("tinychat + chat_template.jinja", load_model_template, dir, 1L << 30, 1);
    /* a chat_template.jinja that exists but cannot be read (here: a folder) fails the load with
     * its own error */
    char dir2[4096], p2[4200];
    snprintf(dir2, sizeof dir2, "%s", tu_temp_dir());
    link_tinychat(dir2);
    snprintf(p2, sizeof p2, "%s/chat_template.jinja", dir2);
    assert_int_equal(mkdir(p2, 0755), 0);
    lm_model *m = NULL;
    lm_error err = {0};
    assert_int_equal(lm_model_load(dir2, NULL, &m, &err), LM_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(err.msg, "chat_template.jinja"));
}

/* ---- tokenizers ---- */

typedef struct tok_case {
    const char *json;
    size_t len;
    const char *config;
    size_t config_len;
} tok_case;

static lm_status load_tok(const void *arg, lm_error *err) {
    const tok_case *c = arg;
    tok_tokenizer *t = NULL;
    lm_status st = tok_load_json_text(c->json, c->len, c->config, c->config_len, "tokenizer.json", &t, err);
    if (st != LM_OK) {
        assert_null(t);
        return st;
    }
    /* a loaded tokenizer round-trips text */
    tok_vec v = {0};
    lm_status st2 = tok_encode(t, "Once upon a time", 16, 0, &v, err);
    if (st2 == LM_OK) {
        lm_buf out = {0};
        st2 = tok_decode(t, v.ids, v.n, true, &out, err);
        if (st2 == LM_OK && out.oom) st2 = lm_fail_nomem(err, "decoded text");
        if (st2 == LM_OK) assert_true(out.len > 0 && strstr(out.data, "upon a time"));
        lm_buf_free(&out);
    }
    tok_vec_free(&v);
    tok_free(t);
    /* the round trip allocates too: a failure there is a NOMEM as well */
    return st2;
}

static void sweep_tok(const char *dir_rel, bool in_src, long dense, long stride) {
    char jp[4096], cp[4096];
    snprintf(jp, sizeof jp, "%s/tokenizer.json", in_src ? tu_src(dir_rel) : tu_data(dir_rel));
    snprintf(cp, sizeof cp, "%s/tokenizer_config.json", in_src ? tu_src(dir_rel) : tu_data(dir_rel));
    tok_case c = {0};
    c.json = tu_read(jp, &c.len);
    FILE *f = fopen(cp, "rb");
    if (f) {
        fclose(f);
        c.config = tu_read(cp, &c.config_len);
    }
    sweep(dir_rel, load_tok, &c, dense, stride);
    lm_free((void *)c.json);
    lm_free((void *)c.config);
}

static void test_tokenizer_small(void **state) {
    (void)state;
    sweep_tok("stories260K/hf", false, 1L << 30, 1);
    sweep_tok("models/tinychat", true, 1L << 30, 1);
}

static void test_tokenizer_llama2(void **state) {
    (void)state;
    /* 32000 pieces and 61000 merges: every N up to 2000, then every 97th */
    sweep_tok("tokenizers/llama2", false, 2000, 97);
}

/* ---- templates ---- */

static const char MESSAGES[] =
    "[{\"role\":\"system\",\"content\":\"You are brief.\"},"
    "{\"role\":\"user\",\"content\":\"What is the weather in Paris?\"},"
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"type\":\"function\",\"function\":"
    "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},"
    "{\"role\":\"tool\",\"content\":\"{\\\"t\\\":18}\"},"
    "{\"role\":\"assistant\",\"content\":\"18 degrees.\"},"
    "{\"role\":\"user\",\"content\":\"Thanks \\u00e9\"}]";
static const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";

typedef struct tpl_case {
    const char *src;
    const cJSON *messages;
    const cJSON *tools;
    const char *expect; /* a piece of the rendered text */
} tpl_case;

static int64_t fixed_now(void *u) {
    (void)u;
    return 1721952000;
}

static lm_status render_tpl(const void *arg, lm_error *err) {
    const tpl_case *c = arg;
    lm_buf out = {0};
    chat_vars v = {"<s>", "</s>", true, c->tools, NULL};
    jinja_opts o = jinja_default_opts();
    o.now = fixed_now;
    lm_status st = chat_render(c->src, c->messages, &v, &o, &out, err);
    if (st == LM_OK && out.oom) st = lm_fail_nomem(err, "output");
    if (st == LM_OK) assert_non_null(strstr(out.data, c->expect));
    lm_buf_free(&out);
    return st;
}

static void test_templates(void **state) {
    (void)state;
    lm_error err = {0};
    cJSON *msgs = NULL, *tools = NULL;
    assert_int_equal(lm_json_parse(MESSAGES, sizeof MESSAGES - 1, "messages", &msgs, &err), LM_OK);
    assert_int_equal(lm_json_parse(TOOLS, sizeof TOOLS - 1, "tools", &tools, &err), LM_OK);
    const char *names[] = {"qwen2.5-instruct.jinja", "llama-3.2-instruct.jinja",
                           "mistral-7b-instruct-v0.3.jinja", "phi-3-mini-4k-instruct.jinja",
                           "llama-2-chat.jinja", "extra-qwen3.jinja"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "templates/%s", names[i]);
        size_t len;
        char *src = tu_read(tu_data(rel), &len);
        /* llama-2 and mistral reject tool messages: render them without the tool turns */
        bool simple = strstr(names[i], "llama-2") || strstr(names[i], "mistral") || strstr(names[i], "phi-3");
        cJSON *m = msgs;
        cJSON *plain = NULL;
        if (simple) {
            const char *pm = "[{\"role\":\"user\",\"content\":\"What is the weather in Paris?\"},"
                             "{\"role\":\"assistant\",\"content\":\"18 degrees.\"},"
                             "{\"role\":\"user\",\"content\":\"Thanks \\u00e9\"}]";
            assert_int_equal(lm_json_parse(pm, strlen(pm), "messages", &plain, &err), LM_OK);
            m = plain;
        }
        tpl_case c = {src, m, simple ? NULL : tools, "Thanks \xc3\xa9"};
        sweep(names[i], render_tpl, &c, 1L << 30, 1);
        cJSON_Delete(plain);
        lm_free(src);
    }
    cJSON_Delete(msgs);
    cJSON_Delete(tools);
}

int main(void) {
    tu_json_use_lm_alloc();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_gguf),
        cmocka_unit_test(test_model_gguf_read),
        cmocka_unit_test(test_model_hf),
        cmocka_unit_test(test_model_tinychat),
        cmocka_unit_test(test_model_vocab_only),
        cmocka_unit_test(test_tokenizer_small),
        cmocka_unit_test(test_tokenizer_llama2),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_model_template_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
