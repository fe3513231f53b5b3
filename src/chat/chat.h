/* chat/chat.h: the internal header of src/chat.
 * Owns: the Jinja subset interpreter (chat/jinja/) and turning a message list into prompt text
 * with a model's template or a built-in fallback; parsing tool calls out of generated text.
 * Does not own: tokenization (tokenizer/). */
#ifndef LM_CHAT_H
#define LM_CHAT_H

#include "core/core.h"

/* ---------------------------------- Jinja (chat/jinja/) ------------------------------------- */

typedef struct jinja_template jinja_template;

typedef struct jinja_opts {
    bool trim_blocks;   /* transformers sets both */
    bool lstrip_blocks;
    /* strftime_now() uses this clock (seconds since the epoch, local time rules as the C
     * library's localtime_r); NULL: time(). */
    int64_t (*now)(void *user);
    void *now_user;
    size_t max_output;  /* bytes; 0: 16 MiB */
    size_t max_steps;   /* loop iterations + calls; 0: 10 million */
    size_t max_depth;   /* recursion (macros, nesting); 0: 200 */
    /* bytes one render may hold besides its output: values, copies of the variables, captured
     * macro and {% set %} block text, temporaries (tojson, join, ...); 0: JINJA_MAX_MEMORY */
    size_t max_memory;
} jinja_opts;

#define JINJA_MAX_MEMORY ((size_t)128 << 20)

jinja_opts jinja_default_opts(void); /* transformers' settings: trim_blocks, lstrip_blocks */

/* Parses a template. Syntax errors: LM_ERR_FORMAT "template line L column C: expected X, found Y". */
lm_status jinja_parse(const char *src, size_t len, jinja_template **out, lm_error *err);
void jinja_free(jinja_template *t);
/* Renders with vars, a JSON object whose members are the template's variables (messages, tools,
 * add_generation_prompt, bos_token, ...). Appends to out. raise_exception(msg) gives
 * LM_ERR_TEMPLATE with msg; runaway templates LM_ERR_TEMPLATE naming the limit (max_steps,
 * max_output, max_depth, max_memory). A for loop over range() does not build the list. */
lm_status jinja_render(const jinja_template *t, const cJSON *vars, const jinja_opts *opts,
                       lm_buf *out, lm_error *err);

/* ------------------------------------ chat (chat/chat.c) ------------------------------------ */

/* What the template sees besides the messages. */
typedef struct chat_vars {
    const char *bos_token;       /* "" when none */
    const char *eos_token;
    bool add_generation_prompt;
    const cJSON *tools;          /* JSON array or NULL */
    const cJSON *extra;          /* JSON object of extra variables (date_string...) or NULL */
} chat_vars;

/* Built-in formats used when a model has no template: the Jinja source of one by name ("llama3", "mistral", "chatml", "zephyr"), or NULL. */
const char *chat_builtin_source(const char *name);

/* Renders messages (a JSON array of OpenAI-style message objects) with template src (parsed, then
 * rendered by chat_render_parsed). */
lm_status chat_render(const char *template_src, const cJSON *messages, const chat_vars *vars,
                      const jinja_opts *opts, lm_buf *out, lm_error *err);
/* The same with a template parsed once (a model's, at load). t is only read: several threads may
 * render one template at once. */
lm_status chat_render_parsed(const jinja_template *t, const cJSON *messages, const chat_vars *vars,
                             const jinja_opts *opts, lm_buf *out, lm_error *err);

/* Tool calls parsed out of generated text. */
typedef struct chat_tool_call {
    char *name;       /* owned */
    char *arguments;  /* JSON text of the arguments object (owned) */
    char *id;         /* generated id or the model's, owned, may be NULL */
} chat_tool_call;

enum chat_tool_format { CHAT_TOOLS_NONE, CHAT_TOOLS_HERMES /* <tool_call>{..}</tool_call> */,
                        CHAT_TOOLS_LLAMA3 /* <|python_tag|> or bare JSON */,
                        CHAT_TOOLS_MISTRAL /* [TOOL_CALLS][{..}] */ };

/* Finds tool calls in text. *calls (n) are owned by the caller: chat_tool_calls_free. content_len
 * gets the length of the text before the first call (what to show as content). */
lm_status chat_parse_tool_calls(int format, const char *text, size_t len, chat_tool_call **calls,
                                size_t *n, size_t *content_len, lm_error *err);
void chat_tool_calls_free(chat_tool_call *calls, size_t n);

/* Appends to out a grammar (sample/grammar.c syntax, rule root) that a reply calling tools in
 * format (enum chat_tool_format) must follow: tool_choice "required" when function is NULL (any
 * of the tools), a named function otherwise; parallel allows several calls (Hermes: several
 * <tool_call> blocks; Mistral: several array elements; Llama 3's bare JSON object holds one, so
 * parallel has no effect there). Each call is {"name": "...", "arguments": {...}} ("parameters"
 * for Llama 3) with the arguments following the tool's "parameters" schema; keywords the schema
 * converter cannot enforce (pattern, minimum...) are ignored rather than refused. Mistral's
 * grammar starts with the token [TOOL_CALLS] (<[TOOL_CALLS]>), which the vocabulary must have.
 * Errors: LM_ERR_FORMAT (malformed tools, unknown function), LM_ERR_UNSUPPORTED (format NONE);
 * out is left as it was. */
lm_status chat_tool_grammar(const char *tools_json, int format, const char *function, bool parallel,
                            lm_buf *out, lm_error *err);

#endif /* LM_CHAT_H */
