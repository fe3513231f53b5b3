/* tests/unit/test_json_schema.c: JSON Schema to grammar (values each schema must take, refuse or
 * see as unfinished; every whole match also parses as JSON), errors naming the JSON path of what
 * is wrong or cannot be enforced, JSON mode, and the tool-call grammars of chat_tool_grammar
 * (Hermes, Llama 3, Mistral; any tool or a named one; one call or several), whose matches
 * chat_parse_tool_calls reads back. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>

#include "chat/chat.h"
#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

enum { REJECT = 0, PREFIX = 1, WHOLE = 2 };

typedef struct take_case {
    const char *text;
    int want;
} take_case;

static smp_grammar *compile_text(const char *text) {
    smp_grammar *g = NULL;
    lm_error err = {0};
    if (smp_grammar_compile(text, strlen(text), &g, &err)) fail_msg("generated grammar does not compile: %s\n%s", err.msg, text);
    return g;
}

static int take(const smp_grammar *g, const char *s) {
    smp_matcher *m = NULL;
    lm_error err = {0};
    assert_int_equal(smp_matcher_new(g, NULL, NULL, 0, 1, &m, &err), LM_OK);
    int r = REJECT;
    if (smp_matcher_accept_bytes(m, s, strlen(s)) == LM_OK) r = smp_matcher_can_end(m) ? WHOLE : PREFIX;
    smp_matcher_free(m);
    return r;
}

static void check_grammar_text(const char *gtext, const char *what, const take_case *c, size_t n, bool json) {
    smp_grammar *g = compile_text(gtext);
    for (size_t i = 0; i < n; i++) {
        int got = take(g, c[i].text);
        if (got != c[i].want) fail_msg("%s\ntext %s: got %d, want %d\ngrammar:\n%s", what, c[i].text, got, c[i].want, gtext);
        if (json && got == WHOLE) {
            cJSON *j = NULL;
            lm_error err = {0};
            if (lm_json_parse(c[i].text, strlen(c[i].text), "match", &j, &err)) fail_msg("%s: %s", c[i].text, err.msg);
            cJSON_Delete(j);
        }
    }
    smp_grammar_free(g);
}

static void check_schema(const char *schema, const take_case *c, size_t n) {
    lm_buf out = {0};
    lm_error err = {0};
    lm_status st = smp_json_schema_grammar(schema, strlen(schema), 0, &out, &err);
    if (st) fail_msg("schema %s: %s", schema, err.msg);
    check_grammar_text(out.data, schema, c, n, true);
    lm_buf_free(&out);
}

static void test_objects(void **state) {
    (void)state;
    const take_case req[] = {
        {"{\"name\":\"Ann\",\"age\":30}", WHOLE},
        {"{\"name\": \"Ann\", \"age\": 30, \"email\": \"a@b\"}", WHOLE},
        {"{\n  \"name\": \"Ann\",\n  \"age\": -7\n}", WHOLE},
        {"{\"name\":\"Ann\",\"age\":30,\"email\":\"x\",\"tags\":[\"a\"]}", WHOLE},
        {"{\"name\":\"Ann\",\"age\":30", PREFIX},
        {"{\"name\":\"Ann\"}", REJECT},                   /* age is required */
        {"{\"age\":30,\"name\":\"Ann\"}", REJECT},        /* keys in the listed order */
        {"{\"name\":\"Ann\",\"age\":30,\"x\":1}", REJECT}, /* no other keys */
        {"{\"name\":5,\"age\":1}", REJECT},
        {"{\"name\":\"Ann\",\"age\":3.5}", REJECT},
        {"{\"name\":\"Ann\",\"age\":030}", REJECT},
        {"{\"name\":\"Ann\",\"age\":30,}", REJECT},
        {"{\"name\":\"A\\u00e9\\n\\\"\",\"age\":1}", WHOLE},
        {"{\"name\":\"A\nB\",\"age\":1}", REJECT},        /* a raw newline inside a string */
        {"{\"name\":\"Ann\",\"age\":30}  ", REJECT},  /* one space or one newline and indent */
        {" {\"name\":\"Ann\",\"age\":30}\n", WHOLE},
    };
    check_schema("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"description\":\"who\"},"
                 "\"age\":{\"type\":\"integer\"},\"email\":{\"type\":\"string\",\"format\":\"email\"},"
                 "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
                 "\"required\":[\"name\",\"age\"],\"additionalProperties\":false,\"title\":\"Person\"}",
                 req, LM_ARRAY_LEN(req));
    const take_case opt[] = {{"{}", WHOLE}, {"{\"a\":true}", WHOLE}, {"{\"b\":null}", WHOLE},
                             {"{\"a\":false,\"b\":null}", WHOLE}, {"{ }", WHOLE}, {"{,\"b\":null}", REJECT},
                             {"{\"b\":null,\"a\":true}", REJECT}, {"{\"a\":true,}", REJECT}};
    check_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":\"null\"}}}", opt,
                 LM_ARRAY_LEN(opt));
    /* optional, required, optional */
    const take_case mid[] = {{"{\"b\":1}", WHOLE}, {"{\"a\":1,\"b\":2}", WHOLE}, {"{\"b\":1,\"c\":2}", WHOLE},
                             {"{\"a\":1,\"b\":2,\"c\":3}", WHOLE}, {"{\"a\":1}", REJECT}, {"{\"a\":1,\"c\":3}", REJECT}};
    check_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"},\"b\":{\"type\":\"number\"},"
                 "\"c\":{\"type\":\"number\"}},\"required\":[\"b\"]}",
                 mid, LM_ARRAY_LEN(mid));
    /* additional properties by schema, after the listed ones */
    const take_case add[] = {{"{\"id\":1}", WHOLE}, {"{\"id\":1,\"x\":\"y\",\"z\":\"w\"}", WHOLE},
                             {"{\"id\":1,\"x\":2}", REJECT}, {"{\"x\":\"y\"}", REJECT}};
    check_schema("{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\"}},\"required\":[\"id\"],"
                 "\"additionalProperties\":{\"type\":\"string\"}}",
                 add, LM_ARRAY_LEN(add));
    /* an object without properties is any object; true and {} any value */
    const take_case any_obj[] = {{"{\"anything\":[1,{\"b\":null}],\"k\":\"v\"}", WHOLE}, {"{}", WHOLE}, {"[]", REJECT}};
    check_schema("{\"type\":\"object\"}", any_obj, LM_ARRAY_LEN(any_obj));
    const take_case any[] = {{"[1,\"a\",{}]", WHOLE}, {"-2.5e-3", WHOLE}, {"\"s\"", WHOLE}, {"nul", PREFIX}};
    check_schema("{}", any, LM_ARRAY_LEN(any));
    check_schema("true", any, LM_ARRAY_LEN(any));
    /* keys that need escaping */
    const take_case esc[] = {{"{\"a\\\"b\\\\c\":1}", WHOLE}, {"{\"a\\\"b\":1}", REJECT}};
    check_schema("{\"type\":\"object\",\"properties\":{\"a\\\"b\\\\c\":{\"type\":\"integer\"}},\"required\":[\"a\\\"b\\\\c\"]}",
                 esc, LM_ARRAY_LEN(esc));
}

