/* tests/cuda/lmcuda.c: the CUDA backend's tests and benchmarks. They need a GPU, so they are a
 * program that tests/cuda/run.sh runs on one, not ctests (CI has no GPU; test_device covers the
 * no-GPU path there). Each subcommand prints a table and a summary line and exits non-zero when
 * anything fails:
 *   kernels                every format's product on both paths against the CPU reference
 *                          (compute/cpu/quants_ref.c) on random blocks, and the float path's
 *                          batch invariance
 *   fixtures DATA MODELS   every model fixture on CUDA against the CPU, F32 KV cache on both,
 *                          ||a - b|| / ||b|| of the logits after a prompt and 4 decode steps, once
 *                          with the prompt in passes of at most 4 tokens (the float path) and once
 *                          in one pass of 300 (tensor cores, prefill attention, split decode
 *                          attention); greedy continuations of stories260K and tinychat equal
 *   batch DATA             batched decode equal to one-by-one to the bit, graphs equal to none,
 *                          passes mixing prompts and decode steps within the bound of the format
 *   errors DATA MODELS     out of GPU memory for weights, caches and buffers is LM_ERR_NOMEM
 *                          naming what did not fit; auto then runs on the CPU; no such GPU
 *   bench FILE...          decode at batch 1 (graphs on and off), prefill P=128/512, TTFT of a
 *                          500-token prompt, decode throughput at 1/8/32/64 streams of 512-token
 *                          contexts, device memory against weights + KV, and the copy bandwidth
 *   profile FILE           one decode step and one 512-token prefill inside cudaProfilerStart/Stop
 *                          (run under ncu --profile-from-start off) */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute/cuda/cuda.h"
#include "model/model.h"
#include "randmat.h"

static int g_fail;

#define CHECK(cond, ...)                          \
    do {                                          \
        if (!(cond)) {                            \
            printf("FAIL: " __VA_ARGS__);         \
            printf("\n");                         \
            g_fail++;                             \
        }                                         \
    } while (0)

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double x = (double)a[i] - (double)b[i];
        if (a[i] != a[i]) return INFINITY; /* NaN never passes */
        d += x * x;
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

/* The device under test: cuda, or LMCUDA_DEVICE (cpu runs the harness itself where there is no
 * GPU: its own checks, not the backend's). */
static const char *gpu_dev(void) {
    const char *d = getenv("LMCUDA_DEVICE");
    return d && *d ? d : "cuda";
}

static bool is_cuda(const cm_backend *be) { return !strcmp(be->ops->name, "cuda"); }

static void set_graphs(cm_ctx *c, const cm_backend *be, bool on) {
    if (is_cuda(be)) cm_cuda_set_graphs(c, on);
}

static cm_backend *cuda_backend(void) {
    cm_backend *be = NULL;
    lm_error err = {0};
    if (cm_backend_device_new("cuda", &be, &err)) {
        printf("FAIL: no CUDA backend: %s\n", err.msg);
        exit(1);
    }
    return be;
}

/* ---- kernels ---- */

/* y = W x for n tokens on one path; returns the relative error against ref, or -1 when the path
 * does not exist for the format. */
static double run_path(cm_backend *be, const cm_matrix *w, const float *x, size_t n, const float *ref, int path,
                       float *y) {
    lm_error err = {0};
    lm_status st = cm_cuda_matmul(be, w, x, n, y, path, &err);
    if (st == LM_ERR_UNSUPPORTED) return -1;
    if (st) {
        printf("FAIL: %s\n", err.msg);
        g_fail++;
        return INFINITY;
    }
    return rel_err(y, ref, n * w->rows);
}

/* The reference products of every token, and the checks of one matrix. */
static void check_matrix(cm_backend *be, const cm_matrix *w, const char *name, lm_rng *r) {
    enum { NMAX = 100 };
    size_t rows = w->rows, cols = w->cols;
    float *x = xmalloc(NMAX * cols * sizeof(float)), *ref = xmalloc(NMAX * rows * sizeof(float));
    float *y = xmalloc(NMAX * rows * sizeof(float)), *y1 = xmalloc(rows * sizeof(float));
    for (size_t i = 0; i < NMAX * cols; i++) x[i] = frand(r, -1, 1);
    for (size_t t = 0; t < NMAX; t++)
        for (size_t i = 0; i < rows; i++)
            ref[t * rows + i] = w->type == CM_MLX ? cm_mlx_dot_row(w, i, x + t * cols)
                                                  : cm_dot_ref(w->type, (const uint8_t *)w->data + i * w->row_bytes,
                                                               x + t * cols, cols);
    static const size_t nf[4] = {1, 3, 4, 7}, nq[3] = {5, 64, 100};
    double ef = 0, eq = -1;
    bool invariant = true;
    for (int k = 0; k < 4; k++) {
        double e = run_path(be, w, x, nf[k], ref, 0, y);
        ef = e > ef ? e : ef;
        if (k == 0) memcpy(y1, y, rows * sizeof(float));
        else if (memcmp(y1, y, rows * sizeof(float))) invariant = false; /* token 0 alone == in a batch */
    }
    for (int k = 0; k < 3; k++) {
        double e = run_path(be, w, x, nq[k], ref, 1, y);
        if (e >= 0) eq = e > eq ? e : eq;
    }
    bool ok = ef <= 1e-5 && invariant && (eq < 0 || eq <= 3e-3);
    printf("  %-18s %4zux%-5zu float path %.2e (<= 1e-5)%s  tensor cores %s%.2e (<= 3e-3)  %s\n", name, rows, cols, ef,
           invariant ? "" : " NOT batch-invariant", eq < 0 ? "n/a " : "", eq < 0 ? 0.0 : eq, ok ? "ok" : "FAIL");
    if (!ok) g_fail++;
    free(x);
    free(ref);
    free(y);
    free(y1);
}

