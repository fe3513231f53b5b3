/* cli/convert.c: `locallm convert`, a Hugging Face or MLX model folder into a GGUF file or an MLX
 * folder (lm_convert), with a progress bar on stderr.
 * Owns: the options of convert and its output. */
#include "cli/cli.h"

#include <string.h>
#include <unistd.h>

static const char CONVERT_HELP[] =
    "Usage: locallm convert SRC -o OUT [--type T]\n"
    "       locallm convert SRC -o OUT --format mlx [--bits 4|8] [--group-size 32|64]\n"
    "\n"
    "Converts a Hugging Face model folder (safetensors in f32/f16/bf16, sharded or not) or an MLX\n"
    "quantized folder. OUT ending in .gguf gets a GGUF file that llama.cpp and locallm load, with\n"
    "the architecture, hyper-parameters, tokenizer and chat template; --format mlx writes a new\n"
    "MLX folder (as mlx-lm's convert does).\n"
    "\n"
    "Options:\n"
    "  -o, --output OUT     the .gguf file, or the MLX folder to create\n"
    "      --type T         GGUF type, llama.cpp's names: F16 (default), BF16, F32, Q8_0, Q4_0,\n"
    "                       Q4_1, Q5_0, Q5_1, Q4_K_M, Q5_K_M, Q6_K. Quantized types use llama.cpp's\n"
    "                       per-tensor mix (output Q6_K, more bits for some attn_v/ffn_down, and\n"
    "                       its fallback types for rows that are not a multiple of 256)\n"
    "      --format F       gguf (default for OUT ending in .gguf) or mlx\n"
    "      --bits N         MLX: 4 (default) or 8\n"
    "      --group-size N   MLX: 64 (default) or 32\n"
    "      --vocab-only     GGUF: metadata and tokenizer only, no weights\n"
    "  -t, --threads N      threads for quantizing (default: one per core)\n"
    "  -q, --quiet          no progress bar or summary\n"
    "  -h, --help           show this help\n";

typedef struct bar {
    int last;
    bool quiet;
    bool drawn;
} bar;

static int draw(float f, const char *stage, void *user) {
    bar *b = user;
    if (b->quiet) return 0;
    int pc = (int)(f * 100.0f + 0.5f);
    if (pc == b->last) return 0;
    b->last = pc;
    enum { W = 30 };
    char s[W + 1];
    for (int k = 0; k < W; k++) s[k] = k < pc * W / 100 ? '#' : ' ';
    s[W] = 0;
    fprintf(stderr, "\rconverting [%s] %3d%% %-28.28s", s, pc, stage ? stage : "");
    fflush(stderr);
    b->drawn = true;
    return 0;
}

static void log_fn(lm_log_level level, const char *msg, void *user) {
    bar *b = user;
    if (level > LM_LOG_INFO || b->quiet) return;
    if (b->drawn) fputc('\n', stderr);
    b->drawn = false;
    b->last = -1;
    fprintf(stderr, "locallm: %s\n", msg);
}

int cli_convert(int argc, char **argv) {
    const char *cmd = "convert";
    const char *src = NULL, *out = NULL;
    lm_convert_params p = lm_convert_default_params();
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        bool bad = false;
        int32_t n = 0;
        if (cli_is_help(a)) {
            fputs(CONVERT_HELP, stdout);
            return CLI_EXIT_OK;
        } else if (cli_opt(argc, argv, &i, "-o", "--output", &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            out = v;
        } else if (cli_opt(argc, argv, &i, "--type", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            p.type = v;
        } else if (cli_opt(argc, argv, &i, "--format", NULL, &v, &bad, cmd)) {
            if (bad) return CLI_EXIT_USAGE;
            if (strcmp(v, "gguf") != 0 && strcmp(v, "mlx") != 0)
                return cli_usage_error(cmd, "--format '%s': expected gguf or mlx", v);
            p.format = v;
        } else if (cli_opt(argc, argv, &i, "--bits", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--bits", v, 4, 8, &n)) return CLI_EXIT_USAGE;
            if (n != 4 && n != 8) return cli_usage_error(cmd, "--bits %d: expected 4 or 8", (int)n);
            p.mlx_bits = n;
        } else if (cli_opt(argc, argv, &i, "--group-size", NULL, &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "--group-size", v, 32, 64, &n)) return CLI_EXIT_USAGE;
            if (n != 32 && n != 64) return cli_usage_error(cmd, "--group-size %d: expected 32 or 64", (int)n);
            p.mlx_group_size = n;
        } else if (cli_opt(argc, argv, &i, "-t", "--threads", &v, &bad, cmd)) {
            if (bad || !cli_parse_i32(cmd, "-t", v, 0, 1024, &p.n_threads)) return CLI_EXIT_USAGE;
        } else if (strcmp(a, "--vocab-only") == 0) {
            p.vocab_only = true;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else if (a[0] == '-' && a[1] != '\0') {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!src) {
            src = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s' (the source is '%s')", a, src);
        }
    }
    if (!src) return cli_usage_error(cmd, "no source folder given");
    if (!out) return cli_usage_error(cmd, "no output given (-o OUT)");
    bool mlx = p.format && strcmp(p.format, "mlx") == 0;
    size_t ol = strlen(out);
    if (!mlx && !(ol > 5 && strcmp(out + ol - 5, ".gguf") == 0))
        return cli_usage_error(cmd, "'%s': a GGUF output must end in .gguf (or give --format mlx)", out);
    if (mlx && p.type) return cli_usage_error(cmd, "--type is for GGUF output; MLX takes --bits and --group-size");
    if (!mlx && (p.mlx_bits || p.mlx_group_size)) return cli_usage_error(cmd, "--bits and --group-size are for --format mlx");
    bar b = {-1, quiet, false};
    if (!quiet && isatty(2)) { /* a bar only where someone watches */
        p.progress = draw;
        p.progress_user = &b;
    }
    p.log = log_fn;
    p.log_user = &b;
    lm_error err = {0};
    double t0 = cli_now_ms();
    lm_status st = lm_convert(src, out, &p, &err);
    if (b.drawn) fputc('\n', stderr);
    if (st) return cli_error("%s", err.msg);
    if (!quiet)
        fprintf(stderr, "locallm: wrote %s (%s) in %.2f s\n", out,
                mlx ? (p.mlx_bits == 8 ? "MLX 8-bit" : "MLX 4-bit") : (p.type ? p.type : "F16"),
                (cli_now_ms() - t0) / 1000.0);
    return CLI_EXIT_OK;
}
