/* tests/unit/test_chat.c: chat rendering against the Hugging Face renders in the fixtures, the
 * built-in formats, and tool-call parsing. */
#include "testutil.h"

#include "chat/chat.h"

#include <stdio.h>

static const struct {
    const char *family, *template_file;
} FAMILIES[] = {
    {"llama3", "templates/llama-3.2-instruct.jinja"},
    {"qwen2", "templates/qwen2.5-instruct.jinja"},
    {"mistral", "templates/mistral-7b-instruct-v0.3.jinja"},
    {"phi3", "templates/phi-3-mini-4k-instruct.jinja"},
    {"llama2", "templates/llama-2-chat.jinja"},
};

static const char *str_or_empty(const cJSON *j) { return cJSON_IsString(j) ? j->valuestring : ""; }

/* Renders one refs.json chat entry and compares with its text or error. */
static void check_entry(const char *family, const char *src, const cJSON *tokinfo, const cJSON *e) {
    const cJSON *tools = cJSON_GetObjectItem(e, "tools");
    chat_vars cv = {
        .bos_token = str_or_empty(cJSON_GetObjectItem(tokinfo, "bos_token")),
        .eos_token = str_or_empty(cJSON_GetObjectItem(tokinfo, "eos_token")),
        .add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(e, "add_generation_prompt")),
        .tools = cJSON_IsArray(tools) ? tools : NULL,
        .extra = cJSON_GetObjectItem(e, "template_kwargs"),
    };
    jinja_opts o = jinja_default_opts();
    lm_buf out = {0};
    lm_error err = {0};
    lm_status st = chat_render(src, cJSON_GetObjectItem(e, "messages"), &cv, &o, &out, &err);
    const cJSON *want_err = cJSON_GetObjectItem(e, "error");
    const char *id = str_or_empty(cJSON_GetObjectItem(e, "id"));
    if (want_err) {
        if (st != LM_ERR_TEMPLATE) fail_msg("%s/%s: expected a template error, got %d", family, id, st);
        const char *m = str_or_empty(cJSON_GetObjectItem(want_err, "message"));
        if (!strstr(err.msg, m)) fail_msg("%s/%s: error '%s' lacks '%s'", family, id, err.msg, m);
    } else {
        if (st) fail_msg("%s/%s: %s", family, id, err.msg);
        const char *want = str_or_empty(cJSON_GetObjectItem(e, "text"));
        if (strcmp(out.data ? out.data : "", want) != 0)
            fail_msg("%s/%s:\n--- got ---\n%s\n--- want ---\n%s", family, id, out.data ? out.data : "", want);
    }
    lm_buf_free(&out);
}

static void test_family_refs(void **state) {
    (void)state;
    for (size_t f = 0; f < LM_ARRAY_LEN(FAMILIES); f++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/%s/refs.json", FAMILIES[f].family);
        cJSON *refs = tu_json(tu_data(rel));
        char *src = tu_read(tu_data(FAMILIES[f].template_file), NULL);
        const cJSON *chat = cJSON_GetObjectItem(refs, "chat");
        assert_true(cJSON_GetArraySize(chat) >= 10);
        const cJSON *e;
        cJSON_ArrayForEach(e, chat) check_entry(FAMILIES[f].family, src, cJSON_GetObjectItem(refs, "tokenizer"), e);
        lm_free(src);
        cJSON_Delete(refs);
    }
}

/* The chat_template inside each tokenizer_config.json is the same template: same renders. */
static void test_tokenizer_config_templates(void **state) {
    (void)state;
    for (size_t f = 0; f < LM_ARRAY_LEN(FAMILIES); f++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer_config.json", FAMILIES[f].family);
        if (!lm_path_exists(tu_data(rel))) continue;
        cJSON *cfg = tu_json(tu_data(rel));
        const cJSON *tpl = cJSON_GetObjectItem(cfg, "chat_template");
        if (!cJSON_IsString(tpl)) {
            cJSON_Delete(cfg);
            continue;
        }
        snprintf(rel, sizeof rel, "tokenizers/%s/refs.json", FAMILIES[f].family);
        cJSON *refs = tu_json(tu_data(rel));
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItem(refs, "chat"))
            check_entry(FAMILIES[f].family, tpl->valuestring, cJSON_GetObjectItem(refs, "tokenizer"), e);
        cJSON_Delete(refs);
        cJSON_Delete(cfg);
    }
}