static int cmd_kernels(void) {
    cm_backend *be = cuda_backend();
    lm_rng r;
    lm_rng_seed(&r, 42);
    static const uint32_t types[] = {CM_F32, CM_F16, CM_BF16, CM_Q4_0, CM_Q4_1, CM_Q5_0, CM_Q5_1, CM_Q8_0,
                                     CM_Q8_1, CM_Q2_K, CM_Q3_K, CM_Q4_K, CM_Q5_K, CM_Q6_K, CM_Q8_K};
    printf("kernels on %s: each format's products against cm_dot_ref / cm_mlx_dot_row (double sums)\n",
           be->ops->describe(be));
    int n = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t shapes[2] = {512, 100};
        for (int s = 0; s < 2; s++) {
            size_t cols = shapes[s];
            if (s == 1 && types[i] != CM_F32 && types[i] != CM_F16 && types[i] != CM_BF16) continue;
            cm_matrix w;
            memset(&w, 0, sizeof w);
            w.type = types[i];
            w.rows = 67;
            w.cols = cols;
            uint8_t *data = random_matrix(types[i], w.rows, cols, &r, &w.row_bytes);
            w.data = data;
            check_matrix(be, &w, cm_type_get(types[i])->name, &r);
            free(data);
            n++;
        }
    }
    static const uint32_t sbt[3] = {CM_F16, CM_BF16, CM_F32};
    for (uint32_t bits = 2; bits <= 8; bits++)
        for (uint32_t gs = 32; gs <= 128; gs *= 2)
            for (int k = 0; k < 3; k++) {
                cm_matrix w;
                memset(&w, 0, sizeof w);
                w.type = CM_MLX;
                w.rows = 67;
                w.cols = 384;
                w.bits = bits;
                w.group_size = gs;
                w.sb_type = sbt[k];
                w.row_bytes = w.cols * bits / 8;
                uint8_t *sc, *bi;
                uint8_t *data = random_mlx(w.rows, w.cols, bits, gs, sbt[k], &r, &sc, &bi);
                w.data = data;
                w.scales = sc;
                w.biases = bi;
                char name[48];
                snprintf(name, sizeof name, "MLX %u-bit g%u %s", bits, gs, k == 0 ? "f16" : k == 1 ? "bf16" : "f32");
                check_matrix(be, &w, name, &r);
                free(data);
                free(sc);
                free(bi);
                n++;
            }
    printf("kernels: %d matrices, %s\n", n, g_fail ? "FAILED" : "all within bounds");
    cm_backend_free(be);
    return g_fail ? 1 : 0;
}

/* ---- running a model on hand-made batches ---- */

typedef struct runner {
    lm_model *m;
    const cm_backend_ops *ops;
    cm_ctx *c;
    size_t V;
} runner;

static bool runner_open(runner *ru, const char *path, const char *device, size_t max_tokens, size_t max_seqs) {
    memset(ru, 0, sizeof *ru);
    lm_model_params mp = lm_model_default_params();
    mp.device = device;
    lm_error err = {0};
    if (lm_model_load(path, &mp, &ru->m, &err)) {
        printf("FAIL: %s on %s: %s\n", path, device, err.msg);
        g_fail++;
        return false;
    }
    ru->ops = ru->m->be->ops;
    ru->V = (size_t)ru->m->hp.n_vocab;
    cm_ctx_params cp = {.n_threads = 0, .max_tokens = max_tokens, .max_seqs = max_seqs, .max_logits = max_seqs};
    if (ru->ops->ctx_new(ru->m->be, &ru->m->net, &cp, &ru->c, &err)) {
        printf("FAIL: %s: context: %s\n", path, err.msg);
        g_fail++;
        lm_model_free(ru->m);
        return false;
    }
    return true;
}

static void runner_close(runner *ru) {
    if (!ru->m) return;
    ru->ops->ctx_free(ru->c);
    lm_model_free(ru->m);
    ru->m = NULL;
}

static cm_kv *kv_new(runner *ru, size_t n_ctx, uint32_t type) {
    cm_kv *kv = NULL;
    lm_error err = {0};
    if (ru->ops->kv_new(ru->c, n_ctx, type, &kv, &err)) {
        printf("FAIL: KV cache: %s\n", err.msg);
        exit(1);
    }
    return kv;
}

/* One pass: sequence i evaluates ids[i][0..n[i]) at pos[i] of kv[i]; logits of its last token
 * into out[i] when not NULL. */
