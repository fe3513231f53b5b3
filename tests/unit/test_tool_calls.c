/* tests/unit/test_tool_calls.c: tinychat (models/tinychat) on the 200 tool-call questions of its
 * evaluation set (tests/data/tinychat/tool_call_eval.json), greedy, as tool_choice "required"
 * with parallel calls allowed: the reply is constrained by chat_tool_grammar (Hermes format).
 * Every reply must hold at least one call that chat_parse_tool_calls reads and whose arguments
 * the tool's parameters schema accepts (checked by a small validator here). It prints the
 * fraction with the right function and arguments (first call against the expected one) with
 * and without the constraint; without it, fewer replies parse (the model's own JSON), and the
 * constrained run must not get fewer right. Under AddressSanitizer (memory checks, not
 * figures) only the first 50 questions run, constrained. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

#include "chat/chat.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* JSON Schema validation for what the tools use: type, properties, required, enum, items;
 * no other keys than the listed properties (as the grammar writes them). */
static bool valid(const cJSON *v, const cJSON *schema) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(schema, "enum");
    if (en) {
        const cJSON *e;
        bool found = false;
        cJSON_ArrayForEach(e, en) found |= cJSON_Compare(e, v, true);
        if (!found) return false;
    }
    if (!cJSON_IsString(type)) return true;
    const char *t = type->valuestring;
    if (strcmp(t, "string") == 0) return cJSON_IsString(v);
    if (strcmp(t, "number") == 0) return cJSON_IsNumber(v);
    if (strcmp(t, "integer") == 0) return cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble;
    if (strcmp(t, "boolean") == 0) return cJSON_IsBool(v);
    if (strcmp(t, "null") == 0) return cJSON_IsNull(v);
    if (strcmp(t, "array") == 0) {
        if (!cJSON_IsArray(v)) return false;
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items"), *e;
        cJSON_ArrayForEach(e, v) if (items && !valid(e, items)) return false;
        return true;
    }
    if (strcmp(t, "object") != 0 || !cJSON_IsObject(v)) return false;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required"), *e;
    cJSON_ArrayForEach(e, req) if (!cJSON_GetObjectItemCaseSensitive(v, e->valuestring)) return false;
    cJSON_ArrayForEach(e, v) {
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(props, e->string);
        if (!ps || !valid(e, ps)) return false;
    }
    return true;
}

static int collect(const char *utf8, size_t len, void *user) {
    lm_buf_append(user, utf8, len);
    return 0;
}

typedef struct tally {
    int n, parsed, valid_calls, right;
    double ms;
} tally;