static void test_values(void **state) {
    (void)state;
    const take_case arr[] = {{"[]", REJECT}, {"[1]", WHOLE}, {"[1, 2.5, -3e2]", WHOLE}, {"[1,2,3,4]", REJECT},
                             {"[1,]", REJECT}, {"[ 1 ]", WHOLE}, {"[1.]", REJECT}, {"[0.1234567890123456]", WHOLE}};
    check_schema("{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":1,\"maxItems\":3}", arr,
                 LM_ARRAY_LEN(arr));
    const take_case arr0[] = {{"[]", WHOLE}, {"[true]", REJECT}};
    check_schema("{\"type\":\"array\",\"maxItems\":0}", arr0, LM_ARRAY_LEN(arr0));
    const take_case en[] = {{"\"red\"", WHOLE}, {"3", WHOLE}, {"null", WHOLE}, {"true", WHOLE}, {"\"blue\"", REJECT},
                            {"\"re", PREFIX}, {"4", REJECT}};
    check_schema("{\"enum\":[\"red\",\"green\",3,null,true]}", en, LM_ARRAY_LEN(en));
    const take_case cn[] = {{"{\"a\":[1,\"x\"]}", WHOLE}, {"{\"a\":[1,\"y\"]}", REJECT}};
    check_schema("{\"const\":{\"a\":[1,\"x\"]}}", cn, LM_ARRAY_LEN(cn));
    const take_case anyof[] = {{"\"x\"", WHOLE}, {"12", WHOLE}, {"true", REJECT}, {"1.5", REJECT}};
    check_schema("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", anyof, LM_ARRAY_LEN(anyof));
    check_schema("{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", anyof, LM_ARRAY_LEN(anyof));
    const take_case tl[] = {{"null", WHOLE}, {"\"a\"", WHOLE}, {"1", REJECT}};
    check_schema("{\"type\":[\"string\",\"null\"]}", tl, LM_ARRAY_LEN(tl));
    /* lengths count characters: an escape or a 3-byte character is one */
    const take_case len[] = {{"\"a\"", REJECT}, {"\"ab\"", WHOLE}, {"\"abc\"", WHOLE}, {"\"abcd\"", REJECT},
                             {"\"\xc3\xa9\xe4\xb8\xad\"", WHOLE}, {"\"\\n1\"", WHOLE}};
    check_schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", len, LM_ARRAY_LEN(len));
    const take_case b[] = {{"true", WHOLE}, {"false", WHOLE}, {"1", REJECT}};
    check_schema("{\"type\":\"boolean\"}", b, LM_ARRAY_LEN(b));
}

