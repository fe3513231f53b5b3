/* cli/main.c: the entry point of the locallm tool; picks the subcommand.
 * Owns: the top-level help, `version`, and dispatch. Each subcommand lives in its own file. */
#include "cli/cli.h"

#include <string.h>

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"run", cli_run, "generate text from a prompt"},
    {"eval", cli_eval, "feed token ids and print the top logits (testing)"},
    {"tokenize", cli_tokenize, "turn text into token ids"},
    {"detokenize", cli_detokenize, "turn token ids into text"},
    {"info", cli_info, "describe a model: architecture, sizes, memory needed"},
    {"bench", cli_bench, "measure prefill and decode speed"},
    {"serve", cli_serve, "serve a model over HTTP with an OpenAI-compatible API"},
    {"chat", cli_chat, "chat with a model in the terminal (or one message per input line)"},
    {"template", cli_template, "render a conversation with the model's chat template"},
    {"voice", cli_voice, "voice-assistant loop: streamed transcripts in, spoken sentences out"},
    {"pull", cli_pull, "download a model from the Hugging Face hub into its cache"},
    {"ls", cli_ls, "list the models in the Hugging Face cache"},
    {"rm", cli_rm, "remove a model from the Hugging Face cache"},
    {"convert", cli_convert, "convert a Hugging Face or MLX folder to GGUF (any quant type) or MLX"},
    {"version", NULL, "print the version"},
};

static void print_help(FILE *f) {
    fprintf(f, "locallm %s: run local LLMs on the CPU\n\n", lm_version());
    fputs("Usage: locallm <command> [options]\n\nCommands:\n", f);
    for (size_t k = 0; k < sizeof COMMANDS / sizeof COMMANDS[0]; k++)
        fprintf(f, "  %-11s %s\n", COMMANDS[k].name, COMMANDS[k].summary);
    fputs("\nRun 'locallm <command> --help' for the options of a command.\n"
          "MODEL is a .gguf file, a Hugging Face model folder or id (org/name), or a short name\n"
          "such as llama3.2:3b ('locallm ls --available'); where it is optional the embedded\n"
          "model is used ($LOCALLM_DEFAULT_MODEL, else models/stories260K.gguf).\n"
          "run, chat, serve and pull check the memory a model needs first; --force skips that.\n",
          f);
}

static int version(int argc, char **argv) {
    if (argc > 1 && cli_is_help(argv[1])) {
        fputs("Usage: locallm version\n\nPrints the version of locallm.\n", stdout);
        return CLI_EXIT_OK;
    }
    if (argc > 1) return cli_usage_error("version", "unexpected argument '%s'", argv[1]);
    printf("locallm %s\n", lm_version());
    return CLI_EXIT_OK;
}

/* chat, serve, voice, bench and eval do not parse --force themselves yet: it is taken out of
 * their arguments here (not where it is the value of -p/--prompt/--system) and turned into
 * cli_set_force(). run and pull parse it. */
static int take_force(const char *cmd, int argc, char **argv) {
    if (strcmp(cmd, "chat") != 0 && strcmp(cmd, "serve") != 0 && strcmp(cmd, "voice") != 0 &&
        strcmp(cmd, "bench") != 0 && strcmp(cmd, "eval") != 0)
        return argc;
    int n = 2;
    for (int i = 2; i < argc; i++) {
        const char *prev = argv[i - 1];
        bool is_value = strcmp(prev, "-p") == 0 || strcmp(prev, "--prompt") == 0 || strcmp(prev, "--system") == 0;
        if (strcmp(argv[i], "--force") == 0 && !is_value) {
            cli_set_force(true);
            continue;
        }
        argv[n++] = argv[i];
    }
    argv[n] = NULL;
    return n;
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
    argc = take_force(cmd, argc, argv);
    static const char *const runs_a_model[] = {"run", "chat", "serve", "voice", "bench", "eval"};
    for (size_t k = 0; k < sizeof runs_a_model / sizeof runs_a_model[0]; k++)
        if (strcmp(cmd, runs_a_model[k]) == 0) cli_set_mem_check(true);
    for (size_t k = 0; k < sizeof COMMANDS / sizeof COMMANDS[0]; k++) {
        if (strcmp(cmd, COMMANDS[k].name) != 0) continue;
        if (!COMMANDS[k].fn) return version(argc - 1, argv + 1);
        return COMMANDS[k].fn(argc - 1, argv + 1);
    }
    return cli_usage_error(NULL, "unknown command '%s'", cmd);
}