static void run(lm_session *s, const cJSON *items, bool constrained, int limit, tally *t) {
    memset(t, 0, sizeof *t);
    double t0 = lm_time_ms();
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        if (t->n == limit) break;
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(it, "messages");
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(it, "tools");
        const cJSON *expected = cJSON_GetObjectItemCaseSensitive(it, "expected");
        lm_message mv[8];
        size_t nm = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, msgs) {
            assert_true(nm < 8);
            mv[nm++] = (lm_message){cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring,
                                    cJSON_GetObjectItemCaseSensitive(m, "content")->valuestring, NULL, NULL, NULL};
        }
        char *tools_json = lm_json_print(tools);
        lm_chat_params cp = lm_chat_default_params();
        cp.tools_json = tools_json;
        lm_gen_params gp = lm_gen_default_params();
        gp.temperature = 0;
        gp.max_tokens = 120;
        lm_buf grammar = {0}, out = {0};
        lm_error err = {0};
        if (constrained) {
            assert_int_equal(chat_tool_grammar(tools_json, CHAT_TOOLS_HERMES, NULL, true, &grammar, &err), LM_OK);
            gp.grammar = grammar.data;
        }
        lm_gen_stats st;
        if (lm_session_chat(s, mv, nm, &cp, &gp, collect, &out, &st)) fail_msg("%s", lm_session_errmsg(s));
        chat_tool_call *calls = NULL;
        size_t nc = 0, content = 0;
        const char *text = out.data ? out.data : "";
        bool parsed = chat_parse_tool_calls(CHAT_TOOLS_HERMES, text, out.len, &calls, &nc, &content, &err) == LM_OK &&
                      nc > 0;
        bool all_valid = parsed;
        for (size_t k = 0; k < nc && all_valid; k++) {
            const cJSON *tool = NULL, *tl;
            cJSON_ArrayForEach(tl, tools) {
                const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tl, "function");
                if (strcmp(cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring, calls[k].name) == 0) tool = fn;
            }
            cJSON *args = NULL;
            all_valid = tool && lm_json_parse(calls[k].arguments, strlen(calls[k].arguments), "arguments", &args, &err) == LM_OK &&
                        valid(args, cJSON_GetObjectItemCaseSensitive(tool, "parameters"));
            cJSON_Delete(args);
        }
        bool right = false;
        if (parsed) {
            cJSON *args = NULL;
            if (lm_json_parse(calls[0].arguments, strlen(calls[0].arguments), "arguments", &args, &err) == LM_OK)
                right = strcmp(calls[0].name, cJSON_GetObjectItemCaseSensitive(expected, "name")->valuestring) == 0 &&
                        cJSON_Compare(args, cJSON_GetObjectItemCaseSensitive(expected, "arguments"), true);
            cJSON_Delete(args);
        }
        if (constrained && !all_valid)
            fail_msg("item %d: the constrained reply does not hold valid calls (finish %s):\n%s", t->n,
                     lm_finish_str(st.finish), text);
        t->n++;
        t->parsed += parsed;
        t->valid_calls += all_valid;
        t->right += right;
        chat_tool_calls_free(calls, nc);
        lm_buf_free(&out);
        lm_buf_free(&grammar);
        lm_free(tools_json);
    }
    t->ms = lm_time_ms() - t0;
}

static void test_tinychat_tool_calls(void **state) {
    (void)state;
    cJSON *eval = tu_json(tu_data("tinychat/tool_call_eval.json"));
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(eval, "items");
    assert_int_equal(cJSON_GetArraySize(items), 200);
    lm_model *model = NULL;
    lm_error err = {0};
    lm_model_params mp = lm_model_default_params();
    mp.n_threads = 1; /* a 5M model: a second thread only waits at the barriers of a busy machine */
    if (lm_model_load(tu_src("models/tinychat"), &mp, &model, &err)) fail_msg("%s", err.msg);
    lm_engine *engine = NULL;
    assert_int_equal(lm_engine_new(model, NULL, &engine, &err), LM_OK);
    lm_session *s = NULL;
    assert_int_equal(lm_session_new(engine, NULL, &s, &err), LM_OK);
    tally with;
#ifdef UNDER_ASAN
    const int limit = 50;
#else
    const int limit = 200;
#endif
    run(s, items, true, limit, &with);
    assert_int_equal(with.n, limit);
    assert_int_equal(with.parsed, limit);
    assert_int_equal(with.valid_calls, limit);
    print_message("constrained:   %d/%d parse and match their schema, %d/%d right function and arguments (%.1f %%), %.0f ms\n",
                  with.valid_calls, with.n, with.right, with.n, 100.0 * with.right / with.n, with.ms);
#ifndef UNDER_ASAN
    tally without;
    run(s, items, false, limit, &without);
    print_message("unconstrained: %d/%d parse, %d match their schema, %d/%d right function and arguments (%.1f %%), %.0f ms\n",
                  without.parsed, without.n, without.valid_calls, without.right, without.n,
                  100.0 * without.right / without.n, without.ms);
    assert_true(without.parsed < 200); /* the model's own JSON does break: the constraint matters */
    assert_true(with.right >= without.right);
#endif
    lm_session_free(s);
    lm_engine_free(engine);
    lm_model_free(model);
    cJSON_Delete(eval);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tinychat_tool_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
