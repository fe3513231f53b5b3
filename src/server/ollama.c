/* server/ollama.c: Ollama's API (https://github.com/ollama/ollama/blob/main/docs/api.md) on the
 * same generations as the OpenAI routes.
 * Owns: mapping /api/chat and /api/generate bodies (messages, prompt/system/raw, options, format,
 * tools, logprobs, keep_alive) into a srv_request, and Ollama's response objects: streamed
 * chunks, the final object with its durations in nanoseconds, /api/tags and /api/show.
 * Does not own: HTTP, jobs and NDJSON framing (server/server.c), the OpenAI fields both APIs
 * share (server/request.c). */
#include "server/server.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---- requests ---- */

static bool keep_owned(srv_request *rq, size_t cap, char *s) {
    if (!s || rq->n_owned >= cap) {
        lm_free(s);
        return false;
    }
    rq->owned[rq->n_owned++] = s;
    return true;
}

/* Ollama's tool calls ({"function":{"name":..,"arguments":{..}}}) as the OpenAI array the chat
 * templates read, arguments kept as an object. */
static char *tool_calls_text(const cJSON *tc, const char *param, srv_reqerr *e) {
    cJSON *out = cJSON_CreateArray();
    if (!out) return NULL;
    size_t k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, tc) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsObject(fn) || !cJSON_IsString(name) || (args && !cJSON_IsObject(args))) {
            cJSON_Delete(out);
            srv_req_fail(e, param, "'%s[%zu]' must be {\"function\": {\"name\": string, \"arguments\": object}}",
                         param, k);
            return NULL;
        }
        cJSON *o = cJSON_CreateObject(), *f = cJSON_CreateObject();
        if (!o || !f || !cJSON_AddItemToArray(out, o)) {
            cJSON_Delete(o);
            cJSON_Delete(f);
            break;
        }
        cJSON_AddStringToObject(o, "type", "function");
        cJSON_AddItemToObject(o, "function", f);
        cJSON_AddStringToObject(f, "name", name->valuestring);
        cJSON_AddItemToObject(f, "arguments", args ? cJSON_Duplicate(args, true) : cJSON_CreateObject());
        k++;
    }
    char *s = lm_json_print(out);
    cJSON_Delete(out);
    if (!s) srv_req_fail(e, NULL, "out of memory");
    return s;
}

static const char *const ROLES[] = {"system", "user", "assistant", "tool"};

static bool parse_message(srv_request *rq, size_t cap, const cJSON *m, size_t i, srv_reqerr *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu]", i);
    if (!cJSON_IsObject(m)) return srv_req_fail(e, param, "'%s' must be an object", param);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(m, "images");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
    const cJSON *tool_name = cJSON_GetObjectItemCaseSensitive(m, "tool_name");
    lm_message *out = &rq->msgs[i];
    for (size_t k = 0; cJSON_IsString(role) && k < LM_ARRAY_LEN(ROLES); k++)
        if (strcmp(role->valuestring, ROLES[k]) == 0) out->role = ROLES[k];
    if (!out->role)
        return srv_req_fail(e, param, "'%s.role' must be \"system\", \"user\", \"assistant\" or \"tool\"", param);
    if (content && !cJSON_IsNull(content) && !cJSON_IsString(content))
        return srv_req_fail(e, param, "'%s.content' must be a string", param);
    out->content = cJSON_IsString(content) ? content->valuestring : "";
    if (cJSON_IsArray(images) && cJSON_GetArraySize(images) > 0)
        return srv_req_fail(e, param, "'%s.images': this model takes text only", param);
    if (tool_name && !cJSON_IsNull(tool_name)) {
        if (!cJSON_IsString(tool_name)) return srv_req_fail(e, param, "'%s.tool_name' must be a string", param);
        out->name = tool_name->valuestring;
    }
    if (tc && !cJSON_IsNull(tc)) {
        snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
        if (!cJSON_IsArray(tc)) return srv_req_fail(e, param, "'%s' must be an array", param);
        if (out->role != ROLES[2]) return srv_req_fail(e, param, "'%s': only assistant messages carry tool calls", param);
        char *s = tool_calls_text(tc, param, e);
        if (!s) return false;
        if (!keep_owned(rq, cap, s)) return srv_req_fail(e, NULL, "out of memory");
        out->tool_calls_json = s;
    }
    return true;
}