static void pass(runner *ru, size_t k, cm_kv **kv, const lm_token *const *ids, const size_t *n, const size_t *pos,
                 float **out) {
    size_t total = 0;
    for (size_t i = 0; i < k; i++) total += n[i];
    lm_token *all = xmalloc(total * sizeof *all);
    cm_seq *seqs = xmalloc(k * sizeof *seqs);
    size_t t = 0, nl = 0;
    for (size_t i = 0; i < k; i++) {
        memcpy(all + t, ids[i], n[i] * sizeof *all);
        seqs[i] = (cm_seq){.kv = kv[i], .t0 = t, .n = n[i], .pos0 = pos[i], .n_logits = out[i] ? 1 : 0, .logits = out[i]};
        nl += out[i] ? 1 : 0;
        t += n[i];
    }
    cm_batch b = {.ids = all, .n_tok = t, .seqs = seqs, .n_seq = k, .n_logits = nl};
    lm_forward(ru->m, ru->c, &b);
    free(all);
    free(seqs);
}

static void pass1(runner *ru, cm_kv *kv, const lm_token *ids, size_t n, size_t pos, float *out) {
    pass(ru, 1, &kv, &ids, &n, &pos, &out);
}

static void random_ids(lm_token *ids, size_t n, size_t V, uint64_t seed) {
    lm_rng r;
    lm_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) ids[i] = (lm_token)(lm_rng_next(&r) % V);
}

static size_t argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* ---- fixtures ---- */

typedef struct fixture {
    char path[512], name[128];
} fixture;

static int list_fixtures(const char *data, const char *models, fixture *fx, int cap) {
    int n = 0;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/models", data);
    DIR *d = opendir(dir);
    if (!d) {
        printf("FAIL: cannot open %s\n", dir);
        exit(1);
    }
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "README.md")) continue;
        snprintf(fx[n].path, sizeof fx[n].path, "%.300s/%.200s", dir, e->d_name);
        snprintf(fx[n].name, sizeof fx[n].name, "%.100s", e->d_name);
        n++;
    }
    closedir(d);
    /* directory order is not stable: sort by name */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(fx[j].name, fx[i].name) < 0) {
                fixture t = fx[i];
                fx[i] = fx[j];
                fx[j] = t;
            }
    static const char *const extra[4][2] = {{"stories260K/stories260K-f32.gguf", "stories260K-f32"},
                                            {"stories260K/stories260K-q8_0.gguf", "stories260K-q8_0"},
                                            {"synthetic/tiny-q4_0.gguf", "tiny-q4_0"},
                                            {"synthetic/tiny-q4_k_m.gguf", "tiny-q4_k_m"}};
    for (int i = 0; i < 4 && n < cap; i++, n++) {
        snprintf(fx[n].path, sizeof fx[n].path, "%s/%s", data, extra[i][0]);
        snprintf(fx[n].name, sizeof fx[n].name, "%s", extra[i][1]);
    }
    if (models && n < cap) {
        snprintf(fx[n].path, sizeof fx[n].path, "%s/tinychat", models);
        snprintf(fx[n].name, sizeof fx[n].name, "tinychat");
        n++;
    }
    /* LMCUDA_ONLY=substring keeps the fixtures whose names contain it (the sanitizer runs) */
    const char *only = getenv("LMCUDA_ONLY");
    if (only && *only) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (strstr(fx[i].name, only)) fx[k++] = fx[i];
        n = k;
    }
    return n;
}

static bool is_float_model(const lm_model *m) {
    const char *q = m->quant_summary;
    return !strstr(q, "MLX") && !strstr(q, "Q2_K") && !strstr(q, "Q3_K") && !strstr(q, "Q4_") && !strstr(q, "Q5_") &&
           !strstr(q, "Q6_K") && !strstr(q, "Q8_");
}

enum { FX_DEC = 4 };

/* Logits rows (1 + FX_DEC) x V: after the prompt and after each of FX_DEC decode tokens. The
 * prompt goes in passes of at most chunk tokens. */
static float *fx_run(runner *ru, const lm_token *prompt, size_t P, size_t chunk, const lm_token *dec) {
    size_t V = ru->V;
    float *rows = xmalloc((1 + FX_DEC) * V * sizeof(float));
    cm_kv *kv = kv_new(ru, 512, CM_F32);
    for (size_t p = 0; p < P; p += chunk) {
        size_t k = P - p < chunk ? P - p : chunk;
        pass1(ru, kv, prompt + p, k, p, p + k == P ? rows : NULL);
    }
    for (int d = 0; d < FX_DEC; d++) pass1(ru, kv, dec + d, 1, P + (size_t)d, rows + (size_t)(d + 1) * V);
    ru->ops->kv_free(kv);
    return rows;
}

static double fx_compare(runner *cpu, runner *gpu, size_t P, size_t chunk, uint64_t seed) {
    lm_token *prompt = xmalloc(P * sizeof *prompt), dec[FX_DEC];
    random_ids(prompt, P, cpu->V, seed);
    random_ids(dec, FX_DEC, cpu->V, seed + 1);
    float *a = fx_run(gpu, prompt, P, chunk, dec), *b = fx_run(cpu, prompt, P, chunk, dec);
    double worst = 0;
    for (int r = 0; r <= FX_DEC; r++) {
        double e = rel_err(a + (size_t)r * cpu->V, b + (size_t)r * cpu->V, cpu->V);
        worst = e > worst ? e : worst;
    }
    free(prompt);
    free(a);
    free(b);
    return worst;
}