static void test_refs(void **state) {
    (void)state;
    const take_case tree[] = {{"{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}", WHOLE},
                              {"{\"v\":1,\"kids\":[{\"kids\":[]}]}", REJECT}};
    check_schema("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                 "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
                 "\"$ref\":\"#/$defs/node\"}",
                 tree, LM_ARRAY_LEN(tree));
    const take_case self[] = {{"{\"next\":{\"next\":null}}", WHOLE}, {"{\"next\":1}", REJECT}};
    check_schema("{\"type\":\"object\",\"properties\":{\"next\":{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"null\"}]}},"
                 "\"required\":[\"next\"]}",
                 self, LM_ARRAY_LEN(self));
    const take_case defs[] = {{"{\"p\":{\"x\":1.5}}", WHOLE}};
    check_schema("{\"definitions\":{\"pt\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}},"
                 "\"required\":[\"x\"]}},\"type\":\"object\",\"properties\":{\"p\":{\"$ref\":\"#/definitions/pt\"}},"
                 "\"required\":[\"p\"]}",
                 defs, LM_ARRAY_LEN(defs));
}

typedef struct bad_schema {
    const char *schema;
    lm_status code;
    const char *msg;
} bad_schema;

static void test_errors(void **state) {
    (void)state;
    const bad_schema c[] = {
        {"{\"type\":\"strin\"}", LM_ERR_FORMAT, "json_schema: $: unknown type 'strin'"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"^x\"}}}", LM_ERR_UNSUPPORTED,
         "json_schema: $.properties.a: keyword 'pattern' is not supported"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"b\"]}", LM_ERR_FORMAT,
         "json_schema: $.required[0]: 'b' is not in properties"},
        {"{\"$ref\":\"#/$defs/missing\"}", LM_ERR_FORMAT, "json_schema: $: $ref '#/$defs/missing' points at nothing"},
        {"{\"$ref\":\"other.json#/x\"}", LM_ERR_UNSUPPORTED, "only references inside the schema"},
        {"{\"type\":\"array\",\"items\":[{\"type\":\"string\"}]}", LM_ERR_UNSUPPORTED,
         "json_schema: $.items: an array of item schemas (tuple form) is not supported"},
        {"{\"type\":\"array\",\"minItems\":3,\"maxItems\":2}", LM_ERR_FORMAT, "json_schema: $: maxItems 2 is below minItems 3"},
        {"{\"type\":\"array\",\"maxItems\":1000000}", LM_ERR_UNSUPPORTED, "json_schema: $: 'maxItems' above 10000 is not supported"},
        {"{\"type\":\"array\",\"maxItems\":-1}", LM_ERR_FORMAT, "'maxItems' must be a non-negative integer"},
        {"{\"enum\":[]}", LM_ERR_FORMAT, "json_schema: $: enum must be a non-empty array"},
        {"{\"anyOf\":[{\"type\":\"string\"}],\"type\":\"string\"}", LM_ERR_UNSUPPORTED, "'type' beside 'anyOf'"},
        {"false", LM_ERR_UNSUPPORTED, "json_schema: $: the schema false allows no value"},
        {"[1]", LM_ERR_FORMAT, "json_schema: $: a schema must be an object or a boolean"},
        {"{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"array\",\"items\":{\"allOf\":[]}}}}", LM_ERR_UNSUPPORTED,
         "json_schema: $.properties.x.items: keyword 'allOf' is not supported"},
        {"{\"properties\":{\"a\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\",\"minimum\":1}]}}}", LM_ERR_UNSUPPORTED,
         "json_schema: $.properties.a.anyOf[1]: keyword 'minimum' is not supported"},
        {"{\"type\":\"object\",\"properties\":[]}", LM_ERR_FORMAT, "json_schema: $.properties: must be an object"},
        {"{\"type\":\"object\",\"additionalProperties\":3}", LM_ERR_FORMAT, "$.additionalProperties: must be a boolean or a schema"},
        {"{\"type\":5}", LM_ERR_FORMAT, "'type' must be a type name or a list of them"},
        {"{\"type\":\"object\",", LM_ERR_FORMAT, "json_schema"},
        {"{\"properties\":{\"u\":{\"enum\":[\"a\xf5" "b\"]}}}", LM_ERR_FORMAT,
         "json_schema: $.properties.u: a value in enum or const is not valid UTF-8"},
        {"{\"properties\":{\"\xc3\":{}}}", LM_ERR_FORMAT, "the property name is not valid UTF-8"},
        {"{\"$ref\":\"#\"}", LM_ERR_UNSUPPORTED,
         "json_schema: $: $ref '#' comes back to itself without an object or array in between"},
        {"{\"$defs\":{\"a\":{\"anyOf\":[{\"$ref\":\"#/$defs/b\"},{\"type\":\"null\"}]},\"b\":{\"$ref\":\"#/$defs/a\"}},"
         "\"$ref\":\"#/$defs/a\"}", LM_ERR_UNSUPPORTED, "$.$defs.b: $ref '#/$defs/a' comes back to itself"},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(c); i++) {
        lm_buf out = {0};
        lm_buf_puts(&out, "keep");
        lm_error err = {0};
        lm_status st = smp_json_schema_grammar(c[i].schema, strlen(c[i].schema), 0, &out, &err);
        if (st != c[i].code || !strstr(err.msg, c[i].msg))
            fail_msg("schema %s: status %d \"%s\"; want %d \"%s\"", c[i].schema, st, err.msg, c[i].code, c[i].msg);
        assert_string_equal(out.data, "keep"); /* nothing half-written */
        lm_buf_free(&out);
    }
    /* lenient: what cannot be enforced is ignored, the rest still is */
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"^x\"},"
                    "\"n\":{\"type\":\"integer\",\"minimum\":3}},\"required\":[\"a\"]}";
    lm_buf out = {0};
    lm_error err = {0};
    assert_int_equal(smp_json_schema_grammar(s, strlen(s), SMP_SCHEMA_LENIENT, &out, &err), LM_OK);
    const take_case c2[] = {{"{\"a\":\"y\",\"n\":1}", WHOLE}, {"{\"n\":1}", REJECT}};
    check_grammar_text(out.data, s, c2, LM_ARRAY_LEN(c2), true);
    lm_buf_free(&out);
}

