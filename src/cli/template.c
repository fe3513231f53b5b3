/* cli/template.c: `locallm template`, renders a conversation with the model's chat template.
 * Owns: the options of template, --var into template variables, and printing the prompt text
 * or its token ids exactly as the library produces them. MODEL may be a tokenizer alone (a
 * tokenizer.json, or a folder with it and tokenizer_config.json / chat_template.jinja). */
#include "cli/cli.h"
#include "core/core.h"

#include <stdlib.h>
#include <string.h>

enum { O_MESSAGES = CLI_O_OWN, O_TOOLS, O_NO_GEN, O_VAR, O_IDS };

static const cli_option TEMPLATE_OPTIONS[] = {
    {O_MESSAGES, "--messages", "FILE", "the conversation (required)"},
    {O_TOOLS, "--tools", "FILE", "a JSON array of tool schemas (OpenAI form)"},
    {O_NO_GEN, "--no-generation-prompt", NULL, "do not open the assistant's turn at the end"},
    {O_VAR, "--var", "NAME=VALUE", "a template variable (a string; may be repeated)"},
    CLI_OPT_CHAT_TEMPLATE,
    {O_IDS, "--ids", NULL, "print {\"ids\":[...]}, the prompt's token ids, instead"},
    {0, NULL, NULL, NULL},
};

static const cli_command TEMPLATE_CMD = {
    "template",
    "Usage: locallm template MODEL --messages FILE.json [options]\n",
    "Prints the prompt MODEL's chat template makes of the messages (a JSON array of OpenAI\n"
    "messages), exactly, with no newline added. MODEL is a model folder or a .gguf file, or a\n"
    "tokenizer alone: a tokenizer.json, or a folder holding it with tokenizer_config.json or\n"
    "chat_template.jinja (no weights needed).\n",
    TEMPLATE_OPTIONS,
    NULL,
};

/* Adds --var NAME=VALUE to vars (the last one of a name wins). false after a printed error. */
static bool add_var(const cli_args *a, cJSON *vars) {
    const char *v = a->val, *eq = strchr(v, '=');
    if (!eq || eq == v) {
        cli_usage_error("template", "%s: '%s' is not NAME=VALUE", a->opt, v);
        return false;
    }
    char name[256];
    size_t nl = (size_t)(eq - v);
    if (nl >= sizeof name) {
        cli_usage_error("template", "%s: the name is longer than %zu bytes", a->opt, sizeof name - 1);
        return false;
    }
    memcpy(name, v, nl);
    name[nl] = '\0';
    cJSON_DeleteItemFromObjectCaseSensitive(vars, name);
    if (!cJSON_AddStringToObject(vars, name, eq + 1)) {
        cli_error("out of memory");
        return false;
    }
    return true;
}

typedef struct template_opts {
    const char *model_path, *messages_path, *tools_path, *tpl;
    bool gen_prompt, ids;
    cJSON *vars; /* --var NAME=VALUE, an object (owned) */
} template_opts;

/* Options into *o; -1 to go on, else the exit code (o->vars freed). */
static int parse_opts(int argc, char **argv, template_opts *o) {
    const char *cmd = "template";
    *o = (template_opts){.gen_prompt = true, .vars = cJSON_CreateObject()};
    if (!o->vars) return cli_error("out of memory");
    cli_args a;
    cli_args_init(&a, &TEMPLATE_CMD, argc, argv);
    int rc = -1;
    for (int id; rc < 0 && (id = cli_args_step(&a, &o->model_path, &rc)) != CLI_ARGS_END;) {
        switch (id) {
        case O_NO_GEN: o->gen_prompt = false; break;
        case O_IDS: o->ids = true; break;
        case O_MESSAGES: o->messages_path = a.val; break;
        case O_TOOLS: o->tools_path = a.val; break;
        case CLI_O_CHAT_TEMPLATE: o->tpl = a.val; break;
        case O_VAR:
            if (!add_var(&a, o->vars)) rc = CLI_EXIT_USAGE;
            break;
        }
    }
    if (rc < 0 && !o->model_path) rc = cli_usage_error(cmd, "name the model (a folder or a .gguf file)");
    else if (rc < 0 && !o->messages_path) rc = cli_usage_error(cmd, "--messages FILE.json is required");
    if (rc >= 0) {
        cJSON_Delete(o->vars);
        o->vars = NULL;
    }
    return rc;
}