/* Greedy tokens after a text prompt, default F16 cache. */
static void greedy(runner *ru, const lm_token *prompt, size_t P, lm_token *out, int steps) {
    float *lg = xmalloc(ru->V * sizeof(float));
    cm_kv *kv = kv_new(ru, 512, CM_F16);
    pass1(ru, kv, prompt, P, 0, lg);
    for (int i = 0; i < steps; i++) {
        out[i] = (lm_token)argmax(lg, ru->V);
        pass1(ru, kv, &out[i], 1, P + (size_t)i, lg);
    }
    ru->ops->kv_free(kv);
    free(lg);
}

static int cmd_fixtures(const char *data, const char *models) {
    fixture fx[64];
    int n = list_fixtures(data, models, fx, 64);
    printf("fixtures: CUDA against the CPU, F32 KV on both, max ||a-b||/||b|| over the logits after the prompt and 4 "
           "decode steps\n");
    printf("  %-22s %-44s %-22s %-22s\n", "model", "weights", "prompt 11 in passes of 4", "prompt 300 in one pass");
    for (int i = 0; i < n; i++) {
        runner cpu, gpu;
        if (!runner_open(&cpu, fx[i].path, "cpu", 512, 4)) continue;
        if (!runner_open(&gpu, fx[i].path, gpu_dev(), 512, 4)) {
            runner_close(&cpu);
            continue;
        }
        const lm_model *m = cpu.m;
        bool fl = is_float_model(m), mlx = strstr(m->quant_summary, "MLX") != NULL;
        /* float weights: FP32 everywhere; MLX on the float path: exact against the CPU's int16
         * activations; int8 activations of the CPU's GGUF kernels and the FP16 tensor cores: 1e-2 */
        double ba = fl ? 1e-4 : mlx ? 2e-3 : 1e-2, bb = fl ? 1e-4 : 1e-2;
        double ea = fx_compare(&cpu, &gpu, 11, 4, 100 + (uint64_t)i);
        double eb = fx_compare(&cpu, &gpu, 300, 512, 200 + (uint64_t)i);
        bool ok = ea <= ba && eb <= bb;
        printf("  %-22s %-44.44s %.2e (<= %.0e)    %.2e (<= %.0e)    %s\n", fx[i].name, m->quant_summary, ea, ba, eb, bb,
               ok ? "ok" : "FAIL");
        if (!ok) g_fail++;
        runner_close(&cpu);
        runner_close(&gpu);
    }
    /* greedy continuations of the real models */
    static const char *const greedy_models[3] = {"stories260K-f32", "stories260K-q8_0", "tinychat"};
    for (int g = 0; g < 3; g++) {
        const fixture *f = NULL;
        for (int i = 0; i < n; i++)
            if (!strcmp(fx[i].name, greedy_models[g])) f = &fx[i];
        const char *only = getenv("LMCUDA_ONLY");
        if (!f && only && *only) continue; /* left out by LMCUDA_ONLY, not missing */
        if (!f) {
            printf("FAIL: fixture %s missing\n", greedy_models[g]);
            g_fail++;
            continue;
        }
        runner cpu, gpu;
        if (!runner_open(&cpu, f->path, "cpu", 512, 4)) continue;
        if (!runner_open(&gpu, f->path, gpu_dev(), 512, 4)) {
            runner_close(&cpu);
            continue;
        }
        const char *text = g == 2 ? "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
                                  : "Once upon a time, there was a little girl";
        lm_token prompt[128];
        size_t P = 0;
        lm_error err = {0};
        if (lm_model_tokenize(cpu.m, text, strlen(text), LM_TOK_ADD_SPECIAL | LM_TOK_PARSE_SPECIAL, prompt, 128, &P, &err)) {
            printf("FAIL: tokenize: %s\n", err.msg);
            g_fail++;
        } else {
            enum { STEPS = 48 };
            lm_token a[STEPS], b[STEPS];
            greedy(&gpu, prompt, P, a, STEPS);
            greedy(&cpu, prompt, P, b, STEPS);
            int same = 0;
            while (same < STEPS && a[same] == b[same]) same++;
            char txt[1024];
            size_t len = 0;
            if (lm_model_detokenize(gpu.m, a, STEPS, true, txt, sizeof txt, &len, &err)) snprintf(txt, sizeof txt, "?");
            for (char *p = txt; *p; p++)
                if (*p == '\n') *p = ' ';
            printf("  greedy %-18s %d/%d tokens equal: %s  \"%.70s\"\n", f->name, same, STEPS, same == STEPS ? "ok" : "FAIL",
                   txt);
            if (same != STEPS) g_fail++;
        }
        runner_close(&cpu);
        runner_close(&gpu);
    }
    printf("fixtures: %d models, %s\n", n, g_fail ? "FAILED" : "all within bounds");
    return g_fail ? 1 : 0;
}

/* ---- batched against one-by-one ---- */

enum { B_SEQ = 3, B_DEC = 6 };
static const size_t B_PROMPT[B_SEQ] = {5, 11, 23};

/* Decode logits (B_DEC rows per sequence) with each prompt evaluated alone first; the decode steps
 * alone (together = false) or all sequences in one pass per step. */
