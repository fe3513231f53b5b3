/* server/request.c: OpenAI request bodies → chat messages and generation params.
 * Owns: validating every field the server understands (type, range, count) with OpenAI's
 * error wording, and OpenAI's error object itself (server.c and front.c send it). Tool calls in generated text are the library's (the providers parse them).
 * Does not own: HTTP (server/server.c) or generation (session/). */
#include "server/server.h"
#include "sample/sample.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The message and param go into a JSON error body and the log: lm_escape_text keeps them valid
 * UTF-8 without control characters whatever the request quoted into them. */
static bool fail(srv_reqerr *e, const char *param, const char *fmt, ...) LM_PRINTF(3, 4);
static bool fail(srv_reqerr *e, const char *param, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    e->status = 400;
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    lm_escape_text(e->msg, sizeof e->msg, tmp, strlen(tmp));
    snprintf(tmp, sizeof tmp, "%s", param ? param : "");
    lm_escape_text(e->param, sizeof e->param, tmp, strlen(tmp));
    return false;
}

/* At most 40 bytes of s for quoting in a message, cut before a character, not inside one. */
static const char *clip(char out[48], const char *s) {
    size_t n = strlen(s);
    if (n > 40) n = lm_utf8_complete_len(s, 40);
    memcpy(out, s, n);
    out[n] = 0;
    return out;
}

/* ---- NUL inside strings ----
 * cJSON decodes "\u0000" into a NUL byte (and keeps a raw NUL byte) and the C string ends there,
 * so "Hello\u0000 world" would silently lose everything after it and a role "user\u0000evil"
 * would read as "user". The raw body is scanned instead, with cJSON's lexical rules (every byte
 * up to 0x20 is white space between tokens); it has parsed when this runs, and the walk moves
 * forward on every step whatever the bytes. */

typedef struct nul_scan {
    const char *p, *end;
    char path[64];
    size_t path_n;
} nul_scan;

static void scan_ws(nul_scan *s) {
    while (s->p < s->end && (unsigned char)*s->p <= 32) s->p++;
}

/* Moves past the string at s->p (its opening quote); true when it holds a \u0000 escape.
 * *body and *n get its raw text between the quotes. */
static bool scan_str(nul_scan *s, const char **body, size_t *n) {
    bool nul = false;
    const char *b = ++s->p;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\' && s->p + 1 < s->end) {
            if (s->p[1] == 'u' && s->end - s->p >= 6 && memcmp(s->p + 2, "0000", 4) == 0) nul = true;
            s->p += 2;
        } else {
            if (*s->p == 0) nul = true;
            s->p++;
        }
    }
    *body = b;
    *n = (size_t)(s->p - b);
    if (s->p < s->end) s->p++;
    return nul;
}

/* Appends ".key" (or "key" at the top) or "[i]" to the path; it is cut at its buffer's end. */
static void path_push(nul_scan *s, const char *key, size_t key_n, size_t index) {
    size_t room = sizeof s->path - s->path_n;
    if (key)
        snprintf(s->path + s->path_n, room, "%s%.*s", s->path_n ? "." : "", (int)LM_MIN(key_n, 40), key);
    else
        snprintf(s->path + s->path_n, room, "[%zu]", index);
    s->path_n = strlen(s->path);
}

/* True when the value at s->p, or one inside it, holds a NUL; s->path then names it. */
static bool scan_value(nul_scan *s, int depth) {
    scan_ws(s);
    if (s->p >= s->end || depth > 2000) return false;
    const char *t;
    size_t n;
    if (*s->p == '"') return scan_str(s, &t, &n);
    if (*s->p == '{' || *s->p == '[') {
        bool obj = *s->p == '{';
        char close = obj ? '}' : ']';
        s->p++;
        for (size_t i = 0;; i++) {
            scan_ws(s);
            const char *start = s->p;
            if (s->p >= s->end) return false;
            if (*s->p == close) {
                s->p++;
                return false;
            }
            if (*s->p == ',') {
                s->p++;
                scan_ws(s);
            }
            size_t saved = s->path_n;
            if (obj) {
                bool key_nul = scan_str(s, &t, &n);
                path_push(s, t, n, 0);
                if (key_nul) return true;
                scan_ws(s);
                if (s->p < s->end && *s->p == ':') s->p++;
            } else {
                path_push(s, NULL, 0, i);
            }
            if (scan_value(s, depth + 1)) return true;
            s->path_n = saved;
            s->path[saved] = 0;
            if (s->p == start) s->p++;
        }
    }
    /* number, true, false, null */
    const char *start = s->p;
    while (s->p < s->end && *s->p != ',' && *s->p != ']' && *s->p != '}' && (unsigned char)*s->p > 32) s->p++;
    if (s->p == start) s->p++;
    return false;
}

