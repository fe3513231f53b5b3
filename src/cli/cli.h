/* cli/cli.h: the internal header of the locallm command-line tool.
 * Owns: what the subcommands share: error and usage reporting, strict number parsing, the
 * option tables (options.c) and the shared options, the embedded models' paths, model loading
 * with a progress bar (load.c), the conversation chat and voice hold (convo.c), JSON string output
 * and a clock. The helpers are layered, each file calling
 * only those before it: util.c, options.c, pull.c, load.c, then the subcommands (which never call
 * each other's files, bar chat.c's helpers below). The CLI calls the public API
 * (include/locallm.h) and a few internal headers (hub, server); it is allowed to print and exit.
 * Exit codes: 0 success, 1 an error while doing the work, 2 a usage error. */
#ifndef LM_CLI_H
#define LM_CLI_H

#include "locallm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

enum { CLI_EXIT_OK = 0, CLI_EXIT_ERROR = 1, CLI_EXIT_USAGE = 2 };

/* Subcommands. argv[0] is the subcommand's name; each returns the process exit code. */
int cli_run(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_tokenize(int argc, char **argv);
int cli_detokenize(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_bench(int argc, char **argv);
/* bench --parallel (cli/bench_parallel.c): ns[0..n_ns) concurrent conversations in turn. */
int cli_bench_parallel(lm_model *model, const char *model_path, const int32_t *ns, size_t n_ns, int32_t n_prompt,
                       int32_t n_gen, int32_t reps, bool json);
/* bench --parallel N --long-prompt P: the largest gap between two tokens of N generating
 * conversations while a P-token prompt joins, and that request's time to first token. */
int cli_bench_long_prompt(lm_model *model, const char *model_path, int32_t n_streams, int32_t long_prompt,
                          int32_t n_ctx, bool json);
int cli_serve(int argc, char **argv);
int cli_chat(int argc, char **argv);
int cli_template(int argc, char **argv);
int cli_voice(int argc, char **argv);
int cli_pull(int argc, char **argv);
int cli_ls(int argc, char **argv);
int cli_rm(int argc, char **argv);
int cli_convert(int argc, char **argv);

/* pull.c: downloads (or, offline, finds in the cache) ref "org/name[@rev][:QUANT]" with the
 * HF_ENDPOINT / HF_TOKEN settings; out gets the snapshot folder or the chosen .gguf. Returns
 * CLI_EXIT_USAGE for an invalid id, CLI_EXIT_ERROR on failure (printed when report is true). */
int cli_hub_fetch(const char *ref, const char *const *includes, size_t n_includes, bool quiet,
                  bool offline, bool report, char *out, size_t cap);
/* True when HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) is true (cli_env_true). */
bool cli_hub_offline(void);
/* True when the variable is set to 1, ON, YES or TRUE in any case (huggingface_hub's rule). */
bool cli_env_true(const char *name);

/* Prints "locallm: error: <message>" to stderr; returns CLI_EXIT_ERROR. */
int cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* Prints "locallm: error: <message>" and a hint naming `locallm <cmd> --help`; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Strict parsers: the whole string must be the number, in [min, max]. On failure they print a
 * usage error naming opt and return false. */
bool cli_parse_i32(const char *cmd, const char *opt, const char *s, int32_t min, int32_t max,
                   int32_t *out);
bool cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
bool cli_parse_float(const char *cmd, const char *opt, const char *s, float min, float max,
                     float *out);
/* A comma-separated list of non-negative token ids ("1,2,3"). *ids is malloc'd (caller frees);
 * an empty list is an error. */
bool cli_parse_ids(const char *cmd, const char *opt, const char *s, lm_token **ids, size_t *n);
/* A comma-separated list of integers in [min, max]. *vals is malloc'd (caller frees). */
bool cli_parse_i32_list(const char *cmd, const char *opt, const char *s, int32_t min,
                        int32_t max, int32_t **vals, size_t *n);

/* ---- option tables (options.c) ----------------------------------------------------------------
 * Every subcommand describes its options in one table; cli_args_next scans argv against it, prints
 * the help made from it, and answers an unknown option with the nearest spelling in it ("did you
 * mean --temp?"). Options shared by several commands are the CLI_OPT_* entries below, so they are
 * spelled, explained and suggested the same way everywhere. */

/* Ids of the shared options; a command numbers its own from CLI_O_OWN. */
enum cli_option_id {
    CLI_HEADING = -1, /* not an option: a section title in the help (the text is .help) */
    CLI_O_HELP = 1,
    CLI_O_THREADS, CLI_O_CTX, CLI_O_FORCE, CLI_O_N_PREDICT, CLI_O_TEMP, CLI_O_TOP_K, CLI_O_TOP_P,
    CLI_O_MIN_P, CLI_O_REPEAT_PENALTY, CLI_O_SEED, CLI_O_STOP, CLI_O_SYSTEM, CLI_O_CHAT_TEMPLATE,
    CLI_O_VERBOSE, CLI_O_JSON,
    /* cloud providers (providers.h) */
    CLI_O_PROVIDER, CLI_O_FALLBACK, CLI_O_BASE_URL, CLI_O_MODEL, CLI_O_API_KEY_ENV,
    CLI_O_PROVIDERS, CLI_O_TIMEOUT, CLI_O_CONNECT_TIMEOUT,
    /* structured output (run, chat); --json there is CLI_O_JSON */
    CLI_O_GRAMMAR, CLI_O_JSON_SCHEMA,
    /* the KV cache's element type (run, eval) */
    CLI_O_KV_TYPE,
    CLI_O_OWN = 100,
};

/* One option. A table is an array of these ending with an all-zero entry. */
typedef struct cli_option {
    int id;            /* > 0: what cli_args_next returns for it; CLI_HEADING: a help section */
    const char *names; /* every spelling, '|'-separated, in the order the help shows them */
    const char *arg;   /* the value's name in the help ("N"); NULL: a flag, no value */
    const char *help;  /* the description; '\n' continues it on the next line */
} cli_option;

typedef struct cli_command {
    const char *name;          /* "run": named in messages ("Try 'locallm run --help'") */
    const char *usage;         /* "Usage: locallm run ...\n" (one or more lines) */
    const char *about;         /* what the command does, before the options; may be NULL */
    const cli_option *options; /* the table */
    const char *footer;        /* after the options; may be NULL */
} cli_command;

#define CLI_OPT_HELP {CLI_O_HELP, "-h|--help", NULL, "show this help"}
#define CLI_OPT_THREADS {CLI_O_THREADS, "-t|--threads", "N", "threads (default: one per core)"}
#define CLI_OPT_CTX                                                                          \
    {CLI_O_CTX, "-c|--ctx|--ctx-size", "N",                                                  \
     "context window in tokens (default: the model's, at most 4096)"}
#define CLI_OPT_FORCE                                                                        \
    {CLI_O_FORCE, "--force", NULL, "load even when the model looks too big for the memory"}
#define CLI_OPT_KV_TYPE                                                                      \
    {CLI_O_KV_TYPE, "--kv-type", "T", "KV cache element type: f16 (default) or f32"}
#define CLI_OPT_SYSTEM {CLI_O_SYSTEM, "-sys|--system|--system-prompt", "TEXT", "system prompt"}
#define CLI_OPT_CHAT_TEMPLATE                                                                \
    {CLI_O_CHAT_TEMPLATE, "--chat-template", "T",                                            \
     "llama3, mistral, chatml, zephyr, or a file of Jinja source"}
/* The sampling options after -n (whose default each command states itself). */
#define CLI_OPT_SAMPLING                                                                     \
    {CLI_O_TEMP, "--temp|--temperature", "T", "temperature (default 0: greedy, reproducible)"}, \
    {CLI_O_TOP_K, "--top-k", "K", "keep the K most likely tokens (0: off)"},                 \
    {CLI_O_TOP_P, "--top-p", "P", "nucleus sampling (1: off)"},                              \
    {CLI_O_MIN_P, "--min-p", "P", "drop tokens below P times the best one (0: off)"},        \
    {CLI_O_REPEAT_PENALTY, "--repeat-penalty", "R", "penalise repeated tokens (1: off)"},    \
    {CLI_O_SEED, "-s|--seed", "S", "sampling seed"},                                         \
    {CLI_O_STOP, "--stop", "S", "stop when S is generated (may be repeated, up to 7)"}

/* The scan of one command's arguments. argv[0] is the subcommand's name. */
typedef struct cli_args {
    const cli_command *cmd;
    int argc;
    char **argv;
    int i;             /* the next argument to look at */
    bool rest;         /* after "--": every argument is positional */
    char opt[64];      /* the option just returned, as the user spelled it (for messages) */
    const char *val;   /* its value, or the positional argument; borrows argv */
} cli_args;

enum { CLI_ARGS_END = 0, CLI_ARGS_POSITIONAL = -2, CLI_ARGS_HELP = -3, CLI_ARGS_ERROR = -4 };

void cli_args_init(cli_args *a, const cli_command *cmd, int argc, char **argv);
/* The next argument: an option's id (a->val holds its value, if it takes one),
 * CLI_ARGS_POSITIONAL (a->val is the word), CLI_ARGS_END, CLI_ARGS_HELP (the help was printed:
 * exit 0) or CLI_ARGS_ERROR (a usage error was printed, with the nearest option for an unknown
 * one: exit CLI_EXIT_USAGE). */
int cli_args_next(cli_args *a);
/* cli_args_next with what every command does alike done here. It stops the scan, returning
 * CLI_ARGS_END, with *rc set to the exit code after the help (CLI_EXIT_OK) or a usage error
 * (CLI_EXIT_USAGE), and at the end of the arguments with *rc as it was (the callers' -1: go on).
 * A positional argument is the command's one MODEL (cli_args_model) when model is not NULL, and
 * returned as CLI_ARGS_POSITIONAL when it is. Otherwise returns the option's id. */
int cli_args_step(cli_args *a, const char **model, int *rc);
/* a->val parsed strictly (see cli_parse_*), errors naming the option as spelled. */
bool cli_args_i32(const cli_args *a, int32_t min, int32_t max, int32_t *out);
bool cli_args_u64(const cli_args *a, uint64_t *out);
bool cli_args_float(const cli_args *a, float min, float max, float *out);
/* --kv-type's value: "f16" or "f32" (*kv_f32 set), anything else a usage error. */
bool cli_args_kv_type(const cli_args *a, bool *kv_f32);
/* A positional argument taken as the command's one MODEL: sets *model to a->val, or, when a model
 * was already given, prints the usage error naming both and returns false. */
bool cli_args_model(const cli_args *a, const char **model);
/* The help of cmd, made from its table. */
void cli_print_help(const cli_command *cmd, FILE *f);
/* The candidate nearest to word (a few edits away, or one it begins with 3+ letters of), or
 * NULL when none is close. NULL entries are skipped. */
const char *cli_nearest(const char *word, const char *const *cands, size_t n);

/* Applies a CLI_OPT_SAMPLING option (or -n) with id to *gp. Returns 1 when id is one of
 * them, 0 when it is not, -1 after a usage error. *n_stop counts the --stop strings so far. */
int cli_gen_opt(const cli_args *a, int id, lm_gen_params *gp, size_t *n_stop);

/* Legacy single-option scanner, kept for commands written before the table
 * (TODO(#19): none left once the other branches of this wave are merged; then remove it).
 * If argv[*i] is the option name (or alt) or "name=value", returns true and sets *val,
 * advancing *i past a separate value; a missing value is a usage error through *bad. */
bool cli_opt(int argc, char **argv, int *i, const char *name, const char *alt, const char **val,
             bool *bad, const char *cmd);
/* True when argv[i] is "-h" or "--help". */
bool cli_is_help(const char *arg);

/* ---- finding and loading the model (load.c) ---- */

/* The model used when none is named: $LOCALLM_DEFAULT_MODEL, else stories260K.gguf in the
 * models folder beside the executable (<exe dir>/../models, or ../share/locallm/models where
 * `make install` put it), else LM_MODELS_DIR/stories260K.gguf. malloc'd (caller frees), NULL on
 * allocation failure. */
char *cli_default_model(void);
/* The embedded chat model: $LOCALLM_CHAT_MODEL, else tinychat in the same folders. malloc'd. */
char *cli_default_chat_model(void);

/* How cli_load and cli_load_quiet load a model. */
typedef struct cli_load_opts {
    int32_t n_threads;         /* 0: the library's default */
    int32_t n_ctx;             /* sizes the memory check; 0: the model's, at most 4096 */
    const char *chat_template; /* NULL: the model's own; a built-in name or a file of Jinja */
    bool vocab_only;           /* tokenizer and template only (lm_model_params.vocab_only): a
                                  tokenizer.json or a folder of tokenizer files loads too */
} cli_load_opts;

/* Resolves ref (path, hub id, catalog short name: cli_resolve_ref) and loads it, drawing a
 * progress bar on stderr when it is a terminal and the model is big. On failure prints the error
 * and returns false. *load_ms (may be NULL) gets the wall time of the load. */
bool cli_load(const char *ref, const cli_load_opts *o, lm_model **out, double *load_ms);
/* The lm_model_params.chat_template of a --chat-template value: a built-in name as it is, else
 * the Jinja source read from the file (malloc'd into *owned, which the caller frees). NULL when
 * the file cannot be read, with the reason in why. */
const char *cli_chat_template(const char *opt, char **owned, char *why, size_t cap);
/* cli_load with only a thread count. */
bool cli_load_model(const char *ref, int32_t n_threads, lm_model **out, double *load_ms);
/* An engine on model with its default threads (the model's -t); prints the error. */
bool cli_engine_new(const lm_model *model, lm_engine **out);
/* Loads without printing, downloading or checking memory (a hub id must be in the cache): for
 * a local model that a cloud provider stands behind. The reason for a failure goes into why. */
bool cli_load_quiet(const char *ref, const cli_load_opts *o, lm_model **out, char *why,
                    size_t cap);

/* Resolves a model reference (path, hub id, catalog short name) to a local path: a hub id not in
 * the cache is downloaded (unless offline), and, when the memory check is on (cli_set_mem_check),
 * the memory the model needs (weights + KV cache at n_ctx + overhead) is compared with the
 * available memory, before downloading a catalog model and before loading; too little is an
 * error unless --force (cli_set_force). Prints the error and returns false when it cannot. */
bool cli_resolve_ref(const char *ref_in, int32_t n_ctx, char *resolved, size_t cap);
/* --force: load or download even when the memory check says it will not fit. */
void cli_set_force(bool force);
/* Turns the memory check in cli_load_model on: main.c does for the commands that run a model
 * (run, chat, serve, voice, bench, eval), not for info, tokenize, detokenize or template, which
 * only read it. */
void cli_set_mem_check(bool on);
/* Memory the machine has available: $LM_MEM_AVAILABLE_OVERRIDE (bytes, for tests) when set,
 * else the system's figure. false when unknown. */
bool cli_mem_available(uint64_t *out);
/* Checks the memory a model at path (a .gguf or a folder) needs for n_seq sessions of n_ctx
 * tokens against the available memory. Prints the error (needed vs available, --force) and
 * returns false when it does not fit and --force is off; true otherwise. what names the model. */
bool cli_mem_check_path(const char *what, const char *path, int32_t n_ctx, int32_t n_seq);
/* The same check for an estimate already made (hub/hub.h); verb is "load" or "download". */
struct hub_mem_need;
bool cli_mem_check_need(const char *what, const char *verb, const struct hub_mem_need *need);

/* The Hugging Face cache folder: $HF_HUB_CACHE (or the older $HUGGINGFACE_HUB_CACHE), else
 * $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. malloc'd;
 * NULL if unknown. */
char *cli_hf_cache_dir(void);
/* The token file: $HF_TOKEN_PATH, else the HF_HOME of cli_hf_cache_dir + "/token". malloc'd. */
char *cli_hf_token_path(void);

/* Structured output options of run and chat: --grammar FILE, --json-schema FILE, --json. */
#define CLI_OPT_STRUCTURED                                                                   \
    {CLI_O_GRAMMAR, "--grammar|--grammar-file", "FILE",                                      \
     "the reply follows the GBNF grammar in FILE (output starts at rule root)"},            \
    {CLI_O_JSON_SCHEMA, "--json-schema", "FILE", "the reply is JSON the JSON Schema in FILE allows"}, \
    {CLI_O_JSON, "--json", NULL, "the reply is a JSON object"}
typedef struct cli_structured {
    const char *grammar_path, *schema_path;
    bool json;
} cli_structured;
/* Records a CLI_OPT_STRUCTURED option with id. Returns 1 when id is one of them (one of the
 * three at most), 0 when it is not, -1 after a usage error. */
int cli_structured_opt(const cli_args *a, int id, cli_structured *so);
/* Reads the file so names into *text (the caller free()s it) and sets gp's fields. Returns
 * CLI_EXIT_OK, or CLI_EXIT_ERROR after printing why the file cannot be read. */
int cli_structured_load(const cli_structured *so, lm_gen_params *gp, char **text);

/* Writes s as a JSON string literal (quotes included). */
void cli_json_string(FILE *f, const char *s);

/* Monotonic clock in milliseconds. */
double cli_now_ms(void);

/* Reads a whole file into a malloc'd NUL-terminated string (*len, may be NULL, gets its length);
 * NULL on failure with errno set. */
char *cli_read_file(const char *path, size_t *len);
/* Reads the rest of f the same way. */
char *cli_read_stream(FILE *f, size_t *len);

/* ---- the conversation chat and voice hold (convo.c) ---- */

typedef struct cli_convo {
    lm_message *msgs; /* every string malloc'd, owned by the list */
    size_t n, cap;
} cli_convo;
/* Keeps one slot spare past the list (voice puts the utterance being spoken there). */
bool cli_convo_reserve(cli_convo *c);
/* Appends copies of role and content. false when out of memory. */
bool cli_convo_add(cli_convo *c, const char *role, const char *content);
/* Frees the messages, or all but the system ones with keep_system. */
void cli_convo_clear(cli_convo *c, bool keep_system);
/* Frees the messages and the list. */
void cli_convo_free(cli_convo *c);

/* chat.c: helpers shared by chat, run, template and voice. */
/* One conversation with a loaded local model, as `locallm run` has it with a chat model: prompt
 * NULL opens the interactive prompt (stdin a terminal), else prompt is answered once. The reply
 * streams to stdout; with verbose the turn's stats go to stderr. Returns the exit code. */
int cli_chat_local(lm_model *model, int32_t n_ctx, bool kv_f32, const char *system, const lm_gen_params *gp,
                   const char *prompt, bool verbose);
/* Reads a JSON array of OpenAI messages from path. Every string is malloc'd; free the list with
 * cli_messages_free. On failure prints the error and returns false. */
bool cli_messages_load(const char *path, lm_message **msgs, size_t *n);
void cli_messages_free(lm_message *msgs, size_t n);

#endif /* LM_CLI_H */
