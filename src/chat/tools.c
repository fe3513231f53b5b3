/* chat/tools.c: finds tool calls in generated text.
 * Owns: the Hermes/Qwen (<tool_call>{..}</tool_call>), Llama 3.x (<|python_tag|> or a bare JSON
 * object) and Mistral ([TOOL_CALLS] [..]) reply formats, and turning each call's arguments into
 * compact JSON text.
 * Does not own: rendering tool results back into a prompt (the model's template does). */
#include "chat/chat.h"

#include <stdio.h>

typedef struct calls {
    chat_tool_call *v;
    size_t n, cap;
} calls;

void chat_tool_calls_free(chat_tool_call *c, size_t n) {
    if (!c) return;
    for (size_t i = 0; i < n; i++) {
        lm_free(c[i].name);
        lm_free(c[i].arguments);
        lm_free(c[i].id);
    }
    lm_free(c);
}

static bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r'; }

/* End of the JSON object or array that starts at s[0] ('{' or '['), strings respected; 0 when
 * it does not close within n bytes. */
static size_t json_extent(const char *s, size_t n) {
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\') i++;
            else if (ch == '"') in_str = false;
            continue;
        }
        if (ch == '"') in_str = true;
        else if (ch == '{' || ch == '[') depth++;
        else if (ch == '}' || ch == ']') {
            if (--depth == 0) return i + 1;
        }
    }
    return 0;
}

static const char *find(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, needle, k) == 0) return s + i;
    return NULL;
}

/* Adds one call from a JSON object: name plus arguments (or parameters), an object or a string
 * holding one. */
static lm_status add_call(calls *cs, const cJSON *o, const char *fmt_name, lm_error *err) {
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(o, "function");
    if (cJSON_IsObject(fn) && !cJSON_GetObjectItemCaseSensitive(o, "name")) o = fn;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(name))
        return lm_fail(err, LM_ERR_FORMAT, "%s tool call: 'name' must be a string", fmt_name);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!a) a = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    char *args = NULL;
    if (!a) {
        args = lm_strdup("{}");
    } else if (cJSON_IsString(a)) {
        cJSON *pa = NULL;
        lm_status st = lm_json_parse(a->valuestring, strlen(a->valuestring), "tool call arguments", &pa, err);
        if (st) return st;
        args = lm_json_print(pa);
        cJSON_Delete(pa);
    } else {
        args = lm_json_print(a);
    }
    if (!args) return lm_fail_nomem(err, "tool call");
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? cs->cap * 2 : 4;
        chat_tool_call *v = lm_realloc(cs->v, cap * sizeof *v);
        if (!v) {
            lm_free(args);
            return lm_fail_nomem(err, "tool calls");
        }
        cs->v = v;
        cs->cap = cap;
    }
    chat_tool_call *c = &cs->v[cs->n];
    memset(c, 0, sizeof *c);
    c->arguments = args;
    c->name = lm_strdup(name->valuestring);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
    if (cJSON_IsString(id)) {
        c->id = lm_strdup(id->valuestring);
    } else {
        char buf[32];
        /* 9 alphanumerics: what Mistral's template demands of an id when the call is rendered back */
        snprintf(buf, sizeof buf, "call%05zu", cs->n % 100000);
        c->id = lm_strdup(buf);
    }
    cs->n++;
    if (!c->name || !c->id) return lm_fail_nomem(err, "tool call");
    return LM_OK;
}

/* Parses the JSON value at s (n bytes) and adds its call(s): an object, or an array of them. */
static lm_status add_json(calls *cs, const char *s, size_t n, const char *fmt_name, lm_error *err) {
    cJSON *j = NULL;
    lm_status st = lm_json_parse(s, n, fmt_name, &j, err);
    if (st) return st;
    if (cJSON_IsArray(j)) {
        for (const cJSON *e = j->child; e && !st; e = e->next) {
            if (!cJSON_IsObject(e)) st = lm_fail(err, LM_ERR_FORMAT, "%s tool calls: expected an array of objects", fmt_name);
            else st = add_call(cs, e, fmt_name, err);
        }
    } else if (cJSON_IsObject(j)) {
        st = add_call(cs, j, fmt_name, err);
    } else {
        st = lm_fail(err, LM_ERR_FORMAT, "%s tool call: expected a JSON object", fmt_name);
    }
    cJSON_Delete(j);
    return st;
}