static float *decode_run(runner *ru, const lm_token prompts[B_SEQ][32], const lm_token dec[B_SEQ][B_DEC], bool together) {
    size_t V = ru->V;
    float *rows = xmalloc((size_t)B_SEQ * B_DEC * V * sizeof(float));
    cm_kv *kv[B_SEQ];
    for (int s = 0; s < B_SEQ; s++) {
        kv[s] = kv_new(ru, 256, CM_F16);
        pass1(ru, kv[s], prompts[s], B_PROMPT[s], 0, NULL);
    }
    if (!together) {
        for (int s = 0; s < B_SEQ; s++)
            for (int d = 0; d < B_DEC; d++)
                pass1(ru, kv[s], &dec[s][d], 1, B_PROMPT[s] + (size_t)d, rows + ((size_t)s * B_DEC + (size_t)d) * V);
    } else {
        for (int d = 0; d < B_DEC; d++) {
            const lm_token *ids[B_SEQ];
            size_t n[B_SEQ], pos[B_SEQ];
            float *out[B_SEQ];
            for (int s = 0; s < B_SEQ; s++) {
                ids[s] = &dec[s][d];
                n[s] = 1;
                pos[s] = B_PROMPT[s] + (size_t)d;
                out[s] = rows + ((size_t)s * B_DEC + (size_t)d) * V;
            }
            pass(ru, B_SEQ, kv, ids, n, pos, out);
        }
    }
    for (int s = 0; s < B_SEQ; s++) ru->ops->kv_free(kv[s]);
    return rows;
}

/* test_batch's mixed passes: prompts in chunks beside decode steps; logits of every step. */
static void mixed_run(runner *ru, const lm_token prompts[B_SEQ][32], const lm_token dec[B_SEQ][B_DEC], bool shared,
                      float *rows[B_SEQ]) {
    size_t V = ru->V;
    cm_kv *kv[B_SEQ];
    for (int s = 0; s < B_SEQ; s++) {
        kv[s] = kv_new(ru, 256, CM_F32);
        rows[s] = xmalloc((B_DEC + 1) * V * sizeof(float));
    }
    if (!shared) {
        for (int s = 0; s < B_SEQ; s++) {
            pass1(ru, kv[s], prompts[s], B_PROMPT[s], 0, rows[s]);
            for (int d = 0; d < B_DEC; d++)
                pass1(ru, kv[s], &dec[s][d], 1, B_PROMPT[s] + (size_t)d, rows[s] + (size_t)(d + 1) * V);
        }
    } else {
        {
            const lm_token *ids[2] = {prompts[0], prompts[1]};
            size_t n[2] = {5, 6}, pos[2] = {0, 0};
            float *out[2] = {rows[0], NULL};
            pass(ru, 2, kv, ids, n, pos, out);
        }
        {
            const lm_token *ids[3] = {&dec[0][0], prompts[1] + 6, prompts[2]};
            size_t n[3] = {1, 5, 16}, pos[3] = {5, 6, 0};
            float *out[3] = {rows[0] + V, rows[1], NULL};
            pass(ru, 3, kv, ids, n, pos, out);
        }
        {
            const lm_token *ids[3] = {&dec[0][1], &dec[1][0], prompts[2] + 16};
            size_t n[3] = {1, 1, 7}, pos[3] = {6, 11, 16};
            float *out[3] = {rows[0] + 2 * V, rows[1] + V, rows[2]};
            pass(ru, 3, kv, ids, n, pos, out);
        }
        int next[B_SEQ] = {2, 1, 0};
        for (;;) {
            cm_kv *k3[B_SEQ];
            const lm_token *ids[B_SEQ];
            size_t n[B_SEQ], pos[B_SEQ], k = 0;
            float *out[B_SEQ];
            for (int s = 0; s < B_SEQ; s++) {
                if (next[s] >= B_DEC) continue;
                k3[k] = kv[s];
                ids[k] = &dec[s][next[s]];
                n[k] = 1;
                pos[k] = B_PROMPT[s] + (size_t)next[s];
                out[k] = rows[s] + (size_t)(next[s] + 1) * V;
                next[s]++;
                k++;
            }
            if (!k) break;
            pass(ru, k, k3, ids, n, pos, out);
        }
    }
    for (int s = 0; s < B_SEQ; s++) ru->ops->kv_free(kv[s]);
}

/* 64 streams: one decode step together (tensor cores past 4 tokens) against each alone. */
static double streams_run(runner *ru, size_t S) {
    size_t V = ru->V;
    cm_kv **kv = xmalloc(S * sizeof *kv);
    float *alone = xmalloc(S * V * sizeof(float)), *tog = xmalloc(S * V * sizeof(float));
    lm_token *ids = xmalloc(S * 6 * sizeof *ids);
    random_ids(ids, S * 6, V, 77);
    for (size_t s = 0; s < S; s++) {
        kv[s] = kv_new(ru, 64, CM_F16);
        pass1(ru, kv[s], ids + s * 6, 5, 0, NULL);
    }
    for (size_t s = 0; s < S; s++) pass1(ru, kv[s], ids + s * 6 + 5, 1, 5, alone + s * V);
    const lm_token **pi = xmalloc(S * sizeof *pi);
    size_t *n = xmalloc(S * sizeof *n), *pos = xmalloc(S * sizeof *pos);
    float **out = xmalloc(S * sizeof *out);
    for (size_t s = 0; s < S; s++) {
        pi[s] = ids + s * 6 + 5;
        n[s] = 1;
        pos[s] = 5;
        out[s] = tog + s * V;
    }
    pass(ru, S, kv, pi, n, pos, out); /* rewrites position 5 of each cache with the same token */
    double worst = 0;
    for (size_t s = 0; s < S; s++) {
        double e = rel_err(tog + s * V, alone + s * V, V);
        worst = e > worst ? e : worst;
    }
    for (size_t s = 0; s < S; s++) ru->ops->kv_free(kv[s]);
    free(kv);
    free(alone);
    free(tog);
    free(ids);
    free(pi);
    free(n);
    free(pos);
    free(out);
    return worst;
}