static void test_json_mode(void **state) {
    (void)state;
    lm_buf g = {0};
    assert_true(smp_json_object_grammar(&g));
    const take_case c[] = {{"{}", WHOLE}, {"{\"a\":[1,{\"b\":\"c\"},true,null,-0.5E+2]}", WHOLE}, {"[]", REJECT},
                           {"\"x\"", REJECT}, {" {}", WHOLE}, {"{}\n", WHOLE}, {"{}\n\n", REJECT}, {"{\"a\":1", PREFIX}, {"{\"a\" 1}", REJECT},
                           {"{\"a\":1}{", REJECT}};
    check_grammar_text(g.data, "json mode", c, LM_ARRAY_LEN(c), true);
    lm_buf_free(&g);
}

/* ---- tool calls ---- */

static const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather in a city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\",\"pattern\":\"^[A-Z]\"}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"stop_timer\"}}]";

static char *tool_grammar(int format, const char *fn, bool parallel) {
    lm_buf out = {0};
    lm_error err = {0};
    lm_status st = chat_tool_grammar(TOOLS, format, fn, parallel, &out, &err);
    if (st) fail_msg("chat_tool_grammar: %s", err.msg);
    return lm_buf_take(&out);
}

/* Parses text as format and checks the calls (name, compact arguments). */
static void expect_calls(int format, const char *text, size_t n, const char *const *names, const char *const *args) {
    chat_tool_call *calls = NULL;
    size_t nc = 0, content = 0;
    lm_error err = {0};
    assert_int_equal(chat_parse_tool_calls(format, text, strlen(text), &calls, &nc, &content, &err), LM_OK);
    assert_int_equal(nc, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(calls[i].name, names[i]);
        assert_string_equal(calls[i].arguments, args[i]);
    }
    assert_int_equal(content, 0);
    chat_tool_calls_free(calls, nc);
}