static void test_extra_templates(void **state) {
    (void)state;
    cJSON *convs = tu_json(tu_data("tokenizers/conversations.json"));
    size_t checked = 0;
    for (size_t f = 0; f < LM_ARRAY_LEN(FAMILIES); f++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/%s/refs.json", FAMILIES[f].family);
        cJSON *refs = tu_json(tu_data(rel));
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItem(refs, "extra_template_renders")) {
            snprintf(rel, sizeof rel, "templates/%s", str_or_empty(cJSON_GetObjectItem(x, "template_file")));
            char *src = tu_read(tu_data(rel), NULL);
            const char *cid = str_or_empty(cJSON_GetObjectItem(x, "conversation_id"));
            const cJSON *conv = NULL, *c;
            cJSON_ArrayForEach(c, cJSON_GetObjectItem(convs, "conversations"))
                if (strcmp(str_or_empty(cJSON_GetObjectItem(c, "id")), cid) == 0) conv = c;
            assert_non_null(conv);
            cJSON *e = cJSON_Duplicate(conv, true);
            cJSON_AddItemToObject(e, "template_kwargs", cJSON_Duplicate(cJSON_GetObjectItem(x, "template_kwargs"), true));
            const cJSON *text = cJSON_GetObjectItem(x, "text"), *error = cJSON_GetObjectItem(x, "error");
            if (text) cJSON_AddItemToObject(e, "text", cJSON_Duplicate(text, true));
            if (error) cJSON_AddItemToObject(e, "error", cJSON_Duplicate(error, true));
            check_entry(str_or_empty(cJSON_GetObjectItem(x, "template_file")), src, cJSON_GetObjectItem(refs, "tokenizer"), e);
            cJSON_Delete(e);
            lm_free(src);
            checked++;
        }
        cJSON_Delete(refs);
    }
    assert_true(checked >= 10);
    cJSON_Delete(convs);
}

/* tinychat's prompts were rendered with the Qwen2.5 template. */
static void test_tinychat_prompts(void **state) {
    (void)state;
    cJSON *refs = tu_json(tu_src("models/tinychat/refs.json"));
    char *src = tu_read(tu_data("templates/qwen2.5-instruct.jinja"), NULL);
    size_t n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(refs, "prompts")) {
        const cJSON *tools = cJSON_GetObjectItem(p, "tools");
        chat_vars cv = {"", "<|im_end|>", cJSON_IsTrue(cJSON_GetObjectItem(p, "add_generation_prompt")),
                        cJSON_IsArray(tools) ? tools : NULL, NULL};
        jinja_opts o = jinja_default_opts();
        lm_buf out = {0};
        lm_error err = {0};
        lm_status st = chat_render(src, cJSON_GetObjectItem(p, "messages"), &cv, &o, &out, &err);
        if (st) fail_msg("%s: %s", str_or_empty(cJSON_GetObjectItem(p, "name")), err.msg);
        assert_string_equal(out.data, str_or_empty(cJSON_GetObjectItem(p, "prompt_text")));
        lm_buf_free(&out);
        n++;
    }
    assert_true(n > 0);
    lm_free(src);
    cJSON_Delete(refs);
}

static void render_builtin(const char *name, const char *msgs_json, bool gen, const char *want) {
    const char *src = chat_builtin_source(name);
    assert_non_null(src);
    cJSON *msgs = NULL;
    lm_error err = {0};
    assert_int_equal(lm_json_parse(msgs_json, strlen(msgs_json), "test", &msgs, &err), LM_OK);
    chat_vars cv = {"<s>", "</s>", gen, NULL, NULL};
    if (strcmp(name, "llama3") == 0) cv = (chat_vars){"<|begin_of_text|>", "<|eot_id|>", gen, NULL, NULL};
    jinja_opts o = jinja_default_opts();
    lm_buf out = {0};
    lm_status st = chat_render(src, msgs, &cv, &o, &out, &err);
    if (st) fail_msg("%s: %s", name, err.msg);
    assert_string_equal(out.data, want);
    lm_buf_free(&out);
    cJSON_Delete(msgs);
}

