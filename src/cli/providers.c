/* cli/providers.c: resolving cloud provider names for `chat` and `serve` (see providers.h).
 * A name is looked up in the config file first, then among the built-ins; --base-url, --model
 * and --api-key-env then override the first provider named, so a one-off endpoint needs no file:
 * `--provider mine --base-url http://127.0.0.1:8080/v1 --model tinychat`. */
#include "cli/providers.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct builtin {
    const char *name, *base_url, *model, *key_env;
} builtin;

static const builtin BUILTINS[] = {
    {"openai", "https://api.openai.com/v1", "gpt-4o-mini", "OPENAI_API_KEY"},
    {"groq", "https://api.groq.com/openai/v1", "llama-3.1-8b-instant", "GROQ_API_KEY"},
};

int cli_cloud_opt(const cli_args *a, int id, cli_cloud_flags *f) {
    const char *cmd = a->cmd->name, *v = a->val;
    switch (id) {
    case CLI_O_PROVIDER:
        if (!*v || strchr(v, ',')) {
            cli_usage_error(cmd, "%s: expected one provider name (use --fallback for a list)", a->opt);
            return -1;
        }
        f->provider = v;
        break;
    case CLI_O_FALLBACK: f->fallback = v; break;
    case CLI_O_BASE_URL:
        if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
            cli_usage_error(cmd, "%s: '%s' must start with http:// or https://", a->opt, v);
            return -1;
        }
        f->base_url = v;
        break;
    case CLI_O_MODEL: f->model = v; break;
    case CLI_O_API_KEY_ENV: f->api_key_env = v; break;
    case CLI_O_PROVIDERS: f->providers_file = v; break;
    case CLI_O_TIMEOUT:
        if (!cli_args_float(a, 0.001f, 86400.0f, &f->timeout_s)) return -1;
        break;
    case CLI_O_CONNECT_TIMEOUT:
        if (!cli_args_float(a, 0.001f, 86400.0f, &f->connect_timeout_s)) return -1;
        break;
    default: return 0;
    }
    return 1;
}

bool cli_cloud_wanted(const cli_cloud_flags *f) {
    return (f->provider && *f->provider) || (f->fallback && *f->fallback);
}

static bool is_file(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The default config file when it exists; malloc'd or NULL. */
static char *default_config(void) {
    char path[4096];
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) {
        snprintf(path, sizeof path, "%s/locallm/providers.json", xdg);
        if (is_file(path)) return strdup(path);
    }
    if (home && *home) {
        snprintf(path, sizeof path, "%s/.config/locallm/providers.json", home);
        if (is_file(path)) return strdup(path);
    }
    return NULL;
}

static bool copy_field(char *dst, size_t cap, const cJSON *o, const char *key, const char *path,
                       int idx, bool required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (!required) return true;
        cli_error("%s: provider %d: '%s' is required", path, idx, key);
        return false;
    }
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) {
        cli_error("%s: provider %d: '%s' must be a string shorter than %zu bytes", path, idx, key,
                  cap);
        return false;
    }
    snprintf(dst, cap, "%s", v->valuestring);
    return true;
}

/* Looks name up in the config (an array of provider objects, may be NULL). 1: found and copied,
 * 0: not there, -1: a bad entry (printed). */
static int from_config(const cJSON *arr, const char *path, const char *name, cli_cloud *c) {
    int idx = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
        if (!cJSON_IsObject(o) || !cJSON_IsString(nm)) {
            cli_error("%s: provider %d: expected an object with a string 'name'", path, idx);
            return -1;
        }
        if (strcmp(nm->valuestring, name) == 0) {
            /* a built-in of the same name gives the fields the file leaves out */
            for (size_t k = 0; k < sizeof BUILTINS / sizeof BUILTINS[0]; k++) {
                if (strcmp(BUILTINS[k].name, name) != 0) continue;
                snprintf(c->base_url, sizeof c->base_url, "%s", BUILTINS[k].base_url);
                snprintf(c->model, sizeof c->model, "%s", BUILTINS[k].model);
                snprintf(c->api_key_env, sizeof c->api_key_env, "%s", BUILTINS[k].key_env);
            }
            bool known = c->base_url[0] != '\0';
            if (!copy_field(c->base_url, sizeof c->base_url, o, "base_url", path, idx, !known) ||
                !copy_field(c->model, sizeof c->model, o, "model", path, idx, false) ||
                !copy_field(c->api_key_env, sizeof c->api_key_env, o, "api_key_env", path, idx,
                            false))
                return -1;
            if (strncmp(c->base_url, "http://", 7) && strncmp(c->base_url, "https://", 8)) {
                cli_error("%s: provider %d: base_url '%s' must start with http:// or https://",
                          path, idx, c->base_url);
                return -1;
            }
            return 1;
        }
        idx++;
    }
    return 0;
}