static bool parse_messages(srv_request *rq, const cJSON *msgs, srv_reqerr *e) {
    if (msgs && !cJSON_IsNull(msgs) && !cJSON_IsArray(msgs))
        return srv_req_fail(e, "messages", "'messages' must be an array");
    size_t n = msgs ? (size_t)cJSON_GetArraySize(msgs) : 0;
    rq->msgs = lm_calloc(n + 1, sizeof *rq->msgs);
    size_t cap = n + 2;
    rq->owned = lm_calloc(cap, sizeof *rq->owned);
    if (!rq->msgs || !rq->owned) return srv_req_fail(e, NULL, "out of memory");
    size_t i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        if (!parse_message(rq, cap, m, i, e)) return false;
        i++;
    }
    rq->n_msgs = n;
    rq->ollama_load = n == 0;
    return true;
}

/* /api/generate: the prompt (with "system") through the chat template, or as it is with "raw". */
static bool parse_prompt(srv_request *rq, const cJSON *root, srv_reqerr *e) {
    static const char *const unsupported[] = {"suffix", "template", "context"};
    for (size_t k = 0; k < LM_ARRAY_LEN(unsupported); k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, unsupported[k]);
        bool empty = !v || cJSON_IsNull(v) || (cJSON_IsString(v) && !v->valuestring[0]) ||
                     (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0);
        if (!empty)
            return srv_req_fail(e, unsupported[k], "'%s' is not supported by locallm%s", unsupported[k],
                                k == 2 ? " (send the conversation to /api/chat)" : "");
    }
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    if (cJSON_IsArray(images) && cJSON_GetArraySize(images) > 0)
        return srv_req_fail(e, "images", "'images': this model takes text only");
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON *system = cJSON_GetObjectItemCaseSensitive(root, "system");
    if (prompt && !cJSON_IsNull(prompt) && !cJSON_IsString(prompt))
        return srv_req_fail(e, "prompt", "'prompt' must be a string");
    if (system && !cJSON_IsNull(system) && !cJSON_IsString(system))
        return srv_req_fail(e, "system", "'system' must be a string");
    bool raw = false;
    if (!srv_req_bool(root, "raw", &raw, e)) return false;
    if (!cJSON_IsString(prompt) || !prompt->valuestring[0]) {
        rq->ollama_load = true;
        return true;
    }
    if (raw) {
        rq->chat = false;
        rq->prompt = prompt->valuestring;
        return true;
    }
    rq->msgs = lm_calloc(2, sizeof *rq->msgs);
    if (!rq->msgs) return srv_req_fail(e, NULL, "out of memory");
    if (cJSON_IsString(system) && system->valuestring[0])
        rq->msgs[rq->n_msgs++] = (lm_message){.role = "system", .content = system->valuestring};
    rq->msgs[rq->n_msgs++] = (lm_message){.role = "user", .content = prompt->valuestring};
    return true;
}

static bool parse_stop(srv_request *rq, const cJSON *stop, srv_reqerr *e) {
    if (!stop || cJSON_IsNull(stop)) return true;
    if (cJSON_IsString(stop)) {
        if (stop->valuestring[0]) rq->gp.stop[0] = stop->valuestring;
        return true;
    }
    if (!cJSON_IsArray(stop)) return srv_req_fail(e, "options.stop", "'options.stop' must be an array of strings");
    size_t n = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, stop) {
        if (!cJSON_IsString(s)) return srv_req_fail(e, "options.stop", "'options.stop' must hold strings");
        if (!s->valuestring[0]) continue;
        if (n + 1 >= LM_MAX_STOP)
            return srv_req_fail(e, "options.stop", "'options.stop' holds at most %d strings", LM_MAX_STOP - 1);
        rq->gp.stop[n++] = s->valuestring;
    }
    return true;
}

/* A number option; the error names it "options.NAME". */
static bool opt_num(const cJSON *o, const char *name, double lo, double hi, bool integral, double *out,
                    bool *present, srv_reqerr *e) {
    if (srv_req_num(o, name, lo, hi, integral, out, present, e)) return true;
    char tmp[sizeof e->msg];
    snprintf(tmp, sizeof tmp, "%s", e->msg);
    srv_req_fail(e, NULL, "options: %s", tmp);
    snprintf(e->param, sizeof e->param, "options.%.50s", name);
    return false;
}

