/* cli/providers.h: the cloud providers `chat` and `serve` talk to (OpenAI-compatible endpoints).
 * Owns: the built-in defaults (openai, groq), the providers.json config file, the options that
 * name and override providers, and turning one into lm_openai_params (the API key read from the
 * environment variable it names). The providers themselves live in the library (src/provider). */
#ifndef LM_CLI_PROVIDERS_H
#define LM_CLI_PROVIDERS_H

#include "cli/cli.h"

typedef struct cli_cloud {
    char name[64];
    char base_url[1024];
    char model[256];
    char api_key_env[128]; /* "" : no key is sent */
} cli_cloud;

/* The options as given; every pointer borrows argv. */
typedef struct cli_cloud_flags {
    const char *provider;       /* --provider NAME: the cloud replaces the local model */
    const char *fallback;       /* --fallback A,B: tried in order after the first provider */
    const char *base_url;       /* --base-url, --model, --api-key-env: override the fields of */
    const char *model;          /*   the first provider named (--provider, else the first of */
    const char *api_key_env;    /*   --fallback) */
    const char *providers_file; /* --providers FILE; default: the config file, if any */
    float timeout_s;            /* --timeout: no answer byte within it fails (0: 15 s) */
    float connect_timeout_s;    /* --connect-timeout (0: 5 s) */
} cli_cloud_flags;

/* The table entries of these options (chat and serve; chat adds --provider before them). */
#define CLI_OPT_CLOUD                                                                           \
    {CLI_O_FALLBACK, "--fallback", "A[,B]",                                                     \
     "when the local model is not ready or fails before its first\n"                            \
     "token, ask these providers in order (built in: openai, groq)"},                          \
    {CLI_O_BASE_URL, "--base-url", "URL", "endpoint of the first provider named (e.g. http://host/v1)"}, \
    {CLI_O_MODEL, "--model", "NAME", "model name sent to it"},                                  \
    {CLI_O_API_KEY_ENV, "--api-key-env", "VAR",                                                 \
     "environment variable holding its API key (openai:\n"                                      \
     "OPENAI_API_KEY, groq: GROQ_API_KEY)"},                                                    \
    {CLI_O_PROVIDERS, "--providers", "FILE",                                                    \
     "providers config (default: $XDG_CONFIG_HOME/locallm/\n"                                   \
     "providers.json or ~/.config/locallm/providers.json): a JSON\n"                            \
     "array (or {\"providers\": [...]}) of {name, base_url, model,\n"                           \
     "api_key_env}"},                                                                          \
    {CLI_O_TIMEOUT, "--timeout", "S", "seconds to wait for a provider's first byte (default 15)"}, \
    {CLI_O_CONNECT_TIMEOUT, "--connect-timeout", "S", "seconds to wait for its connection (default 5)"}

/* If id is one of the options above (or --provider), stores a's value in *f and returns 1;
 * returns 0 when it is not one; -1 after printing a usage error. */
int cli_cloud_opt(const cli_args *a, int id, cli_cloud_flags *f);

/* True when any cloud option names a provider. */
bool cli_cloud_wanted(const cli_cloud_flags *f);

/* Resolves --provider then --fallback into *out (malloc'd, caller frees), *n entries. A name is
 * looked up in the config file, then the built-ins; an unknown name needs --base-url. On failure
 * prints the error and returns CLI_EXIT_USAGE or CLI_EXIT_ERROR; else CLI_EXIT_OK. */
int cli_cloud_resolve(const char *cmd, const cli_cloud_flags *f, cli_cloud **out, size_t *n);

/* The library params of c; api_key is getenv(c->api_key_env) (NULL when unset or empty).
 * The strings point into c and the environment. */
lm_openai_params cli_cloud_params(const cli_cloud *c, const cli_cloud_flags *f);

#endif /* LM_CLI_PROVIDERS_H */
