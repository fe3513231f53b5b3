/* cli/cli.h: the internal header of the locallm command-line tool.
 * Owns: what the subcommands share: error and usage reporting, strict number parsing, option
 * scanning, the default model path, model loading with a progress bar, JSON string output and a
 * clock. The CLI only calls the public API (include/locallm.h); it is allowed to print and exit.
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
int cli_serve(int argc, char **argv);
int cli_chat(int argc, char **argv);
int cli_template(int argc, char **argv);
int cli_voice(int argc, char **argv);
int cli_pull(int argc, char **argv);
int cli_ls(int argc, char **argv);
int cli_rm(int argc, char **argv);

/* pull.c: downloads (or, offline, finds in the cache) ref "org/name[@rev][:QUANT]" with the
 * HF_ENDPOINT / HF_TOKEN settings; out gets the snapshot folder or the chosen .gguf. Returns
 * CLI_EXIT_USAGE for an invalid id, CLI_EXIT_ERROR on failure (printed when report is true). */
int cli_hub_fetch(const char *ref, const char *const *includes, size_t n_includes, bool quiet,
                  bool offline, bool report, char *out, size_t cap);
/* True when HF_HUB_OFFLINE is 1 / true / yes. */
bool cli_hub_offline(void);

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

/* Option scanning. If argv[*i] is the option name (or one of two spellings; alt may be NULL),
 * or "name=value", returns true and sets *val to its value, advancing *i past a separate value.
 * A missing value is reported as a usage error through *bad (set true). */
bool cli_opt(int argc, char **argv, int *i, const char *name, const char *alt, const char **val,
             bool *bad, const char *cmd);
/* True when argv[i] is "-h" or "--help". */
bool cli_is_help(const char *arg);

/* The model used when none is named: $LOCALLM_DEFAULT_MODEL, else
 * <dir of the executable>/../models/stories260K.gguf, else LM_MODELS_DIR/stories260K.gguf.
 * Returns a malloc'd path (caller frees), NULL on allocation failure. */
char *cli_default_model(void);

/* Loads a model with n_threads (0: library default), drawing a progress bar on stderr when it is
 * a terminal and the model is big. On failure prints the error and returns false. *load_ms
 * (may be NULL) gets the wall time of the load. */
bool cli_load_model(const char *path, int32_t n_threads, lm_model **out, double *load_ms);
/* An engine on model with its default threads (the model's -t); prints the error. */
bool cli_engine_new(const lm_model *model, lm_engine **out);

/* Like cli_load_model, sizing the memory check for a context of n_ctx tokens (0: the model's,
 * capped at 4096). When the check is on (cli_set_mem_check), before downloading a catalog model
 * and before loading, the memory the model needs (weights + KV cache + overhead) is compared with
 * the available memory; too little is an error unless --force was given (cli_set_force). */
/* Resolves a model reference (path, hub id, catalog short name) to a local path: a hub id not in
 * the cache is downloaded (unless offline), and the memory check runs unless --force. Prints the
 * error and returns false when it cannot. */
bool cli_resolve_ref(const char *ref_in, int32_t n_ctx, char *resolved, size_t cap);
bool cli_load_model_ctx(const char *ref, int32_t n_threads, int32_t n_ctx, lm_model **out,
                        double *load_ms);
/* --force: load or download even when the memory check says it will not fit. */
void cli_set_force(bool force);
bool cli_force(void);
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

/* The Hugging Face cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else
 * $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. malloc'd; NULL if unknown. */
char *cli_hf_cache_dir(void);

/* Structured output options of run and chat: --grammar FILE, --json-schema FILE, --json. */
typedef struct cli_structured {
    const char *grammar_path, *schema_path;
    bool json;
} cli_structured;
/* Returns 1 when argv[*i] was one of them (so updated, *i advanced; one of them at most), 0 when
 * it was not, or -CLI_EXIT_USAGE after printing the error. */
int cli_structured_opt(int argc, char **argv, int *i, const char *cmd, cli_structured *so);
/* Reads the file so names into *text (the caller free()s it) and sets gp's fields. Returns
 * CLI_EXIT_OK, or CLI_EXIT_ERROR after printing why the file cannot be read. */
int cli_structured_load(const cli_structured *so, lm_gen_params *gp, char **text);
#define CLI_STRUCTURED_HELP \
    "      --grammar FILE       the reply follows the GBNF grammar in FILE (rule root)\n" \
    "      --json-schema FILE   the reply is JSON that the JSON Schema in FILE allows\n" \
    "      --json               the reply is a JSON object\n"

/* Writes s as a JSON string literal (quotes included). */
void cli_json_string(FILE *f, const char *s);

/* Monotonic clock in milliseconds. */
double cli_now_ms(void);

/* chat.c: helpers shared by chat, template and voice. */
/* The embedded chat model: $LOCALLM_CHAT_MODEL, else <exe dir>/../models/tinychat, else
 * LM_MODELS_DIR/tinychat. malloc'd (caller frees), NULL on allocation failure. */
char *cli_default_chat_model(void);
/* Like cli_load_model, with a chat template override (NULL: the model's own; a built-in name or
 * a file holding Jinja source). */
bool cli_load_chat_model(const char *path, int32_t n_threads, const char *chat_template,
                         lm_model **out);
/* Reads a JSON array of OpenAI messages from path. Every string is malloc'd; free the list with
 * cli_messages_free. On failure prints the error and returns false. */
bool cli_messages_load(const char *path, lm_message **msgs, size_t *n);
void cli_messages_free(lm_message *msgs, size_t n);
/* Reads a whole file into a malloc'd NUL-terminated string; NULL on failure (errno set). */
char *cli_read_file(const char *path, size_t *len);

#endif /* LM_CLI_H */