static void test_builtins(void **state) {
    (void)state;
    const char *m = "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi\"},"
                    "{\"role\":\"assistant\",\"content\":\"Hello.\"},{\"role\":\"user\",\"content\":\"Bye\"}]";
    render_builtin("llama3", m, true,
                   "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n");
    render_builtin("mistral", m, true, "<s>[INST] Be brief.\n\nHi [/INST] Hello.</s>[INST] Bye [/INST]");
    render_builtin("chatml", m, true,
                   "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                   "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n");
    render_builtin("zephyr", m, false,
                   "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n<|user|>\nBye</s>\n");
    assert_null(chat_builtin_source("nope"));
    assert_null(chat_builtin_source(NULL));
}

static void test_render_errors(void **state) {
    (void)state;
    cJSON *msgs = cJSON_CreateArray();
    chat_vars cv = {"", "", true, NULL, NULL};
    lm_buf out = {0};
    lm_error err = {0};
    assert_int_equal(chat_render("{% if x %}", msgs, &cv, NULL, &out, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "line 1"));
    assert_non_null(strstr(err.msg, "endif"));
    assert_int_equal(chat_render("{{ raise_exception('no ' ~ 'way') }}", msgs, &cv, NULL, &out, &err), LM_ERR_TEMPLATE);
    assert_non_null(strstr(err.msg, "no way"));
    assert_int_equal(out.len, 0);
    cJSON *obj = cJSON_CreateObject();
    assert_int_equal(chat_render("x", obj, &cv, NULL, &out, &err), LM_ERR_MISUSE);
    cJSON_Delete(obj);
    /* extra members are variables; the named ones win */
    cJSON *extra = cJSON_CreateObject();
    cJSON_AddStringToObject(extra, "date_string", "1 Jan 2025");
    cJSON_AddStringToObject(extra, "bos_token", "WRONG");
    cv.extra = extra;
    cv.bos_token = "<s>";
    assert_int_equal(chat_render("{{ bos_token }}{{ date_string }}{{ messages|length }}", msgs, &cv, NULL, &out, &err), LM_OK);
    assert_string_equal(out.data, "<s>1 Jan 20250");
    lm_buf_free(&out);
    cJSON_Delete(extra);
    cJSON_Delete(msgs);
}

/* ---- tool calls ---- */

static void test_tools_hermes(void **state) {
    (void)state;
    const char *t = "Let me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>\n"
                    "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
    chat_tool_call *calls = NULL;
    size_t n = 0, content = 0;
    lm_error err = {0};
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_HERMES, t, strlen(t), &calls, &n, &content, &err), LM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(content, strlen("Let me check."));
    assert_string_equal(calls[0].name, "get_weather");
    assert_string_equal(calls[0].arguments, "{\"city\":\"Paris\",\"unit\":\"c\"}");
    assert_string_equal(calls[1].name, "get_time");
    assert_string_equal(calls[1].arguments, "{}");
    assert_non_null(calls[0].id);
    chat_tool_calls_free(calls, n);

    const char *plain = "No tools here.";
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_HERMES, plain, strlen(plain), &calls, &n, &content, &err), LM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(content, strlen(plain));
    assert_null(calls);

    const char *bad = "<tool_call>\n{\"name\": 3}\n</tool_call>";
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_HERMES, bad, strlen(bad), &calls, &n, &content, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "'name'"));
    const char *trunc = "<tool_call>\n{\"name\": \"x\", \"arguments\": {";
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_HERMES, trunc, strlen(trunc), &calls, &n, &content, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "hermes"));
}

static void test_tools_llama3_mistral(void **state) {
    (void)state;
    chat_tool_call *calls = NULL;
    size_t n = 0, content = 0;
    lm_error err = {0};
    const char *bare = " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}} ";
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_LLAMA3, bare, strlen(bare), &calls, &n, &content, &err), LM_OK);
    assert_int_equal(n, 1);
    assert_int_equal(content, 0);
    assert_string_equal(calls[0].name, "get_weather");
    assert_string_equal(calls[0].arguments, "{\"city\":\"Paris\"}");
    chat_tool_calls_free(calls, n);

    const char *tag = "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": [1, 2]}}";
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_LLAMA3, tag, strlen(tag), &calls, &n, &content, &err), LM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(calls[0].arguments, "{\"a\":[1,2]}");
    chat_tool_calls_free(calls, n);

    const char *json_text = "{\"answer\": 42}";
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_LLAMA3, json_text, strlen(json_text), &calls, &n, &content, &err), LM_OK);
    assert_int_equal(n, 0);
    assert_int_equal(content, strlen(json_text));

    const char *mi = "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"x\": 1}, \"id\": \"abcDEF123\"}, {\"name\": \"b\", \"arguments\": \"{\\\"y\\\": true}\"}]";
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_MISTRAL, mi, strlen(mi), &calls, &n, &content, &err), LM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(content, 0);
    assert_string_equal(calls[0].id, "abcDEF123");
    assert_string_equal(calls[0].arguments, "{\"x\":1}");
    assert_string_equal(calls[1].name, "b");
    assert_string_equal(calls[1].arguments, "{\"y\":true}");
    assert_int_equal(strlen(calls[1].id), 9);
    chat_tool_calls_free(calls, n);

    const char *mbad = "[TOOL_CALLS] nope";
    assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_MISTRAL, mbad, strlen(mbad), &calls, &n, &content, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "[TOOL_CALLS]"));
}