int cli_cloud_resolve(const char *cmd, const cli_cloud_flags *f, cli_cloud **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    /* the names, in order: --provider, then --fallback's list */
    size_t cap = 1;
    for (const char *p = f->fallback; p && *p; p++) cap += *p == ',';
    cap += 1;
    char *names = NULL;
    size_t len = (f->provider ? strlen(f->provider) : 0) + (f->fallback ? strlen(f->fallback) : 0) + 2;
    names = malloc(len);
    cli_cloud *list = calloc(cap, sizeof *list);
    if (!names || !list) {
        free(names);
        free(list);
        return cli_error("out of memory");
    }
    snprintf(names, len, "%s%s%s", f->provider ? f->provider : "",
             f->provider && f->fallback ? "," : "", f->fallback ? f->fallback : "");

    char *cfg_path = f->providers_file ? strdup(f->providers_file) : default_config();
    cJSON *root = NULL;
    const cJSON *arr = NULL;
    int rc = CLI_EXIT_OK;
    if (f->providers_file && !cfg_path) rc = cli_error("out of memory");
    if (rc == CLI_EXIT_OK && cfg_path) {
        lm_error err = {0};
        if (lm_json_load(cfg_path, &root, &err) != LM_OK) {
            rc = cli_error("--providers: %s", err.msg);
        } else {
            arr = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "providers");
            if (!cJSON_IsArray(arr))
                rc = cli_error("%s: expected a JSON array of providers or {\"providers\": [...]}",
                               cfg_path);
        }
    }
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(names, ",", &save); rc == CLI_EXIT_OK && tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        size_t tl = strlen(tok);
        while (tl && tok[tl - 1] == ' ') tok[--tl] = '\0';
        if (!*tok) continue;
        if (tl >= sizeof list[n].name) {
            rc = cli_usage_error(cmd, "provider name '%s' is too long", tok);
            break;
        }
        cli_cloud *c = &list[n];
        memset(c, 0, sizeof *c);
        snprintf(c->name, sizeof c->name, "%s", tok);
        int found = arr ? from_config(arr, cfg_path, tok, c) : 0;
        if (found < 0) {
            rc = CLI_EXIT_ERROR;
            break;
        }
        for (size_t k = 0; !found && k < sizeof BUILTINS / sizeof BUILTINS[0]; k++) {
            if (strcmp(BUILTINS[k].name, tok) != 0) continue;
            snprintf(c->base_url, sizeof c->base_url, "%s", BUILTINS[k].base_url);
            snprintf(c->model, sizeof c->model, "%s", BUILTINS[k].model);
            snprintf(c->api_key_env, sizeof c->api_key_env, "%s", BUILTINS[k].key_env);
            found = 1;
        }
        if (n == 0) { /* the flags override the first provider named */
            if (f->base_url) snprintf(c->base_url, sizeof c->base_url, "%s", f->base_url);
            if (f->model) snprintf(c->model, sizeof c->model, "%s", f->model);
            if (f->api_key_env) snprintf(c->api_key_env, sizeof c->api_key_env, "%s", f->api_key_env);
        }
        if (!c->base_url[0]) {
            rc = cli_usage_error(cmd, "unknown provider '%s' (built in: openai, groq; define it in "
                                      "a --providers file or give --base-url)", tok);
            break;
        }
        if (!c->model[0]) snprintf(c->model, sizeof c->model, "default");
        n++;
    }
    if (rc == CLI_EXIT_OK && n == 0) rc = cli_usage_error(cmd, "no provider named");
    cJSON_Delete(root);
    free(cfg_path);
    free(names);
    if (rc != CLI_EXIT_OK) {
        free(list);
        return rc;
    }
    *out = list;
    *n_out = n;
    return CLI_EXIT_OK;
}

lm_openai_params cli_cloud_params(const cli_cloud *c, const cli_cloud_flags *f) {
    lm_openai_params p;
    memset(&p, 0, sizeof p);
    p.name = c->name;
    p.base_url = c->base_url;
    p.model = c->model;
    const char *key = c->api_key_env[0] ? getenv(c->api_key_env) : NULL;
    p.api_key = key && *key ? key : NULL;
    if (f->timeout_s > 0) p.first_byte_timeout_ms = (int32_t)(f->timeout_s * 1000.0f + 0.5f);
    if (f->connect_timeout_s > 0)
        p.connect_timeout_ms = (int32_t)(f->connect_timeout_s * 1000.0f + 0.5f);
    return p;
}