/* Names in path the first string of the body (a value or a key) holding "\u0000" or a raw NUL. */
static bool find_nul(const char *body, size_t len, char *path, size_t cap) {
    bool maybe = memchr(body, 0, len) != NULL;
    for (size_t i = 0; i + 6 <= len && !maybe; i++)
        maybe = body[i] == '\\' && body[i + 1] == 'u' && memcmp(body + i + 2, "0000", 4) == 0;
    if (!maybe) return false;
    nul_scan s = {.p = body, .end = body + len};
    if (!scan_value(&s, 0)) return false;
    snprintf(path, cap, "%s", s.path_n ? s.path : "(the body)");
    return true;
}

static bool keep(srv_request *rq, char *s, size_t cap) {
    if (!s) return false;
    if (rq->n_owned >= cap) {
        lm_free(s);
        return false;
    }
    rq->owned[rq->n_owned++] = s;
    return true;
}

/* A number field in [lo, hi]; absent or null leaves *out. */
static bool get_num(const cJSON *root, const char *name, double lo, double hi, bool integral,
                    double *out, bool *present, srv_reqerr *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (present) *present = false;
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(e, name, "'%s' must be a number", name);
    double d = v->valuedouble;
    if (integral && d != floor(d)) return fail(e, name, "'%s' must be an integer", name);
    if (d < lo || d > hi)
        return fail(e, name, "'%s' is %g; expected a value from %g to %g", name, d, lo, hi);
    *out = d;
    if (present) *present = true;
    return true;
}

static bool get_bool(const cJSON *root, const char *name, bool *out, srv_reqerr *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsBool(v)) return fail(e, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return true;
}

static const char *const ROLES[] = {"system", "user", "assistant", "tool", "developer"};

/* content: a string, null, or an array of {"type":"text","text":...} parts joined. */
static bool message_content(srv_request *rq, size_t cap, const cJSON *c, size_t i,
                            const char **out, srv_reqerr *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (!c || cJSON_IsNull(c)) {
        *out = NULL;
        return true;
    }
    if (cJSON_IsString(c)) {
        *out = c->valuestring;
        return true;
    }
    if (!cJSON_IsArray(c))
        return fail(e, param, "'%s' must be a string or an array of content parts", param);
    lm_buf b = {0};
    size_t k = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(type)) {
            lm_buf_free(&b);
            return fail(e, param, "'%s[%zu]' must be an object with a string 'type'", param, k);
        }
        if (strcmp(type->valuestring, "text") != 0) {
            char q[48];
            lm_buf_free(&b);
            return fail(e, param, "'%s[%zu]': content part type '%s' is not supported (only 'text')",
                        param, k, clip(q, type->valuestring));
        }
        if (!cJSON_IsString(text)) {
            lm_buf_free(&b);
            return fail(e, param, "'%s[%zu].text' must be a string", param, k);
        }
        lm_buf_puts(&b, text->valuestring);
        k++;
    }
    if (b.oom) {
        lm_buf_free(&b);
        return fail(e, NULL, "out of memory");
    }
    char *s = lm_buf_take(&b);
    if (!keep(rq, s, cap)) return fail(e, NULL, "out of memory");
    *out = s;
    return true;
}