/* "options" (the Modelfile parameters). Defaults are Ollama's; options that do not apply to
 * locallm (num_gpu, num_thread, mirostat...) are accepted and have no effect, as Ollama ignores
 * those it does not know. num_ctx cannot grow a slot's context: the server's --ctx is used. */
static bool parse_options(srv_request *rq, const cJSON *o, int32_t n_ctx, srv_reqerr *e) {
    lm_gen_params *gp = &rq->gp;
    gp->temperature = 0.8f;
    gp->top_k = 40;
    gp->top_p = 0.9f;
    gp->repeat_penalty = 1.1f;
    gp->penalty_last_n = 64;
    gp->max_tokens = -1; /* num_predict -1: until the context is full */
    if (!o || cJSON_IsNull(o)) return true;
    if (!cJSON_IsObject(o)) return srv_req_fail(e, "options", "'options' must be an object");
    double d = gp->temperature;
    bool present;
    if (!opt_num(o, "temperature", 0, 100, false, &d, NULL, e)) return false;
    gp->temperature = (float)d;
    d = gp->top_k;
    if (!opt_num(o, "top_k", 0, 1e9, true, &d, NULL, e)) return false;
    gp->top_k = (int32_t)d;
    d = gp->top_p;
    if (!opt_num(o, "top_p", 0, 1, false, &d, NULL, e)) return false;
    gp->top_p = (float)d;
    d = gp->min_p;
    if (!opt_num(o, "min_p", 0, 1, false, &d, NULL, e)) return false;
    gp->min_p = (float)d;
    d = gp->repeat_penalty;
    if (!opt_num(o, "repeat_penalty", 0, 100, false, &d, NULL, e)) return false;
    gp->repeat_penalty = d == 0 ? 1.0f : (float)d;
    d = gp->penalty_last_n;
    if (!opt_num(o, "repeat_last_n", -1, 1e9, true, &d, NULL, e)) return false;
    gp->penalty_last_n = (int32_t)d;
    d = 0;
    if (!opt_num(o, "presence_penalty", -100, 100, false, &d, NULL, e)) return false;
    gp->presence_penalty = (float)d;
    d = 0;
    if (!opt_num(o, "frequency_penalty", -100, 100, false, &d, NULL, e)) return false;
    gp->frequency_penalty = (float)d;
    d = 0;
    if (!opt_num(o, "seed", -9.2e18, 1.8e19, true, &d, &rq->seeded, e)) return false;
    gp->seed = d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
    /* -1: until the context is full; -2: fill the context (the same here) */
    d = -1;
    if (!opt_num(o, "num_predict", -2, 1e9, true, &d, &present, e)) return false;
    if (present && n_ctx > 0 && d > n_ctx)
        return srv_req_fail(e, "options.num_predict", "options: 'num_predict' is %.0f but the context window holds %d tokens",
                            d, (int)n_ctx);
    gp->max_tokens = d > 0 ? (int32_t)d : -1;
    d = 0;
    if (!opt_num(o, "num_ctx", 1, 1e9, true, &d, NULL, e)) return false;
    return parse_stop(rq, cJSON_GetObjectItemCaseSensitive(o, "stop"), e);
}

/* "format": "json" (any JSON object) or a JSON Schema; "" or null: free text. */
static bool parse_format(srv_request *rq, const cJSON *root, srv_reqerr *e) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!f || cJSON_IsNull(f) || (cJSON_IsString(f) && !f->valuestring[0])) return true;
    if (cJSON_IsString(f)) {
        if (strcmp(f->valuestring, "json") != 0)
            return srv_req_fail(e, "format", "'format' must be \"json\" or a JSON Schema object (got \"%.40s\")",
                                f->valuestring);
        rq->gp.json_object = true;
        return true;
    }
    if (!cJSON_IsObject(f)) return srv_req_fail(e, "format", "'format' must be \"json\" or a JSON Schema object");
    return srv_req_schema(rq, f, "format", e);
}