/* The fixture's tool-call turn, rendered by the Qwen template, parses back to the same call. */
static void test_tools_roundtrip(void **state) {
    (void)state;
    cJSON *refs = tu_json(tu_data("tokenizers/qwen2/refs.json"));
    char *src = tu_read(tu_data("templates/qwen2.5-instruct.jinja"), NULL);
    size_t checked = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(refs, "chat")) {
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(e, "messages")) {
            const cJSON *tcs = cJSON_GetObjectItem(m, "tool_calls");
            if (!cJSON_IsArray(tcs)) continue;
            /* render this assistant turn alone and cut its body out */
            cJSON *one = cJSON_CreateArray();
            cJSON_AddItemToArray(one, cJSON_Duplicate(m, true));
            chat_vars cv = {"", "<|im_end|>", false, NULL, NULL};
            lm_buf out = {0};
            lm_error err = {0};
            assert_int_equal(chat_render(src, one, &cv, NULL, &out, &err), LM_OK);
            const char *body = strstr(out.data, "<|im_start|>assistant");
            assert_non_null(body);
            body += strlen("<|im_start|>assistant");
            chat_tool_call *calls = NULL;
            size_t n = 0, content = 0;
            assert_int_equal(chat_parse_tool_calls(CHAT_TOOLS_HERMES, body, strlen(body), &calls, &n, &content, &err), LM_OK);
            assert_int_equal(n, (size_t)cJSON_GetArraySize(tcs));
            size_t i = 0;
            const cJSON *tc;
            cJSON_ArrayForEach(tc, tcs) {
                const cJSON *fn = cJSON_GetObjectItem(tc, "function");
                assert_string_equal(calls[i].name, cJSON_GetObjectItem(fn, "name")->valuestring);
                char *want = lm_json_print(cJSON_GetObjectItem(fn, "arguments"));
                assert_string_equal(calls[i].arguments, want);
                lm_free(want);
                i++;
            }
            chat_tool_calls_free(calls, n);
            lm_buf_free(&out);
            cJSON_Delete(one);
            checked++;
        }
    }
    assert_true(checked > 0);
    lm_free(src);
    cJSON_Delete(refs);
}

/* tinychat replies that call tools are in the Hermes format. */
static void test_tools_tinychat(void **state) {
    (void)state;
    cJSON *refs = tu_json(tu_src("models/tinychat/refs.json"));
    size_t checked = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(refs, "prompts")) {
        const char *reply = str_or_empty(cJSON_GetObjectItem(p, "reply_text"));
        if (!strstr(reply, "<tool_call>")) continue;
        chat_tool_call *calls = NULL;
        size_t n = 0, content = 0;
        lm_error err = {0};
        lm_status st = chat_parse_tool_calls(CHAT_TOOLS_HERMES, reply, strlen(reply), &calls, &n, &content, &err);
        if (st) fail_msg("%s: %s", reply, err.msg);
        assert_true(n >= 1);
        for (size_t i = 0; i < n; i++) {
            assert_true(calls[i].name[0] != 0);
            assert_true(calls[i].arguments[0] == '{');
        }
        chat_tool_calls_free(calls, n);
        checked++;
    }
    assert_true(checked > 0);
    cJSON_Delete(refs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_refs),
        cmocka_unit_test(test_tokenizer_config_templates),
        cmocka_unit_test(test_extra_templates),
        cmocka_unit_test(test_tinychat_prompts),
        cmocka_unit_test(test_builtins),
        cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_tools_hermes),
        cmocka_unit_test(test_tools_llama3_mistral),
        cmocka_unit_test(test_tools_roundtrip),
        cmocka_unit_test(test_tools_tinychat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