static int cmd_batch(const char *data) {
    fixture fx[64];
    int n = list_fixtures(data, NULL, fx, 64);
    printf("batch on CUDA: decode of 3 sequences together against alone (bit-exact), with graphs against without "
           "(bit-exact), mixed prompt/decode passes against alone, 64 streams in one step against alone\n");
    for (int i = 0; i < n; i++) {
        runner ru;
        if (!runner_open(&ru, fx[i].path, gpu_dev(), 64, 64)) continue;
        size_t V = ru.V;
        lm_token prompts[B_SEQ][32], dec[B_SEQ][B_DEC];
        for (int s = 0; s < B_SEQ; s++) {
            random_ids(prompts[s], 32, V, 1000 + (uint64_t)s);
            random_ids(dec[s], B_DEC, V, 2000 + (uint64_t)s);
        }
        size_t sz = (size_t)B_SEQ * B_DEC * V * sizeof(float);
        float *alone = decode_run(&ru, prompts, dec, false);
        float *tog = decode_run(&ru, prompts, dec, true);
        set_graphs(ru.c, ru.m->be, false);
        float *plain = decode_run(&ru, prompts, dec, true);
        set_graphs(ru.c, ru.m->be, true);
        bool exact = !memcmp(alone, tog, sz), gexact = !memcmp(tog, plain, sz);
        float *ra[B_SEQ], *rb[B_SEQ];
        mixed_run(&ru, prompts, dec, false, ra);
        mixed_run(&ru, prompts, dec, true, rb);
        double em = 0;
        for (int s = 0; s < B_SEQ; s++) {
            for (int r = 0; r <= B_DEC; r++) {
                double e = rel_err(rb[s] + (size_t)r * V, ra[s] + (size_t)r * V, V);
                em = e > em ? e : em;
            }
            free(ra[s]);
            free(rb[s]);
        }
        bool fl = is_float_model(ru.m);
        double bm = fl ? 1e-6 : 1e-2;
        double e64 = streams_run(&ru, 64);
        bool ok = exact && gexact && em <= bm && e64 <= bm;
        printf("  %-22s decode together %s, graphs %s, mixed passes %.2e (<= %.0e), 64 streams %.2e (<= %.0e)  %s\n",
               fx[i].name, exact ? "==" : "!=", gexact ? "==" : "!=", em, bm, e64, bm, ok ? "ok" : "FAIL");
        if (!ok) g_fail++;
        free(alone);
        free(tog);
        free(plain);
        runner_close(&ru);
    }
    printf("batch: %d models, %s\n", n, g_fail ? "FAILED" : "all equal");
    return g_fail ? 1 : 0;
}

/* ---- errors ---- */

static char g_log[8192];
static void collect(lm_log_level level, const char *msg, void *user) {
    (void)level;
    (void)user;
    size_t n = strlen(g_log);
    snprintf(g_log + n, sizeof g_log - n, "%s\n", msg);
}

static int cmd_errors(const char *data, const char *models) {
    char path[600], chat[600];
    snprintf(path, sizeof path, "%s/stories260K/stories260K-f32.gguf", data);
    snprintf(chat, sizeof chat, "%s/tinychat", models);
    lm_error err = {0};
    lm_model *m = NULL;
    lm_model_params mp = lm_model_default_params();
    mp.device = "cuda:99";
    lm_status st = lm_model_load(path, &mp, &m, &err);
    printf("  cuda:99: %s: %s\n", lm_status_str(st), err.msg);
    CHECK(st == LM_ERR_IO && strstr(err.msg, "cuda:99"), "cuda:99 should be LM_ERR_IO naming it");
    /* a cache past the card */
    runner ru;
    if (runner_open(&ru, path, "cuda", 16, 1)) {
        cm_kv *kv = NULL;
        st = ru.ops->kv_new(ru.c, (size_t)1 << 30, CM_F32, &kv, &err);
        printf("  KV cache of 2^30 tokens: %s: %s\n", lm_status_str(st), err.msg);
        CHECK(st == LM_ERR_NOMEM && strstr(err.msg, "KV cache"), "a huge KV cache should be LM_ERR_NOMEM naming it");
        cm_ctx *c2 = NULL;
        cm_ctx_params cp = {.max_tokens = (size_t)1 << 28, .max_seqs = 1, .max_logits = 1};
        st = ru.ops->ctx_new(ru.m->be, &ru.m->net, &cp, &c2, &err);
        printf("  context of 2^28 tokens: %s: %s\n", lm_status_str(st), err.msg);
        CHECK(st == LM_ERR_NOMEM && strstr(err.msg, "compute buffers"), "a huge context should be LM_ERR_NOMEM");
        if (!st) ru.ops->ctx_free(c2);
        runner_close(&ru);
    }
    /* weights past the free memory: explicit cuda fails, auto runs on the CPU and says so */
    cm_backend *be = cuda_backend();
    void *hold = NULL;
    if (cm_cuda_hold(be, (size_t)64 << 20, &hold, &err)) {
        printf("FAIL: %s\n", err.msg);
        g_fail++;
    } else {
        mp.device = "cuda";
        st = lm_model_load(chat, &mp, &m, &err);
        printf("  tinychat with 64 MB free, cuda: %s: %s\n", lm_status_str(st), err.msg);
        CHECK(st == LM_ERR_NOMEM && strstr(err.msg, "weights need"), "weights past the card should be LM_ERR_NOMEM");
        if (!st) lm_model_free(m);
        mp.device = "auto";
        mp.log = collect;
        g_log[0] = 0;
        st = lm_model_load(chat, &mp, &m, &err);
        printf("  tinychat with 64 MB free, auto: %s, runs on %s\n", lm_status_str(st), st ? "-" : m->be->ops->name);
        CHECK(st == LM_OK && !strcmp(m->be->ops->name, "cpu") && strstr(g_log, "running on the CPU instead"),
              "auto should fall back to the CPU and log it");
        if (!st) lm_model_free(m);
        cm_cuda_unhold(be, hold);
    }
    cm_backend_free(be);
    printf("errors: %s\n", g_fail ? "FAILED" : "all clear");
    return g_fail ? 1 : 0;
}

