/* cli/main.c: the entry point of the locallm tool; picks the subcommand.
 * Owns: the top-level help, `version`, dispatch (with aliases, and the nearest command for a
 * mistyped one), and which commands check the memory a model needs. Each subcommand lives in its
 * own file and parses its own options (options.c). */
#include "cli/cli.h"

#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
    const char *alias;  /* another name for it, or NULL */
    bool runs_a_model;  /* the memory check applies (cli_set_mem_check) */
} command;

static const command COMMANDS[] = {
    {"run", cli_run, "chat with a model, or answer one prompt (plain text for a base model)", NULL, true},
    {"chat", cli_chat, "chat with a model in the terminal (or one message per input line)", NULL, true},
    {"serve", cli_serve, "serve a model over HTTP with an OpenAI-compatible API", NULL, true},
    {"voice", cli_voice, "voice-assistant loop: transcripts in, spoken sentences out", NULL, true},
    {"pull", cli_pull, "download a model from the Hugging Face hub into its cache", NULL, false},
    {"ls", cli_ls, "list the models in the Hugging Face cache (--available: the catalog)", "list", false},
    {"rm", cli_rm, "remove a model from the Hugging Face cache", NULL, false},
    {"info", cli_info, "describe a model: architecture, sizes, memory needed", NULL, false},
    {"tokenize", cli_tokenize, "turn text into token ids", NULL, false},
    {"detokenize", cli_detokenize, "turn token ids into text", NULL, false},
    {"template", cli_template, "render a conversation with the model's chat template", NULL, false},
    {"eval", cli_eval, "feed token ids and print the top logits (testing)", NULL, true},
    {"bench", cli_bench, "measure prefill and decode speed", NULL, true},
    {"convert", cli_convert, "convert a Hugging Face or MLX folder to GGUF (any quant type) or MLX", NULL, false},
    {"version", NULL, "print the version", NULL, false},
};
enum { N_COMMANDS = sizeof COMMANDS / sizeof COMMANDS[0] };

static void print_help(FILE *f) {
    fprintf(f, "locallm %s: run local LLMs on the CPU\n\n", lm_version());
    fputs("Usage: locallm <command> [options]\n\nCommands:\n", f);
    for (size_t k = 0; k < N_COMMANDS; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s%s%s", COMMANDS[k].name, COMMANDS[k].alias ? ", " : "",
                 COMMANDS[k].alias ? COMMANDS[k].alias : "");
        fprintf(f, "  %-11s %s\n", name, COMMANDS[k].summary);
    }
    fputs("\nRun 'locallm <command> --help' for the options of a command.\n"
          "MODEL is a .gguf file, a Hugging Face model folder or id (org/name), or a short name\n"
          "such as llama3.2 or llama3.2:3b ('locallm ls --available'); where it is optional the\n"
          "embedded model is used ($LOCALLM_DEFAULT_MODEL, else models/stories260K.gguf; chat,\n"
          "serve and voice: $LOCALLM_CHAT_MODEL, else models/tinychat).\n"
          "run, chat, serve and pull check the memory a model needs first; --force skips that.\n",
          f);
}

static const cli_option VERSION_OPTIONS[] = {{0, NULL, NULL, NULL}};
static const cli_command VERSION_CMD = {"version", "Usage: locallm version\n",
                                        "Prints the version of locallm.\n", VERSION_OPTIONS, NULL};

static int version(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, &VERSION_CMD, argc, argv);
    int rc = -1;
    if (cli_args_step(&a, NULL, &rc) != CLI_ARGS_END)
        return cli_usage_error("version", "unexpected argument '%s'", a.val);
    if (rc >= 0) return rc;
    printf("locallm %s\n", lm_version());
    return CLI_EXIT_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_help(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (cli_is_help(cmd) || strcmp(cmd, "help") == 0) {
        print_help(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) return version(1, argv + 1);
    for (size_t k = 0; k < N_COMMANDS; k++) {
        const command *c = &COMMANDS[k];
        if (strcmp(cmd, c->name) != 0 && !(c->alias && strcmp(cmd, c->alias) == 0)) continue;
        if (!c->fn) return version(argc - 1, argv + 1);
        cli_set_mem_check(c->runs_a_model);
        /* the command sees its own name, also when called by its alias */
        argv[1] = (char *)c->name;
        return c->fn(argc - 1, argv + 1);
    }
    const char *names[2 * N_COMMANDS];
    for (size_t k = 0; k < N_COMMANDS; k++) {
        names[2 * k] = COMMANDS[k].name;
        names[2 * k + 1] = COMMANDS[k].alias;
    }
    const char *near = cli_nearest(cmd, names, 2 * N_COMMANDS);
    if (near) return cli_usage_error(NULL, "unknown command '%s' (did you mean %s?)", cmd, near);
    return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