static bool parse_messages(srv_request *rq, const cJSON *msgs, size_t max_msgs, srv_reqerr *e) {
    if (!msgs) return fail(e, "messages", "'messages' is required");
    if (!cJSON_IsArray(msgs)) return fail(e, "messages", "'messages' must be an array");
    size_t n = (size_t)cJSON_GetArraySize(msgs);
    if (n == 0) return fail(e, "messages", "'messages' must not be empty");
    /* each message costs template work and memory before the prompt is cut to the window */
    if (n > max_msgs)
        return fail(e, "messages", "'messages' has %zu messages; at most %zu are allowed per request", n, max_msgs);
    rq->msgs = lm_calloc(n, sizeof *rq->msgs);
    size_t cap = 2 * n + 2;
    rq->owned = lm_calloc(cap, sizeof *rq->owned);
    if (!rq->msgs || !rq->owned) return fail(e, NULL, "out of memory");
    rq->n_msgs = n;
    size_t i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!cJSON_IsObject(m)) return fail(e, param, "'%s' must be an object", param);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!cJSON_IsString(role)) return fail(e, param, "'%s' must be a string", param);
        const char *r = NULL;
        for (size_t k = 0; k < sizeof ROLES / sizeof ROLES[0]; k++)
            if (strcmp(role->valuestring, ROLES[k]) == 0) r = ROLES[k];
        char q[48];
        if (!r)
            return fail(e, param, "'%s': unknown role '%s' (expected system, user, assistant or tool)",
                        param, clip(q, role->valuestring));
        /* Templates know "system"; OpenAI's newer "developer" means the same here. */
        rq->msgs[i].role = strcmp(r, "developer") == 0 ? "system" : r;
        if (!message_content(rq, cap, cJSON_GetObjectItemCaseSensitive(m, "content"), i,
                             &rq->msgs[i].content, e))
            return false;
        const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (tc && !cJSON_IsNull(tc)) {
            snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
            if (strcmp(r, "assistant") != 0)
                return fail(e, param, "'%s': only assistant messages carry tool calls", param);
            if (!cJSON_IsArray(tc)) return fail(e, param, "'%s' must be an array", param);
            char *s = lm_json_print(tc);
            if (!keep(rq, s, cap)) return fail(e, NULL, "out of memory");
            rq->msgs[i].tool_calls_json = s;
        }
        if (!rq->msgs[i].content && !rq->msgs[i].tool_calls_json) {
            snprintf(param, sizeof param, "messages[%zu].content", i);
            return fail(e, param, "'%s' is required", param);
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
        if (id && !cJSON_IsNull(id)) {
            snprintf(param, sizeof param, "messages[%zu].tool_call_id", i);
            if (!cJSON_IsString(id)) return fail(e, param, "'%s' must be a string", param);
            rq->msgs[i].tool_call_id = id->valuestring;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
        if (name && !cJSON_IsNull(name)) {
            snprintf(param, sizeof param, "messages[%zu].name", i);
            if (!cJSON_IsString(name)) return fail(e, param, "'%s' must be a string", param);
            rq->msgs[i].name = name->valuestring;
        }
        i++;
    }
    return true;
}

static bool parse_tools(srv_request *rq, const cJSON *root, srv_reqerr *e) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    bool none = false;
    if (choice && !cJSON_IsNull(choice)) {
        if (cJSON_IsString(choice)) {
            const char *c = choice->valuestring;
            if (strcmp(c, "none") == 0)
                none = true;
            else if (strcmp(c, "auto") != 0 && strcmp(c, "required") != 0)
                return fail(e, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or an object");
        } else if (!cJSON_IsObject(choice)) {
            return fail(e, "tool_choice", "'tool_choice' must be a string or an object");
        }
    }
    if (!tools || cJSON_IsNull(tools)) return true;
    if (!cJSON_IsArray(tools)) return fail(e, "tools", "'tools' must be an array");
    size_t k = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        char param[64];
        snprintf(param, sizeof param, "tools[%zu]", k);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsObject(t) || !cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0)
            return fail(e, param, "'%s' must be an object with \"type\": \"function\"", param);
        if (!cJSON_IsObject(fn) || !cJSON_IsString(name) || !name->valuestring[0])
            return fail(e, param, "'%s.function' must be an object with a string 'name'", param);
        k++;
    }
    if (k == 0 || none) return true;
    rq->tools_json = lm_json_print(tools);
    if (!rq->tools_json) return fail(e, NULL, "out of memory");
    return true;
}