/* The tools file as compact JSON text (lm_free) into *out; false after a printed error. */
static bool load_tools(const char *path, char **out) {
    cJSON *t = NULL;
    lm_error err = {0};
    if (lm_json_load(path, &t, &err) != LM_OK) {
        cli_error("%s", err.msg);
        return false;
    }
    if (!cJSON_IsArray(t)) {
        cJSON_Delete(t);
        cli_error("%s: expected a JSON array of tools", path);
        return false;
    }
    *out = lm_json_print(t);
    cJSON_Delete(t);
    if (!*out) cli_error("out of memory");
    return *out != NULL;
}

/* Prints the prompt's token ids as apply_chat_template(tokenize=True) makes them: the template
 * already wrote any BOS text, so special-token text is parsed but nothing is added. */
static int print_ids(lm_model *model, const char *text, size_t len) {
    lm_error err = {0};
    lm_token *tok = NULL;
    size_t n_ids = 0;
    lm_status st = lm_model_tokenize(model, text, len, LM_TOK_PARSE_SPECIAL, NULL, 0, &n_ids, &err);
    if (st == LM_ERR_TOO_SMALL || (st == LM_OK && n_ids > 0)) {
        tok = malloc((n_ids ? n_ids : 1) * sizeof *tok);
        if (!tok) return cli_error("out of memory");
        st = lm_model_tokenize(model, text, len, LM_TOK_PARSE_SPECIAL, tok, n_ids, &n_ids, &err);
    }
    if (st != LM_OK) {
        free(tok);
        return cli_error("cannot tokenize the prompt: %s", err.msg[0] ? err.msg : lm_status_str(st));
    }
    fputs("{\"ids\":[", stdout);
    for (size_t k = 0; k < n_ids; k++) printf(k ? ",%d" : "%d", (int)tok[k]);
    fputs("]}\n", stdout);
    free(tok);
    return CLI_EXIT_OK;
}

/* Renders msgs with model's template into *out (malloc'd, *len bytes); false after a printed error. */
static bool render(lm_model *model, const lm_message *msgs, size_t n, const lm_chat_params *cp, char **out,
                   size_t *len) {
    lm_error err = {0};
    lm_status st = lm_model_chat_render(model, msgs, n, cp, NULL, 0, len, &err);
    if (st == LM_ERR_TOO_SMALL || st == LM_OK) {
        *out = malloc(*len + 1);
        if (!*out) {
            cli_error("out of memory");
            return false;
        }
        memset(&err, 0, sizeof err);
        st = lm_model_chat_render(model, msgs, n, cp, *out, *len + 1, len, &err);
    }
    if (st != LM_OK) {
        cli_error("cannot render the template: %s", err.msg[0] ? err.msg : lm_status_str(st));
        return false;
    }
    return true;
}

int cli_template(int argc, char **argv) {
    template_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) return rc;
    rc = CLI_EXIT_ERROR;
    lm_message *msgs = NULL;
    size_t n = 0, len = 0;
    char *tools = NULL, *vars_json = NULL, *out = NULL;
    lm_model *model = NULL;
    if (!cli_messages_load(o.messages_path, &msgs, &n)) goto done;
    if (o.tools_path && !load_tools(o.tools_path, &tools)) goto done;
    if (cJSON_GetArraySize(o.vars) > 0 && !(vars_json = lm_json_print(o.vars))) {
        cli_error("out of memory");
        goto done;
    }
    cli_load_opts lo = {.chat_template = o.tpl, .vocab_only = true};
    if (!cli_load(o.model_path, &lo, &model, NULL)) goto done;
    lm_chat_params cp = lm_chat_default_params();
    cp.max_messages = 0;
    cp.add_generation_prompt = o.gen_prompt;
    cp.tools_json = tools;
    cp.vars_json = vars_json;
    if (!render(model, msgs, n, &cp, &out, &len)) goto done;
    if (o.ids) {
        rc = print_ids(model, out, len);
    } else {
        fwrite(out, 1, len, stdout);
        rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
    }
done:
    free(out);
    lm_free(tools);
    lm_free(vars_json);
    cli_messages_free(msgs, n);
    lm_model_free(model);
    cJSON_Delete(o.vars);
    return rc;
}