/* ---- bench ---- */

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

/* Decode tok/s at batch 1 after an 8-token prompt. */
static double bench_decode(runner *ru, bool graphs, int steps) {
    set_graphs(ru->c, ru->m->be, graphs);
    cm_kv *kv = kv_new(ru, 1024, CM_F16);
    lm_token ids[8];
    random_ids(ids, 8, ru->V, 5);
    float *lg = xmalloc(ru->V * sizeof(float));
    pass1(ru, kv, ids, 8, 0, lg);
    lm_token t = ids[7];
    double t0 = 0;
    for (int i = 0; i < 16 + steps; i++) {
        if (i == 16) t0 = now_ms();
        t = (lm_token)((size_t)(t * 7919 + 13) % ru->V);
        pass1(ru, kv, &t, 1, 8 + (size_t)i, lg);
    }
    double ms = now_ms() - t0;
    ru->ops->kv_free(kv);
    free(lg);
    set_graphs(ru->c, ru->m->be, true);
    return steps / (ms / 1e3);
}

/* ms of a P-token prompt in one pass (+ one decode step when decode_after), median of 5. */
static double bench_prefill(runner *ru, size_t P, bool decode_after) {
    cm_kv *kv = kv_new(ru, P + 16, CM_F16);
    lm_token *ids = xmalloc((P + 1) * sizeof *ids);
    random_ids(ids, P + 1, ru->V, 9);
    float *lg = xmalloc(ru->V * sizeof(float));
    double v[6];
    for (int r = 0; r < 6; r++) {
        ru->ops->kv_truncate(kv, 0);
        double t0 = now_ms();
        pass1(ru, kv, ids, P, 0, lg);
        if (decode_after) pass1(ru, kv, ids + P, 1, P, lg);
        v[r] = now_ms() - t0;
    }
    ru->ops->kv_free(kv);
    free(ids);
    free(lg);
    return median(v + 1, 5); /* the first is a warm-up */
}

/* Decode tokens/s of S streams with 512-token contexts, every stream one token per pass. */
static double bench_streams(runner *ru, size_t S, int steps) {
    size_t V = ru->V;
    cm_kv **kv = xmalloc(S * sizeof *kv);
    lm_token *ids = xmalloc(512 * sizeof *ids);
    for (size_t s = 0; s < S; s++) {
        kv[s] = kv_new(ru, 512 + (size_t)steps + 8, CM_F16);
        random_ids(ids, 512, V, 300 + s);
        pass1(ru, kv[s], ids, 512, 0, NULL);
    }
    float *lg = xmalloc(S * V * sizeof(float));
    lm_token *tok = xmalloc(S * sizeof *tok);
    const lm_token **pi = xmalloc(S * sizeof *pi);
    size_t *n = xmalloc(S * sizeof *n), *pos = xmalloc(S * sizeof *pos);
    float **out = xmalloc(S * sizeof *out);
    double t0 = 0;
    for (int i = 0; i < steps + 4; i++) {
        if (i == 4) t0 = now_ms();
        for (size_t s = 0; s < S; s++) {
            tok[s] = (lm_token)((s * 31 + (size_t)i * 7) % V);
            pi[s] = &tok[s];
            n[s] = 1;
            pos[s] = 512 + (size_t)i;
            out[s] = lg + s * V;
        }
        pass(ru, S, kv, pi, n, pos, out);
    }
    double ms = now_ms() - t0;
    for (size_t s = 0; s < S; s++) ru->ops->kv_free(kv[s]);
    free(kv);
    free(ids);
    free(lg);
    free(tok);
    free(pi);
    free(n);
    free(pos);
    free(out);
    return (double)S * steps / (ms / 1e3);
}