static bool parse_stop(srv_request *rq, const cJSON *root, srv_reqerr *e) {
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!stop || cJSON_IsNull(stop)) return true;
    size_t n = 0;
    if (cJSON_IsString(stop)) {
        if (!stop->valuestring[0]) return fail(e, "stop", "'stop' must not be an empty string");
        rq->gp.stop[n++] = stop->valuestring;
        return true;
    }
    if (!cJSON_IsArray(stop)) return fail(e, "stop", "'stop' must be a string or an array of strings");
    const cJSON *s;
    cJSON_ArrayForEach(s, stop) {
        if (!cJSON_IsString(s) || !s->valuestring[0])
            return fail(e, "stop", "'stop' must hold non-empty strings");
        /* The list is NULL-terminated inside a fixed array, so one slot stays NULL. */
        if (n + 1 >= LM_MAX_STOP)
            return fail(e, "stop", "'stop' holds at most %d strings", LM_MAX_STOP - 1);
        rq->gp.stop[n++] = s->valuestring;
    }
    return true;
}

static bool parse_sampling(srv_request *rq, const cJSON *root, int32_t n_ctx, srv_reqerr *e) {
    lm_gen_params *gp = &rq->gp;
    double d;
    bool present;
    d = 0.7;
    if (!get_num(root, "temperature", 0, 2, false, &d, NULL, e)) return false;
    gp->temperature = (float)d;
    d = 1;
    if (!get_num(root, "top_p", 0, 1, false, &d, NULL, e)) return false;
    gp->top_p = (float)d;
    d = 0;
    if (!get_num(root, "min_p", 0, 1, false, &d, NULL, e)) return false;
    gp->min_p = (float)d;
    d = 0;
    if (!get_num(root, "top_k", 0, 1e9, true, &d, NULL, e)) return false;
    gp->top_k = (int32_t)d;
    d = 0;
    if (!get_num(root, "presence_penalty", -2, 2, false, &d, NULL, e)) return false;
    gp->presence_penalty = (float)d;
    d = 0;
    if (!get_num(root, "frequency_penalty", -2, 2, false, &d, NULL, e)) return false;
    gp->frequency_penalty = (float)d;
    d = 0;
    if (!get_num(root, "seed", -9.2e18, 1.8e19, true, &d, &rq->seeded, e)) return false;
    gp->seed = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
    const char *names[2] = {"max_completion_tokens", "max_tokens"};
    for (int k = 0; k < 2; k++) {
        d = 0;
        if (!get_num(root, names[k], 1, 1e9, true, &d, &present, e)) return false;
        if (!present) continue;
        if (n_ctx > 0 && d > n_ctx)
            return fail(e, names[k], "'%s' is %.0f but the context window holds %d tokens",
                        names[k], d, (int)n_ctx);
        gp->max_tokens = (int32_t)d;
        break;
    }
    d = 1;
    if (!get_num(root, "n", 1, 1, true, &d, NULL, e)) {
        snprintf(e->msg, sizeof e->msg, "'n' must be 1 (one choice per request)");
        return false;
    }
    return parse_stop(rq, root, e);
}

/* Compiles grammar text once, so a bad grammar is a 400 now rather than a failed generation. */
static bool check_grammar(const char *text, size_t len, const char *param, srv_reqerr *e) {
    smp_grammar *g = NULL;
    lm_error err = {0};
    lm_status st = smp_grammar_compile(text, len, &g, &err);
    smp_grammar_free(g);
    if (st == LM_ERR_NOMEM) return fail(e, NULL, "out of memory");
    return st ? fail(e, param, "%s", err.msg) : true;
}

/* response_format (OpenAI): text, json_object, or json_schema {name, schema, strict}; and
 * llama.cpp's "grammar" extension (GBNF text). */