/* The fields both endpoints share besides options and format. */
static bool parse_common(srv_request *rq, const cJSON *root, const char *model_id, srv_reqerr *e) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsString(model) || !model->valuestring[0]) return srv_req_fail(e, "model", "model is required");
    size_t n = strlen(model_id);
    const char *name = model->valuestring;
    if (!(strncmp(name, model_id, n) == 0 && (!name[n] || strcmp(name + n, ":latest") == 0))) {
        srv_req_fail(e, "model", "model \"%.100s\" not found, try pulling it first (this server has \"%.100s\")",
                     name, model_id);
        e->status = 404;
        return false;
    }
    rq->stream = true; /* Ollama streams unless told not to */
    if (!srv_req_bool(root, "stream", &rq->stream, e)) return false;
    const cJSON *ka = cJSON_GetObjectItemCaseSensitive(root, "keep_alive");
    /* accepted: the server keeps its one model loaded whatever it says */
    if (ka && !cJSON_IsNull(ka) && !cJSON_IsString(ka) && !cJSON_IsNumber(ka))
        return srv_req_fail(e, "keep_alive", "'keep_alive' must be a duration (\"5m\") or a number of seconds");
    const cJSON *think = cJSON_GetObjectItemCaseSensitive(root, "think");
    if (cJSON_IsTrue(think) || cJSON_IsString(think))
        return srv_req_fail(e, "think", "\"%.100s\" does not support thinking", model_id);
    double d = 0;
    bool present = false;
    if (!srv_req_bool(root, "logprobs", &rq->logprobs, e)) return false;
    if (!srv_req_num(root, "top_logprobs", 0, LM_MAX_TOP_LOGPROBS, true, &d, &present, e)) return false;
    if (rq->logprobs) rq->gp.top_logprobs = (int32_t)d;
    return true;
}

bool srv_ollama_parse(const char *body, size_t len, bool chat, int32_t n_ctx, const char *model_id,
                      srv_request *rq, srv_reqerr *e) {
    memset(rq, 0, sizeof *rq);
    memset(e, 0, sizeof *e);
    rq->api = SRV_API_OLLAMA;
    rq->chat = true;
    rq->ollama_generate = !chat;
    rq->gp = lm_gen_default_params();
    bool ok = srv_req_begin(body, len, rq, e) && parse_common(rq, rq->root, model_id, e) &&
              parse_options(rq, cJSON_GetObjectItemCaseSensitive(rq->root, "options"), n_ctx, e) &&
              parse_format(rq, rq->root, e);
    if (ok && chat) ok = parse_messages(rq, cJSON_GetObjectItemCaseSensitive(rq->root, "messages"), e) &&
                         srv_req_tools(rq, rq->root, e);
    if (ok && !chat) ok = parse_prompt(rq, rq->root, e);
    if (ok && !rq->ollama_load) ok = srv_req_key(rq, e);
    if (!ok) srv_request_free(rq);
    return ok;
}

/* ---- responses ---- */

void srv_ollama_time(char out[40]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    char s[24] = "1970-01-01T00:00:00";
    if (gmtime_r(&ts.tv_sec, &tm)) strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%s.%09ldZ", s, (long)ts.tv_nsec);
}

static cJSON *base(const srv_request *rq, const char *model) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(rq->root, "model");
    char t[40];
    srv_ollama_time(t);
    cJSON_AddStringToObject(o, "model", cJSON_IsString(m) ? m->valuestring : model);
    cJSON_AddStringToObject(o, "created_at", t);
    return o;
}

/* OpenAI tool calls (arguments as text) in Ollama's shape (arguments as an object). */
static cJSON *ollama_calls(const cJSON *calls) {
    cJSON *out = cJSON_CreateArray();
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        cJSON *a = NULL;
        if (cJSON_IsString(args)) lm_json_parse(args->valuestring, strlen(args->valuestring), "arguments", &a, NULL);
        else if (args) a = cJSON_Duplicate(args, true);
        if (!cJSON_IsObject(a)) {
            cJSON_Delete(a);
            a = cJSON_CreateObject();
        }
        cJSON *o = cJSON_CreateObject(), *f = cJSON_CreateObject();
        if (!out || !o || !f || !a) {
            cJSON_Delete(o);
            cJSON_Delete(f);
            cJSON_Delete(a);
            continue;
        }
        cJSON_AddStringToObject(f, "name", cJSON_IsString(name) ? name->valuestring : "");
        cJSON_AddItemToObject(f, "arguments", a);
        cJSON_AddItemToObject(o, "function", f);
        cJSON_AddItemToArray(out, o);
    }
    return out;
}

