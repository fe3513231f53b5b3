/* cli/info.c: `locallm info`, describe a model: architecture, sizes and the memory it needs.
 * Owns: the options of info and its plain and JSON outputs. Memory needed is the weights plus
 * the KV cache of a session at the model's training context, capped at 4096 as sessions are. */
#include "cli/cli.h"

#include <string.h>

static const cli_option INFO_OPTIONS[] = {
    {CLI_O_JSON, "--json", NULL, "print one JSON object"},
    {CLI_O_THREADS, "-t|--threads", "N", "threads the model would use (default: one per core)"},
    {0, NULL, NULL, NULL},
};

static const cli_command INFO_CMD = {
    "info",
    "Usage: locallm info MODEL [--json]\n",
    "Prints the architecture, shapes, parameter count and memory needed by the model.\n",
    INFO_OPTIONS,
    NULL,
};

/* Sessions default to the model's context capped here (see lm_session_params.n_ctx). */
enum { SESSION_CTX_CAP = 4096 };

static void human_bytes(char *out, size_t cap, uint64_t b) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, cap, u ? "%.2f %s" : "%.0f %s", v, units[u]);
}

int cli_info(int argc, char **argv) {
    const char *cmd = "info";
    const char *model_path = NULL;
    bool json = false;
    int32_t n_threads = 0;

    cli_args a;
    cli_args_init(&a, &INFO_CMD, argc, argv);
    int rc = -1;
    for (int id; (id = cli_args_step(&a, &model_path, &rc)) != CLI_ARGS_END;) {
        switch (id) {
        case CLI_O_JSON: json = true; break;
        case CLI_O_THREADS:
            if (!cli_args_i32(&a, 0, 1024, &n_threads)) return CLI_EXIT_USAGE;
            break;
        }
    }
    if (rc >= 0) return rc;
    if (!model_path) return cli_usage_error(cmd, "no model given");

    lm_model *model = NULL;
    double load_ms = 0;
    if (!cli_load_model(model_path, n_threads, &model, &load_ms)) return CLI_EXIT_ERROR;
    lm_model_info mi;
    memset(&mi, 0, sizeof mi);
    lm_model_get_info(model, &mi);
    uint64_t kv_per_token = lm_model_kv_bytes_per_token(model);
    int32_t kv_ctx = mi.n_ctx_train > 0 && mi.n_ctx_train < SESSION_CTX_CAP ? mi.n_ctx_train
                                                                           : SESSION_CTX_CAP;
    uint64_t kv_bytes = kv_per_token * (uint64_t)kv_ctx;
    uint64_t mem_bytes = mi.weight_bytes + kv_bytes;
    const char *arch = mi.arch ? mi.arch : "";
    const char *format = mi.format ? mi.format : "";
    const char *kernels = mi.kernels ? mi.kernels : "";

    if (json) {
        fputs("{\"path\":", stdout);
        cli_json_string(stdout, model_path);
        fputs(",\"arch\":", stdout);
        cli_json_string(stdout, arch);
        fputs(",\"format\":", stdout);
        cli_json_string(stdout, format);
        fputs(",\"kernels\":", stdout);
        cli_json_string(stdout, kernels);
        fputs(",\"quant\":", stdout);
        cli_json_string(stdout, mi.quant ? mi.quant : "");
        printf(",\"n_vocab\":%ld,\"n_ctx_train\":%ld,\"n_embd\":%ld,\"n_layer\":%ld,"
               "\"n_head\":%ld,\"n_head_kv\":%ld,\"head_dim\":%ld,\"n_ff\":%ld,"
               "\"rope_theta\":%g,\"norm_eps\":%g,\"n_params\":%llu,\"weight_bytes\":%llu,"
               "\"n_threads\":%ld,\"bos\":%ld,\"eos\":%ld,\"kv_bytes_per_token\":%llu,"
               "\"kv_ctx\":%ld,\"kv_bytes\":%llu,\"memory_bytes\":%llu,\"load_ms\":%.3f}\n",
               (long)mi.n_vocab, (long)mi.n_ctx_train, (long)mi.n_embd, (long)mi.n_layer,
               (long)mi.n_head, (long)mi.n_head_kv, (long)mi.head_dim, (long)mi.n_ff,
               (double)mi.rope_theta, (double)mi.norm_eps, (unsigned long long)mi.n_params,
               (unsigned long long)mi.weight_bytes, (long)mi.n_threads,
               (long)lm_model_token_bos(model), (long)lm_model_token_eos(model),
               (unsigned long long)kv_per_token, (long)kv_ctx, (unsigned long long)kv_bytes,
               (unsigned long long)mem_bytes, load_ms);
    } else {
        char wb[32], kb[32], mb[32];
        human_bytes(wb, sizeof wb, mi.weight_bytes);
        human_bytes(kb, sizeof kb, kv_bytes);
        human_bytes(mb, sizeof mb, mem_bytes);
        printf("model:        %s\n", model_path);
        printf("arch:         %s (%s), kernels %s, %ld threads\n", arch, format, kernels,
               (long)mi.n_threads);
        printf("parameters:   %llu (%s of weights)\n", (unsigned long long)mi.n_params, wb);
        printf("weights:      %s\n", mi.quant ? mi.quant : "");
        printf("vocab:        %ld (bos %ld, eos %ld)\n", (long)mi.n_vocab,
               (long)lm_model_token_bos(model), (long)lm_model_token_eos(model));
        printf("context:      %ld (trained)\n", (long)mi.n_ctx_train);
        printf("layers:       %ld, embd %ld, ff %ld\n", (long)mi.n_layer, (long)mi.n_embd,
               (long)mi.n_ff);
        printf("heads:        %ld (kv %ld), head_dim %ld\n", (long)mi.n_head, (long)mi.n_head_kv,
               (long)mi.head_dim);
        printf("rope_theta:   %g, norm_eps %g\n", (double)mi.rope_theta, (double)mi.norm_eps);
        printf("kv cache:     %llu bytes/token, %s at %ld tokens\n",
               (unsigned long long)kv_per_token, kb, (long)kv_ctx);
        printf("memory:       %s (weights + kv cache)\n", mb);
        printf("load:         %.1f ms\n", load_ms);
    }
    lm_model_free(model);
    return CLI_EXIT_OK;
}