static bool parse_structured(srv_request *rq, const cJSON *root, srv_reqerr *e) {
    const cJSON *gr = cJSON_GetObjectItemCaseSensitive(root, "grammar");
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    bool has_rf = rf && !cJSON_IsNull(rf);
    if (gr && !cJSON_IsNull(gr)) {
        if (!cJSON_IsString(gr)) return fail(e, "grammar", "'grammar' must be a string of GBNF rules");
        if (gr->valuestring[0]) {
            if (has_rf) return fail(e, "grammar", "give 'grammar' or 'response_format', not both");
            if (!check_grammar(gr->valuestring, strlen(gr->valuestring), "grammar", e)) return false;
            rq->gp.grammar = gr->valuestring;
        }
    }
    if (!has_rf) return true;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(type))
        return fail(e, "response_format", "'response_format' must be an object with a string 'type'");
    const char *t = type->valuestring;
    if (strcmp(t, "text") == 0) return true;
    if (strcmp(t, "json_object") == 0) {
        rq->gp.json_object = true;
        return true;
    }
    if (strcmp(t, "json_schema") != 0)
        return fail(e, "response_format", "response_format type '%.40s' is not supported (expected 'text', "
                    "'json_object' or 'json_schema')", t);
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
    if (!cJSON_IsObject(js))
        return fail(e, "response_format", "response_format type 'json_schema' needs a 'json_schema' object "
                    "with the schema in 'schema'");
    const cJSON *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
    if (strict && !cJSON_IsNull(strict) && !cJSON_IsBool(strict))
        return fail(e, "response_format", "'response_format.json_schema.strict' must be a boolean");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
    if (name && !cJSON_IsNull(name) && !cJSON_IsString(name))
        return fail(e, "response_format", "'response_format.json_schema.name' must be a string");
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
    /* OpenAI lets schema be left out (any JSON); locallm then asks for any object, as
       json_object does */
    if (!schema || cJSON_IsNull(schema)) {
        rq->gp.json_object = true;
        return true;
    }
    if (!cJSON_IsObject(schema) && !cJSON_IsBool(schema))
        return fail(e, "response_format", "'response_format.json_schema.schema' must be a JSON Schema object");
    return srv_req_schema(rq, schema, "response_format", e);
}

bool srv_req_schema(srv_request *rq, const cJSON *schema, const char *param, srv_reqerr *e) {
    rq->schema_text = lm_json_print(schema);
    if (!rq->schema_text) return fail(e, NULL, "out of memory");
    /* converted and compiled now, so what cannot be enforced is a 400 naming where it is */
    lm_buf g = {0};
    lm_error err = {0};
    lm_status st = smp_json_schema_grammar(rq->schema_text, strlen(rq->schema_text), 0, &g, &err);
    bool ok = true;
    if (st == LM_ERR_NOMEM) ok = fail(e, NULL, "out of memory");
    else if (st) /* the converter's message starts "json_schema: $.path: ..." */
        ok = fail(e, param, "%s: %s", strcmp(param, "response_format") == 0 ? "response_format.json_schema.schema" : param,
                  strncmp(err.msg, "json_schema: ", 13) == 0 ? err.msg + 13 : err.msg);
    else ok = check_grammar(g.data ? g.data : "", g.len, param, e);
    lm_buf_free(&g);
    if (ok) rq->gp.json_schema = rq->schema_text;
    return ok;
}

/* logprobs: chat takes "logprobs": true with "top_logprobs" 0..20 alternatives; completions take
 * "logprobs": N, the alternatives wanted (0..5, OpenAI's limit). */
static bool parse_logprobs(srv_request *rq, const cJSON *root, srv_reqerr *e) {
    double d = 0;
    bool present = false;
    if (rq->chat) {
        if (!get_bool(root, "logprobs", &rq->logprobs, e)) return false;
        if (!get_num(root, "top_logprobs", 0, LM_MAX_TOP_LOGPROBS, true, &d, &present, e)) return false;
        if (present && !rq->logprobs)
            return fail(e, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    } else {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
        if (cJSON_IsBool(v)) /* what a chat client would send; false is off */
            present = cJSON_IsTrue(v);
        else if (!get_num(root, "logprobs", 0, 5, true, &d, &present, e))
            return false;
        rq->logprobs = present;
    }
    if (rq->logprobs) rq->gp.top_logprobs = (int32_t)d;
    return true;
}

static bool parse_misc(srv_request *rq, const cJSON *root, srv_reqerr *e) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model))
        return fail(e, "model", "'model' must be a string");
    if (!get_bool(root, "stream", &rq->stream, e)) return false;
    /* llama.cpp's server extension: keep generating past end-of-generation tokens. */
    if (!get_bool(root, "ignore_eos", &rq->gp.ignore_eos, e)) return false;
    /* locallm's extension for voice clients: stream whole sentences. */
    if (!get_bool(root, "x_sentences", &rq->x_sentences, e)) return false;
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) return fail(e, "stream_options", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &rq->include_usage, e)) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            return false;
        }
    }
    return parse_structured(rq, root, e);
}