static void test_tool_grammar_hermes(void **state) {
    (void)state;
    char *g = tool_grammar(CHAT_TOOLS_HERMES, NULL, true);
    const char *one = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    const char *two = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n"
                      "</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"city\": \"oslo\"}}\n</tool_call>";
    const char *none = "<tool_call>{\"name\":\"stop_timer\",\"arguments\":{}}</tool_call>";
    const take_case c[] = {
        {one, WHOLE},
        {two, WHOLE},
        {none, WHOLE},
        {"<tool_call>{\"name\":\"stop_timer\",\"arguments\":{\"x\":1}}</tool_call>", REJECT},
        {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"town\": \"Paris\"}}", REJECT},
        {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"k\"}}", REJECT},
        {"<tool_call>\n{\"name\": \"get_news\"", REJECT},
        {"<tool_call>\n{\"arguments\": {}, \"name\": \"get_time\"}", REJECT},
        {"Sure! <tool_call>", REJECT},
        {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}", PREFIX},
    };
    check_grammar_text(g, "hermes, required, parallel", c, LM_ARRAY_LEN(c), false);
    const char *n1[] = {"get_weather"}, *a1[] = {"{\"city\":\"Paris\"}"};
    expect_calls(CHAT_TOOLS_HERMES, one, 1, n1, a1);
    const char *n2[] = {"get_weather", "get_time"}, *a2[] = {"{\"city\":\"Paris\",\"unit\":\"c\"}", "{\"city\":\"oslo\"}"};
    expect_calls(CHAT_TOOLS_HERMES, two, 2, n2, a2);
    const char *n3[] = {"stop_timer"}, *a3[] = {"{}"};
    expect_calls(CHAT_TOOLS_HERMES, none, 1, n3, a3);
    lm_free(g);
    /* one call only */
    g = tool_grammar(CHAT_TOOLS_HERMES, NULL, false);
    const take_case c1[] = {{one, WHOLE}, {two, REJECT}};
    check_grammar_text(g, "hermes, one call", c1, LM_ARRAY_LEN(c1), false);
    lm_free(g);
    /* a named function */
    g = tool_grammar(CHAT_TOOLS_HERMES, "get_time", true);
    const take_case c2[] = {{one, REJECT}, {"<tool_call>{\"name\":\"get_time\",\"arguments\":{\"city\":\"Rome\"}}</tool_call>", WHOLE}};
    check_grammar_text(g, "hermes, get_time", c2, LM_ARRAY_LEN(c2), false);
    lm_free(g);
}

