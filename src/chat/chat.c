/* chat/chat.c: turns a message list into prompt text with a Jinja chat template.
 * Owns: the template variables (messages, tools, add_generation_prompt, bos/eos tokens, extra
 * members) and the built-in formats used when a model ships no template.
 * Does not own: the interpreter (chat/jinja/) or tool-call parsing (tools.c). */
#include "chat/chat.h"

/* Built-in formats, written for this project after each family's published prompt layout. A
 * message content that is not a string (null on a tool-call turn) renders as nothing. */
static const char LLAMA3_SRC[] =
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- (message['content'] if message['content'] is string else '') | trim }}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

static const char MISTRAL_SRC[] =
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set sys = messages[0]['content'] ~ '\\n\\n' %}{%- set msgs = messages[1:] %}"
    "{%- else %}{%- set sys = '' %}{%- set msgs = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in msgs %}"
    "{%- set content = message['content'] if message['content'] is string else '' %}"
    "{%- if message['role'] == 'user' %}"
    "{{- '[INST] ' + (sys if loop.first else '') + content + ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + content + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}";

static const char CHATML_SRC[] =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{{- message['content'] if message['content'] is string else '' }}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

static const char ZEPHYR_SRC[] =
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\\n' }}"
    "{{- message['content'] if message['content'] is string else '' }}"
    "{{- eos_token + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}";

const char *chat_builtin_source(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "llama3") == 0) return LLAMA3_SRC;
    if (strcmp(name, "mistral") == 0) return MISTRAL_SRC;
    if (strcmp(name, "chatml") == 0) return CHATML_SRC;
    if (strcmp(name, "zephyr") == 0) return ZEPHYR_SRC;
    return NULL;
}

static bool add_ref(cJSON *obj, const char *key, const cJSON *item) {
    cJSON *dup = cJSON_Duplicate(item, true);
    if (!dup) return false;
    if (!cJSON_AddItemToObject(obj, key, dup)) {
        cJSON_Delete(dup);
        return false;
    }
    return true;
}

lm_status chat_render_parsed(const jinja_template *t, const cJSON *messages, const chat_vars *vars,
                             const jinja_opts *opts, lm_buf *out, lm_error *err) {
    if (!t || !messages || !vars || !out)
        return lm_fail(err, LM_ERR_MISUSE, "chat_render: NULL template, messages, vars or output");
    if (!cJSON_IsArray(messages))
        return lm_fail(err, LM_ERR_MISUSE, "chat_render: messages must be a JSON array");
    lm_status st;
    cJSON *v = cJSON_CreateObject();
    bool ok = v != NULL;
    if (ok && vars->extra && cJSON_IsObject(vars->extra))
        for (const cJSON *e = vars->extra->child; ok && e; e = e->next) ok = add_ref(v, e->string, e);
    /* the named variables win over extra members of the same name */
    static const char *const named[] = {"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"};
    for (size_t i = 0; ok && i < LM_ARRAY_LEN(named); i++) cJSON_DeleteItemFromObjectCaseSensitive(v, named[i]);
    ok = ok && add_ref(v, "messages", messages);
    if (ok && vars->tools) ok = add_ref(v, "tools", vars->tools);
    ok = ok && cJSON_AddBoolToObject(v, "add_generation_prompt", vars->add_generation_prompt);
    ok = ok && cJSON_AddStringToObject(v, "bos_token", vars->bos_token ? vars->bos_token : "");
    ok = ok && cJSON_AddStringToObject(v, "eos_token", vars->eos_token ? vars->eos_token : "");
    if (!ok) st = lm_fail_nomem(err, "template variables");
    else st = jinja_render(t, v, opts, out, err);
    cJSON_Delete(v);
    return st;
}

lm_status chat_render(const char *template_src, const cJSON *messages, const chat_vars *vars,
                      const jinja_opts *opts, lm_buf *out, lm_error *err) {
    if (!template_src || !messages || !vars || !out)
        return lm_fail(err, LM_ERR_MISUSE, "chat_render: NULL template, messages, vars or output");
    if (!cJSON_IsArray(messages))
        return lm_fail(err, LM_ERR_MISUSE, "chat_render: messages must be a JSON array");
    jinja_template *t = NULL;
    lm_status st = jinja_parse(template_src, strlen(template_src), &t, err);
    if (st) return st;
    st = chat_render_parsed(t, messages, vars, opts, out, err);
    jinja_free(t);
    return st;
}