bool srv_request_parse(const char *body, size_t len, bool chat, int32_t n_ctx, size_t max_msgs,
                       srv_request *rq, srv_reqerr *e) {
    memset(rq, 0, sizeof *rq);
    memset(e, 0, sizeof *e);
    rq->chat = chat;
    rq->gp = lm_gen_default_params();
    rq->gp.max_tokens = -1;
    rq->gp.repeat_penalty = 1.0f;
    bool ok = false;
    if (!srv_req_begin(body, len, rq, e)) goto done;
    if (!parse_misc(rq, rq->root, e) || !parse_sampling(rq, rq->root, n_ctx, e) || !parse_logprobs(rq, rq->root, e))
        goto done;
    if (chat) {
        if (!parse_messages(rq, cJSON_GetObjectItemCaseSensitive(rq->root, "messages"),
                            max_msgs ? max_msgs : SRV_MAX_MESSAGES, e) ||
            !parse_tools(rq, rq->root, e))
            goto done;
    } else {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(rq->root, "prompt");
        /* A one-element list is what many clients send for a single prompt. */
        if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1) p = cJSON_GetArrayItem(p, 0);
        if (!p) {
            fail(e, "prompt", "'prompt' is required");
            goto done;
        }
        if (!cJSON_IsString(p)) {
            fail(e, "prompt", "'prompt' must be a string");
            goto done;
        }
        if (!p->valuestring[0]) {
            fail(e, "prompt", "'prompt' must not be empty");
            goto done;
        }
        rq->prompt = p->valuestring;
    }
    ok = true;
done:
    if (!ok) srv_request_free(rq);
    return ok;
}

/* ---- shared with server/ollama.c ---- */

bool srv_req_fail(srv_reqerr *e, const char *param, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return fail(e, param, "%s", tmp);
}

bool srv_req_num(const cJSON *obj, const char *name, double lo, double hi, bool integral, double *out,
                 bool *present, srv_reqerr *e) {
    return get_num(obj, name, lo, hi, integral, out, present, e);
}

bool srv_req_bool(const cJSON *obj, const char *name, bool *out, srv_reqerr *e) {
    return get_bool(obj, name, out, e);
}

bool srv_req_tools(srv_request *rq, const cJSON *root, srv_reqerr *e) {
    return parse_tools(rq, root, e);
}

bool srv_req_begin(const char *body, size_t len, srv_request *rq, srv_reqerr *e) {
    lm_error jerr = {0};
    if (lm_json_parse(body, len, "request body", &rq->root, &jerr) != LM_OK)
        return fail(e, NULL, "%s", jerr.code == LM_ERR_NOMEM ? "out of memory" : jerr.msg);
    if (!cJSON_IsObject(rq->root)) return fail(e, NULL, "the request body must be a JSON object");
    char nul_at[64];
    if (find_nul(body, len, nul_at, sizeof nul_at))
        return fail(e, nul_at, "'%s' must not contain a NUL character (\\u0000)", nul_at);
    return true;
}

void srv_request_free(srv_request *rq) {
    if (!rq) return;
    for (size_t i = 0; i < rq->n_owned; i++) lm_free(rq->owned[i]);
    lm_free(rq->owned);
    lm_free(rq->msgs);
    lm_free(rq->tools_json);
    lm_free(rq->schema_text);
    cJSON_Delete(rq->root);
    memset(rq, 0, sizeof *rq);
}

/* ---- OpenAI's error JSON ---- */

static const char *error_type(unsigned status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 500: case 502: case 503: return "server_error";
    default: return "invalid_request_error";
    }
}

cJSON *srv_error_json(unsigned status, const char *param, const char *msg) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_CreateObject();
    if (!root || !e) {
        cJSON_Delete(root);
        cJSON_Delete(e);
        return NULL;
    }
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", error_type(status));
    if (param && *param)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    if (status == 401)
        cJSON_AddStringToObject(e, "code", "invalid_api_key");
    else
        cJSON_AddNullToObject(e, "code");
    cJSON_AddItemToObject(root, "error", e);
    return root;
}

char *srv_error_body(unsigned status, const char *msg) {
    cJSON *j = srv_error_json(status, NULL, msg);
    char *text = j ? lm_json_print(j) : NULL;
    cJSON_Delete(j);
    return text;
}