cJSON *srv_ollama_response(const srv_ollama_out *o) {
    cJSON *r = base(o->rq, o->model);
    char *text = lm_malloc(o->len + 1);
    if (!r || !text) {
        cJSON_Delete(r);
        cJSON_Delete(o->logprobs);
        lm_free(text);
        return NULL;
    }
    if (o->len) memcpy(text, o->text, o->len);
    text[o->len] = '\0';
    if (o->rq->ollama_generate) {
        cJSON_AddStringToObject(r, "response", text);
    } else {
        cJSON *msg = cJSON_AddObjectToObject(r, "message");
        if (msg) {
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", text);
            if (o->tool_calls) cJSON_AddItemToObject(msg, "tool_calls", ollama_calls(o->tool_calls));
        }
    }
    lm_free(text);
    if (o->logprobs) cJSON_AddItemToObject(r, "logprobs", o->logprobs);
    cJSON_AddBoolToObject(r, "done", o->stats != NULL);
    if (!o->stats) return r;
    const lm_gen_stats *st = o->stats;
    cJSON_AddStringToObject(r, "done_reason", o->done_reason);
    cJSON_AddNumberToObject(r, "total_duration", (double)o->total_ns);
    cJSON_AddNumberToObject(r, "load_duration", 0); /* the model was loaded at start */
    cJSON_AddNumberToObject(r, "prompt_eval_count", st->n_prompt);
    cJSON_AddNumberToObject(r, "prompt_eval_duration", (double)(int64_t)(st->prefill_ms * 1e6));
    cJSON_AddNumberToObject(r, "eval_count", st->n_generated);
    cJSON_AddNumberToObject(r, "eval_duration", (double)(int64_t)(st->decode_ms * 1e6));
    return r;
}

cJSON *srv_ollama_loaded(const srv_request *rq, const char *model) {
    cJSON *r = base(rq, model);
    if (!r) return NULL;
    if (rq->ollama_generate) {
        cJSON_AddStringToObject(r, "response", "");
    } else {
        cJSON *msg = cJSON_AddObjectToObject(r, "message");
        if (msg) {
            cJSON_AddStringToObject(msg, "role", "assistant");
            cJSON_AddStringToObject(msg, "content", "");
        }
    }
    cJSON_AddStringToObject(r, "done_reason", "load");
    cJSON_AddBoolToObject(r, "done", true);
    return r;
}

/* ---- /api/tags and /api/show ---- */

/* "0.5B", "7.2B", "5M" as Ollama writes parameter sizes. */
static void param_size(uint64_t n, char out[16]) {
    if (n >= 1000000000u) snprintf(out, 16, "%.1fB", (double)n / 1e9);
    else if (n >= 1000000u) snprintf(out, 16, "%.0fM", (double)n / 1e6);
    else snprintf(out, 16, "%.0fK", (double)n / 1e3);
}

/* The weight type of the feed-forward tensors ("Q4_K"), from lm_model_info.quant. */
static void quant_level(const char *quant, char out[16]) {
    const char *p = quant ? strstr(quant, "ffn: ") : NULL;
    if (!p && quant) p = strstr(quant, "attn: ");
    snprintf(out, 16, "unknown");
    if (!p) return;
    p = strchr(p, ' ') + 1;
    size_t n = strcspn(p, " ,;");
    snprintf(out, 16, "%.*s", (int)LM_MIN(n, 15), p);
}

static cJSON *details(const srv_model_facts *f) {
    cJSON *d = cJSON_CreateObject();
    if (!d) return NULL;
    lm_model_info info;
    memset(&info, 0, sizeof info);
    if (f->model) lm_model_get_info(f->model, &info);
    char ps[16] = "", ql[16] = "";
    if (f->model) {
        param_size(info.n_params, ps);
        quant_level(info.quant, ql);
    }
    cJSON_AddStringToObject(d, "parent_model", "");
    cJSON_AddStringToObject(d, "format", info.format ? info.format : "");
    cJSON_AddStringToObject(d, "family", info.arch ? info.arch : "");
    cJSON *fam = cJSON_AddArrayToObject(d, "families");
    if (fam && info.arch) cJSON_AddItemToArray(fam, cJSON_CreateString(info.arch));
    cJSON_AddStringToObject(d, "parameter_size", ps);
    cJSON_AddStringToObject(d, "quantization_level", ql);
    return d;
}

/* The served name with Ollama's default tag. */
static void tagged(const char *id, char *out, size_t cap) {
    snprintf(out, cap, "%s%s", id, strchr(id, ':') ? "" : ":latest");
}