static int cmd_bench(int argc, char **argv) {
    lm_error err = {0};
    double bw = 1;
    if (!strcmp(gpu_dev(), "cuda")) {
        cm_backend *be = cuda_backend();
        if (cm_cuda_copy_bandwidth(be, (size_t)1 << 30, &bw, &err)) printf("FAIL: %s\n", err.msg);
        printf("bench on %s: device-to-device copy %.0f GB/s (read + write, 1 GiB, median of 10)\n", be->ops->describe(be),
               bw);
        cm_backend_free(be);
    }
    for (int a = 0; a < argc; a++) {
        const char *path = argv[a];
        double t0 = now_ms();
        runner ru;
        if (!runner_open(&ru, path, gpu_dev(), 512, 64)) continue;
        double load_ms = now_ms() - t0;
        lm_model_info info;
        lm_model_get_info(ru.m, &info);
        uint64_t file = info.weight_bytes;
        double floor_tok = bw * 1e9 / (double)file;
        double dec_g = bench_decode(&ru, true, 256), dec_n = bench_decode(&ru, false, 128);
        double p128 = bench_prefill(&ru, 128, false), p512 = bench_prefill(&ru, 512, false);
        double ttft = bench_prefill(&ru, 500, true);
        double s1 = bench_streams(&ru, 1, 32), s8 = bench_streams(&ru, 8, 32), s32 = bench_streams(&ru, 32, 32);
        double s64 = bench_streams(&ru, 64, 32);
        /* memory: the weights, this context and one 4096-token F16 cache */
        cm_kv *kv = kv_new(&ru, 4096, CM_F16);
        size_t w = 0, c = 0, k = 0;
        if (is_cuda(ru.m->be)) cm_cuda_mem(ru.m->be, &w, &c, &k);
        ru.ops->kv_free(kv);
        double over = ((double)(w + c + k) / (double)(file + k) - 1.0) * 100.0;
        printf("  %s\n    weights %.0f MB (file tensors %.0f MB), load %.0f ms\n", path, w / 1e6, file / 1e6, load_ms);
        printf("    decode b1: %.0f tok/s with graphs (%.0f %% of the %.0f tok/s floor), %.0f without\n", dec_g,
               100.0 * dec_g / floor_tok, floor_tok, dec_n);
        printf("    prefill: P=128 %.0f tok/s, P=512 %.0f tok/s; TTFT of 500 tokens %.1f ms\n", 128 / (p128 / 1e3),
               512 / (p512 / 1e3), ttft);
        printf("    streams of 512-token contexts: 1 %.0f, 8 %.0f, 32 %.0f, 64 %.0f tok/s (64 = %.1fx batch 1)\n", s1, s8,
               s32, s64, s64 / s1);
        printf("    device memory: weights %.0f MB + context %.0f MB + KV(4096) %.0f MB = weights + KV + %.1f %%\n", w / 1e6,
               c / 1e6, k / 1e6, over);
        printf("JSON {\"model\":\"%s\",\"bw_gbs\":%.1f,\"decode_tok_s\":%.1f,\"decode_nograph_tok_s\":%.1f,"
               "\"prefill128_tok_s\":%.1f,\"prefill512_tok_s\":%.1f,\"ttft500_ms\":%.2f,\"streams\":[%.1f,%.1f,%.1f,%.1f],"
               "\"weights_mb\":%.1f,\"ctx_mb\":%.1f,\"kv4096_mb\":%.1f,\"mem_over_pct\":%.2f}\n",
               path, bw, dec_g, dec_n, 128 / (p128 / 1e3), 512 / (p512 / 1e3), ttft, s1, s8, s32, s64, w / 1e6, c / 1e6,
               k / 1e6, over);
        fflush(stdout);
        runner_close(&ru);
    }
    return 0;
}

/* One decode step (kernel by kernel, no graph) and one 512-token prefill between profiler start
 * and stop, for ncu --profile-from-start off. */
static int cmd_profile(const char *path) {
    runner ru;
    if (!runner_open(&ru, path, gpu_dev(), 512, 4)) return 1;
    set_graphs(ru.c, ru.m->be, false);
    cm_kv *kv = kv_new(&ru, 2048, CM_F16);
    lm_token ids[513];
    random_ids(ids, 513, ru.V, 3);
    float *lg = xmalloc(ru.V * sizeof(float));
    pass1(&ru, kv, ids, 256, 0, lg);
    for (int i = 0; i < 4; i++) pass1(&ru, kv, ids + 256 + i, 1, 256 + (size_t)i, lg);
    cm_cuda_profiler(true);
    pass1(&ru, kv, ids + 260, 1, 260, lg);
    cm_cuda_profiler(false);
    ru.ops->kv_truncate(kv, 0);
    pass1(&ru, kv, ids, 512, 0, lg); /* warm */
    cm_cuda_profiler(true);
    pass1(&ru, kv, ids, 512, 0, lg);
    cm_cuda_profiler(false);
    ru.ops->kv_free(kv);
    free(lg);
    runner_close(&ru);
    printf("profile: a decode step at position 260 and a 512-token prefill of %s\n", path);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "kernels")) return cmd_kernels();
    if (argc >= 4 && !strcmp(argv[1], "fixtures")) return cmd_fixtures(argv[2], argv[3]);
    if (argc >= 3 && !strcmp(argv[1], "batch")) return cmd_batch(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "errors")) return cmd_errors(argv[2], argv[3]);
    if (argc >= 3 && !strcmp(argv[1], "bench")) return cmd_bench(argc - 2, argv + 2);
    if (argc >= 3 && !strcmp(argv[1], "profile")) return cmd_profile(argv[2]);
    fprintf(stderr, "usage: lmcuda kernels | fixtures DATA MODELS | batch DATA | errors DATA MODELS | bench FILE... | "
                    "profile FILE\n");
    return 2;
}