static lm_status parse_hermes(calls *cs, const char *text, size_t len, size_t *content_len, lm_error *err) {
    static const char open[] = "<tool_call>", close[] = "</tool_call>";
    const char *p = find(text, len, open);
    if (!p) return LM_OK;
    *content_len = (size_t)(p - text);
    const char *end = text + len;
    while (p) {
        const char *b = p + strlen(open);
        const char *e = find(b, (size_t)(end - b), close);
        const char *stop = e ? e : end;
        while (b < stop && is_space(*b)) b++;
        size_t ext = b < stop && *b == '{' ? json_extent(b, (size_t)(stop - b)) : 0;
        if (!ext) return lm_fail(err, LM_ERR_FORMAT, "hermes tool call %zu: expected a JSON object after <tool_call>", cs->n + 1);
        lm_status st = add_json(cs, b, ext, "hermes", err);
        if (st) return st;
        if (!e) break;
        p = find(e, (size_t)(end - e), open);
    }
    return LM_OK;
}

static lm_status parse_llama3(calls *cs, const char *text, size_t len, size_t *content_len, lm_error *err) {
    static const char tag[] = "<|python_tag|>";
    const char *p = find(text, len, tag);
    const char *end = text + len;
    if (p) {
        *content_len = (size_t)(p - text);
        const char *b = p + strlen(tag);
        /* several calls may follow, separated by ';' */
        for (;;) {
            while (b < end && (is_space(*b) || *b == ';')) b++;
            if (b >= end || *b != '{') break;
            size_t ext = json_extent(b, (size_t)(end - b));
            if (!ext) return lm_fail(err, LM_ERR_FORMAT, "llama3 tool call: unterminated JSON after <|python_tag|>");
            lm_status st = add_json(cs, b, ext, "llama3", err);
            if (st) return st;
            b += ext;
        }
        return LM_OK;
    }
    /* a bare JSON object with "name" and "parameters" as the whole reply */
    const char *b = text;
    while (b < end && is_space(*b)) b++;
    const char *e = end;
    while (e > b && is_space(e[-1])) e--;
    if (b >= e || *b != '{' || json_extent(b, (size_t)(e - b)) != (size_t)(e - b)) return LM_OK;
    cJSON *j = NULL;
    lm_error ignore;
    if (lm_json_parse(b, (size_t)(e - b), "llama3", &j, &ignore)) return LM_OK; /* plain text */
    bool is_call = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "name")) &&
                   (cJSON_GetObjectItemCaseSensitive(j, "parameters") || cJSON_GetObjectItemCaseSensitive(j, "arguments"));
    lm_status st = LM_OK;
    if (is_call) {
        st = add_call(cs, j, "llama3", err);
        *content_len = 0;
    }
    cJSON_Delete(j);
    return st;
}

static lm_status parse_mistral(calls *cs, const char *text, size_t len, size_t *content_len, lm_error *err) {
    static const char tag[] = "[TOOL_CALLS]";
    const char *p = find(text, len, tag);
    if (!p) return LM_OK;
    *content_len = (size_t)(p - text);
    const char *end = text + len;
    const char *b = p + strlen(tag);
    while (b < end && is_space(*b)) b++;
    size_t ext = b < end && (*b == '[' || *b == '{') ? json_extent(b, (size_t)(end - b)) : 0;
    if (!ext) return lm_fail(err, LM_ERR_FORMAT, "mistral tool calls: expected a JSON array after [TOOL_CALLS]");
    return add_json(cs, b, ext, "mistral", err);
}

lm_status chat_parse_tool_calls(int format, const char *text, size_t len, chat_tool_call **out,
                                size_t *n, size_t *content_len, lm_error *err) {
    if (!out || !n || !content_len || (!text && len))
        return lm_fail(err, LM_ERR_MISUSE, "chat_parse_tool_calls: NULL argument");
    *out = NULL;
    *n = 0;
    *content_len = len;
    calls cs = {0};
    lm_status st;
    switch (format) {
    case CHAT_TOOLS_NONE: return LM_OK;
    case CHAT_TOOLS_HERMES: st = parse_hermes(&cs, text, len, content_len, err); break;
    case CHAT_TOOLS_LLAMA3: st = parse_llama3(&cs, text, len, content_len, err); break;
    case CHAT_TOOLS_MISTRAL: st = parse_mistral(&cs, text, len, content_len, err); break;
    default: return lm_fail(err, LM_ERR_MISUSE, "chat_parse_tool_calls: unknown format %d", format);
    }
    if (st) {
        chat_tool_calls_free(cs.v, cs.n);
        *content_len = len;
        return st;
    }
    *out = cs.v;
    *n = cs.n;
    return LM_OK;
}