static void test_tool_grammar_llama3(void **state) {
    (void)state;
    char *g = tool_grammar(CHAT_TOOLS_LLAMA3, NULL, true);
    const char *one = "{\"name\": \"get_time\", \"parameters\": {\"city\": \"Oslo\"}}";
    const take_case c[] = {{one, WHOLE},
                           {"{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}", REJECT},
                           {"<|python_tag|>", REJECT}};
    check_grammar_text(g, "llama3", c, LM_ARRAY_LEN(c), true);
    const char *n1[] = {"get_time"}, *a1[] = {"{\"city\":\"Oslo\"}"};
    expect_calls(CHAT_TOOLS_LLAMA3, one, 1, n1, a1);
    lm_free(g);
}

/* Mistral starts with the control token [TOOL_CALLS]: run it on the real vocabulary. */
static void test_tool_grammar_mistral(void **state) {
    (void)state;
    tok_tokenizer *t = NULL;
    lm_error err = {0};
    if (tok_load_dir(tu_data("tokenizers/mistral"), &t, &err)) fail_msg("%s", err.msg);
    lm_token tc = tok_find(t, "[TOOL_CALLS]"), eos = tok_eos(t);
    assert_true(tc >= 0);
    char *gt = tool_grammar(CHAT_TOOLS_MISTRAL, NULL, true);
    smp_grammar *g = compile_text(gt);
    const char *body = " [{\"name\": \"get_time\", \"arguments\": {\"city\": \"Oslo\"}}, "
                       "{\"name\": \"stop_timer\", \"arguments\": {}}]";
    smp_matcher *m = NULL;
    assert_int_equal(smp_matcher_new(g, t, &eos, 1, (size_t)tok_n_vocab(t), &m, &err), LM_OK);
    assert_false(smp_matcher_allows_bytes(m, "[TOOL_CALLS]", 12)); /* the token, not its spelling */
    assert_int_equal(smp_matcher_accept(m, tc), LM_OK);
    assert_int_equal(smp_matcher_accept_bytes(m, body, strlen(body)), LM_OK);
    assert_true(smp_matcher_can_end(m));
    smp_matcher_free(m);
    char text[512];
    snprintf(text, sizeof text, "[TOOL_CALLS]%s", body);
    const char *n[] = {"get_time", "stop_timer"}, *a[] = {"{\"city\":\"Oslo\"}", "{}"};
    expect_calls(CHAT_TOOLS_MISTRAL, text, 2, n, a);
    smp_grammar_free(g);
    lm_free(gt);
    tok_free(t);
}

static void test_tool_grammar_errors(void **state) {
    (void)state;
    lm_buf out = {0};
    lm_buf_puts(&out, "keep");
    lm_error err = {0};
    assert_int_equal(chat_tool_grammar(TOOLS, CHAT_TOOLS_HERMES, "get_news", false, &out, &err), LM_ERR_FORMAT);
    assert_string_equal(err.msg, "tool_choice names the function 'get_news', which is not in tools");
    assert_int_equal(chat_tool_grammar("{}", CHAT_TOOLS_HERMES, NULL, false, &out, &err), LM_ERR_FORMAT);
    assert_string_equal(err.msg, "tools: expected an array of tools");
    assert_int_equal(chat_tool_grammar("[{\"type\":\"function\",\"function\":{}}]", CHAT_TOOLS_HERMES, NULL, false, &out, &err),
                     LM_ERR_FORMAT);
    assert_string_equal(err.msg, "tools[0]: expected a function with a string 'name'");
    assert_int_equal(chat_tool_grammar("[{\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"strin\"}}}]",
                                       CHAT_TOOLS_HERMES, NULL, false, &out, &err),
                     LM_ERR_FORMAT);
    assert_string_equal(err.msg, "tools[0].function.parameters: $: unknown type 'strin' (expected string, number, "
                                 "integer, boolean, null, object or array)");
    assert_int_equal(chat_tool_grammar("[]", CHAT_TOOLS_HERMES, NULL, false, &out, &err), LM_ERR_FORMAT);
    assert_int_equal(chat_tool_grammar(TOOLS, CHAT_TOOLS_NONE, NULL, false, &out, &err), LM_ERR_UNSUPPORTED);
    assert_string_equal(out.data, "keep");
    lm_buf_free(&out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_tool_grammar_hermes),
        cmocka_unit_test(test_tool_grammar_llama3),
        cmocka_unit_test(test_tool_grammar_mistral),
        cmocka_unit_test(test_tool_grammar_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