/* The file's modification time as RFC 3339 and its size (0 for a folder). */
static void file_facts(const char *path, char when[40], double *size) {
    struct stat sb;
    snprintf(when, 40, "1970-01-01T00:00:00Z");
    *size = 0;
    if (!path || stat(path, &sb) != 0) return;
    struct tm tm;
    if (gmtime_r(&sb.st_mtime, &tm)) strftime(when, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (S_ISREG(sb.st_mode)) *size = (double)sb.st_size;
}

cJSON *srv_ollama_tags(const srv_model_facts *f) {
    cJSON *root = cJSON_CreateObject(), *models = cJSON_CreateArray(), *m = cJSON_CreateObject();
    if (!root || !models || !m) {
        cJSON_Delete(root);
        cJSON_Delete(models);
        cJSON_Delete(m);
        return NULL;
    }
    char name[300], when[40], digest[20];
    double size;
    tagged(f->id, name, sizeof name);
    file_facts(f->path, when, &size);
    if (size == 0 && f->model) {
        lm_model_info info;
        lm_model_get_info(f->model, &info);
        size = (double)info.weight_bytes;
    }
    /* Ollama's digest names a manifest; locallm has none: an FNV-1a hash of the path, size and
       time identifies the file without reading it */
    uint64_t h = 1469598103934665603u;
    char key[400];
    int kn = snprintf(key, sizeof key, "%s|%.0f|%s", f->path ? f->path : "", size, when);
    for (int i = 0; i < kn && i < (int)sizeof key; i++) h = (h ^ (unsigned char)key[i]) * 1099511628211u;
    snprintf(digest, sizeof digest, "%016llx", (unsigned long long)h);
    cJSON_AddStringToObject(m, "name", name);
    cJSON_AddStringToObject(m, "model", name);
    cJSON_AddStringToObject(m, "modified_at", when);
    cJSON_AddNumberToObject(m, "size", size);
    cJSON_AddStringToObject(m, "digest", digest);
    cJSON_AddItemToObject(m, "details", details(f));
    cJSON_AddItemToArray(models, m);
    cJSON_AddItemToObject(root, "models", models);
    return root;
}

static void add_model_info(cJSON *mi, const lm_model *m) {
    lm_model_info info;
    lm_model_get_info(m, &info);
    const char *a = info.arch ? info.arch : "unknown";
    char key[96];
    cJSON_AddStringToObject(mi, "general.architecture", a);
    cJSON_AddNumberToObject(mi, "general.parameter_count", (double)info.n_params);
    const struct { const char *name; int32_t v; } kv[] = {
        {"context_length", info.n_ctx_train}, {"embedding_length", info.n_embd},
        {"block_count", info.n_layer}, {"feed_forward_length", info.n_ff},
        {"attention.head_count", info.n_head}, {"attention.head_count_kv", info.n_head_kv},
        {"vocab_size", info.n_vocab},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(kv); i++) {
        snprintf(key, sizeof key, "%.40s.%s", a, kv[i].name);
        cJSON_AddNumberToObject(mi, key, kv[i].v);
    }
}

cJSON *srv_ollama_show(const srv_model_facts *f) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    char when[40], params[64], *modelfile = NULL;
    double size;
    file_facts(f->path, when, &size);
    snprintf(params, sizeof params, "num_ctx                        %d", (int)f->n_ctx);
    size_t cap = strlen(f->path ? f->path : "") + 128;
    modelfile = lm_malloc(cap);
    if (modelfile)
        snprintf(modelfile, cap, "# Modelfile generated by locallm\nFROM %s\nPARAMETER num_ctx %d\n",
                 f->path ? f->path : "", (int)f->n_ctx);
    cJSON_AddStringToObject(root, "license", "");
    cJSON_AddStringToObject(root, "modelfile", modelfile ? modelfile : "");
    lm_free(modelfile);
    cJSON_AddStringToObject(root, "parameters", params);
    cJSON_AddStringToObject(root, "template", f->template_src ? f->template_src : "");
    cJSON_AddItemToObject(root, "details", details(f));
    cJSON *mi = cJSON_AddObjectToObject(root, "model_info");
    if (mi && f->model) add_model_info(mi, f->model);
    cJSON *caps = cJSON_AddArrayToObject(root, "capabilities");
    if (caps) {
        cJSON_AddItemToArray(caps, cJSON_CreateString("completion"));
        /* a template that renders a tools list can offer them */
        if (f->template_src && strstr(f->template_src, "tools")) cJSON_AddItemToArray(caps, cJSON_CreateString("tools"));
    }
    cJSON_AddStringToObject(root, "modified_at", when);
    return root;
}
