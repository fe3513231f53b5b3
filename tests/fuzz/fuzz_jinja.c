/* tests/fuzz/fuzz_jinja.c: the Jinja parser and renderer over arbitrary template text, rendered
 * with a fixed conversation (system, user, assistant with a tool call, tool result) and tools,
 * under tight limits so runaway templates end quickly. Errors are fine; crashes, hangs and leaks
 * are not. */
#include "chat/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char VARS[] =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi <|im_end|> \\u00e9\"},"
    "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":{\"city\":\"Paris\"}}}]},{\"role\":\"tool\",\"content\":\"{\\\"t\\\":18}\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}}],"
    "\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"n\":3,\"f\":1.5,\"l\":[1,2,3]}";

static int64_t fixed_now(void *u) {
    (void)u;
    return 1721952000; /* 2024-07-26 */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    jinja_template *t = NULL;
    lm_error err = {0};
    if (jinja_parse((const char *)data, size, &t, &err) != LM_OK) return 0;
    cJSON *vars = NULL;
    if (lm_json_parse(VARS, sizeof VARS - 1, "vars", &vars, &err) == LM_OK) {
        jinja_opts o = jinja_default_opts();
        o.max_output = 1 << 16;
        o.max_steps = 20000;
        o.max_depth = 50;
        o.now = fixed_now;
        lm_buf out = {0};
        jinja_render(t, vars, &o, &out, &err);
        lm_buf_free(&out);
        cJSON_Delete(vars);
    }
    jinja_free(t);
    return 0;
}
