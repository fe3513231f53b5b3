/* chat/tool_grammar.c: the grammar a reply must follow when it has to call a tool.
 * Owns: turning an OpenAI tools array, a tool-call format and a choice (any tool, or one named
 * function; one call or several) into grammar text whose calls chat_parse_tool_calls reads back,
 * each call's arguments following that tool's "parameters" schema.
 * Does not own: the grammar language or JSON Schema (sample/), parsing calls (chat/tools.c). */
#include "chat/chat.h"
#include "sample/sample.h"

#include <stdio.h>

/* Appends the grammar literal of s's JSON text (a quoted, escaped JSON string). */
static bool put_json_string_literal(lm_buf *out, const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *t = j ? lm_json_print(j) : NULL;
    cJSON_Delete(j);
    if (!t) return false;
    lm_buf_putc(out, '"');
    for (const char *p = t; *p; p++) {
        if (*p == '"' || *p == '\\') lm_buf_putc(out, '\\');
        lm_buf_putc(out, *p);
    }
    lm_buf_putc(out, '"');
    lm_free(t);
    return !out->oom;
}

lm_status chat_tool_grammar(const char *tools_json, int format, const char *function, bool parallel,
                            lm_buf *out, lm_error *err) {
    if (!tools_json || !out) return lm_fail(err, LM_ERR_MISUSE, "chat_tool_grammar: NULL argument");
    const char *fmt_name = format == CHAT_TOOLS_HERMES    ? "hermes"
                           : format == CHAT_TOOLS_LLAMA3  ? "llama3"
                           : format == CHAT_TOOLS_MISTRAL ? "mistral"
                                                          : NULL;
    if (!fmt_name) return lm_fail(err, LM_ERR_UNSUPPORTED, "tool-call grammar: the model has no known tool-call format");
    cJSON *tools = NULL;
    lm_status st = lm_json_parse(tools_json, strlen(tools_json), "tools", &tools, err);
    if (st) return st;
    size_t start = out->len;
    lm_buf calls = {0};
    size_t n_calls = 0, k = 0;
    if (!cJSON_IsArray(tools)) {
        st = lm_fail(err, LM_ERR_FORMAT, "tools: expected an array of tools");
        goto done;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        char what[64];
        snprintf(what, sizeof what, "tools[%zu]", k);
        /* OpenAI's {"type":"function","function":{...}}, or the function object itself */
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(fn)) fn = t;
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsString(name) || !name->valuestring[0]) {
            st = lm_fail(err, LM_ERR_FORMAT, "%s: expected a function with a string 'name'", what);
            goto done;
        }
        bool utf8 = true;
        for (size_t i = 0, n = strlen(name->valuestring); i < n && utf8;) {
            uint32_t cp;
            int l = lm_utf8_decode(name->valuestring + i, n - i, &cp);
            utf8 = !(l == 1 && (unsigned char)name->valuestring[i] >= 0x80);
            i += (size_t)l;
        }
        if (!utf8) {
            st = lm_fail(err, LM_ERR_FORMAT, "%s: the function name is not valid UTF-8", what);
            goto done;
        }
        if (function && strcmp(function, name->valuestring) != 0) {
            k++;
            continue;
        }
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        cJSON *empty = NULL;
        if (!params || cJSON_IsNull(params)) { /* no parameters: the arguments are {} */
            static const char NONE[] = "{\"type\":\"object\",\"properties\":{}}";
            st = lm_json_parse(NONE, sizeof NONE - 1, "tool-call grammar", &empty, err);
            if (st) goto done;
            params = empty;
        }
        char prefix[32], what_p[96];
        snprintf(prefix, sizeof prefix, "args%zu", k);
        snprintf(what_p, sizeof what_p, "%s.function.parameters", what);
        /* lenient: a tool's schema may carry checks we cannot enforce (pattern, minimum...);
           the call still parses and has the right shape */
        st = smp_json_schema_rules(params, params, prefix, what_p, SMP_SCHEMA_LENIENT, out, err);
        cJSON_Delete(empty);
        if (st) goto done;
        lm_buf_printf(out, "call%zu ::= \"{\" tc-ws \"\\\"name\\\"\" tc-ws \":\" tc-ws ", k);
        put_json_string_literal(out, name->valuestring);
        lm_buf_printf(out, " tc-ws \",\" tc-ws \"\\\"%s\\\"\" tc-ws \":\" tc-ws %s tc-ws \"}\"\n",
                      format == CHAT_TOOLS_LLAMA3 ? "parameters" : "arguments", prefix);
        lm_buf_printf(&calls, "%scall%zu", n_calls ? " | " : "", k);
        n_calls++;
        k++;
    }
    if (!n_calls) {
        st = function ? lm_fail(err, LM_ERR_FORMAT, "tool_choice names the function '%.80s', which is not in tools", function)
                      : lm_fail(err, LM_ERR_FORMAT, "tools: the list is empty, so no call can be made");
        goto done;
    }
    lm_buf_printf(out, "call ::= %s\ntc-ws ::= ( \" \" | \"\\n\" [ \\t]{0,20} )?\n", calls.data);
    switch (format) {
    case CHAT_TOOLS_HERMES:
        lm_buf_puts(out, "one ::= \"<tool_call>\" tc-ws call tc-ws \"</tool_call>\"\n");
        lm_buf_puts(out, parallel ? "root ::= one ( tc-ws one )*\n" : "root ::= one\n");
        break;
    case CHAT_TOOLS_LLAMA3:
        /* the bare JSON object form holds one call (several need <|python_tag|> and ';') */
        lm_buf_puts(out, "root ::= call\n");
        break;
    case CHAT_TOOLS_MISTRAL:
        lm_buf_puts(out, parallel ? "root ::= <[TOOL_CALLS]> tc-ws \"[\" tc-ws call tc-ws ( \",\" tc-ws call tc-ws )* \"]\"\n"
                                  : "root ::= <[TOOL_CALLS]> tc-ws \"[\" tc-ws call tc-ws \"]\"\n");
        break;
    }
    if (out->oom || calls.oom) st = lm_fail_nomem(err, "the tool-call grammar");
done:
    lm_buf_free(&calls);
    cJSON_Delete(tools);
    if (st) {
        out->len = start;
        if (out->data) out->data[start] = 0;
    }
    return st;
}
