/* tests/unit/test_hub_pull.c: lm_hub_pull, the public hub download (issue 19), against the fake hub
 * of the e2e tests (tests/e2e/hub_server.py, started here on a free loopback port): the progress
 * events of a fresh pull file by file, a second pull that reports every file cached without a
 * request, cancellation from the callback that keeps the partial file and a resume from it, and
 * the parameter checks. */
#include "testutil.h"

#include "hub/hub.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static pid_t g_pid;
static char g_tmp[1024], g_endpoint[64], g_log[1200];

static int start_hub(void **state) {
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "%s", tu_temp_dir());
    char root[1200], port_file[1200], script[4096];
    snprintf(root, sizeof root, "%s/repos", g_tmp);
    snprintf(port_file, sizeof port_file, "%s/port", g_tmp);
    snprintf(g_log, sizeof g_log, "%s/log", g_tmp);
    snprintf(script, sizeof script, "%s", tu_src("tests/e2e/hub_server.py"));
    char *argv[] = {"python3", script, root, port_file, g_log, NULL};
    if (posix_spawnp(&g_pid, "python3", NULL, NULL, argv, environ) != 0) return -1;
    for (int i = 0; i < 300; i++) {
        FILE *f = fopen(port_file, "r");
        int port = 0;
        if (f) {
            if (fscanf(f, "%d", &port) != 1) port = 0;
            fclose(f);
        }
        if (port > 0) {
            snprintf(g_endpoint, sizeof g_endpoint, "http://127.0.0.1:%d", port);
            return 0;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

static int stop_hub(void **state) {
    (void)state;
    if (g_pid > 0) {
        kill(g_pid, SIGTERM);
        waitpid(g_pid, NULL, 0);
    }
    hub_rmtree(g_tmp, NULL);
    return 0;
}

/* Lines the hub logged that start with prefix. */
static int count_log(const char *prefix) {
    FILE *f = fopen(g_log, "r");
    if (!f) return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, prefix, strlen(prefix)) == 0) n++;
    fclose(f);
    return n;
}

typedef struct rec {
    lm_buf log;            /* one line per event, PROGRESS folded into a count */
    int n_progress;
    uint64_t last_done;
    bool monotonic;
    const char *cancel_file; /* cancel at the first PROGRESS (or CACHED) of this file */
    lm_hub_event cancel_on;
} rec;

static int on_event(const lm_hub_progress *p, void *user) {
    rec *r = user;
    static const char *const names[] = {"START", "PROGRESS", "DONE", "CACHED", "WAITING"};
    if (p->event == LM_HUB_FILE_PROGRESS) {
        r->n_progress++;
        if (p->done < r->last_done || (p->total && p->done > p->total)) r->monotonic = false;
        r->last_done = p->done;
    } else {
        lm_buf_printf(&r->log, "%s %s %llu/%llu %zu/%zu\n", names[p->event], p->file, (unsigned long long)p->done,
                      (unsigned long long)p->total, p->index, p->n_files);
        r->last_done = p->done;
    }
    return r->cancel_file && p->event == r->cancel_on && strcmp(p->file, r->cancel_file) == 0;
}

static lm_status pull(const char *cache, rec *r, char *out, size_t cap, lm_error *err) {
    lm_hub_params hp = lm_hub_default_params();
    hp.cache_dir = cache;
    hp.endpoint = g_endpoint;
    hp.progress = on_event;
    hp.progress_user = r;
    r->monotonic = true;
    return lm_hub_pull("test-org/tiny-model", &hp, out, cap, err);
}

static const char *MC = "11111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static void test_events(void **state) {
    (void)state;
    char cache[1200], out[4096], want[4096];
    snprintf(cache, sizeof cache, "%s/cache1", g_tmp);
    rec r = {0};
    lm_error err = {0};
    assert_int_equal(pull(cache, &r, out, sizeof out, &err), LM_OK);
    snprintf(want, sizeof want, "%s/models--test-org--tiny-model/snapshots/%s", cache, MC);
    assert_string_equal(out, want);
    struct stat cfg, gen, model, tok, tokc;
    assert_int_equal(stat(tu_src("models/tinychat/config.json"), &cfg), 0);
    assert_int_equal(stat(tu_src("models/tinychat/generation_config.json"), &gen), 0);
    assert_int_equal(stat(tu_src("models/tinychat/model.safetensors"), &model), 0);
    assert_int_equal(stat(tu_src("models/tinychat/tokenizer.json"), &tok), 0);
    assert_int_equal(stat(tu_src("models/tinychat/tokenizer_config.json"), &tokc), 0);
    /* files in name order, each START then DONE, sizes from the hub */
    char exp[2048];
    snprintf(exp, sizeof exp,
             "START config.json 0/%lld 0/6\nDONE config.json %lld/%lld 0/6\n"
             "START generation_config.json 0/%lld 1/6\nDONE generation_config.json %lld/%lld 1/6\n"
             "START model.safetensors 0/%lld 2/6\nDONE model.safetensors %lld/%lld 2/6\n"
             "START sub/dir/extra.safetensors 0/8 3/6\nDONE sub/dir/extra.safetensors 8/8 3/6\n"
             "START tokenizer.json 0/%lld 4/6\nDONE tokenizer.json %lld/%lld 4/6\n"
             "START tokenizer_config.json 0/%lld 5/6\nDONE tokenizer_config.json %lld/%lld 5/6\n",
             (long long)cfg.st_size, (long long)cfg.st_size, (long long)cfg.st_size, (long long)gen.st_size,
             (long long)gen.st_size, (long long)gen.st_size, (long long)model.st_size, (long long)model.st_size,
             (long long)model.st_size, (long long)tok.st_size, (long long)tok.st_size, (long long)tok.st_size,
             (long long)tokc.st_size, (long long)tokc.st_size, (long long)tokc.st_size);
    assert_string_equal(r.log.data, exp);
    assert_true(r.n_progress >= 6);
    assert_true(r.monotonic);
    lm_buf_free(&r.log);
    /* again: every file cached, no HEAD or GET for a file */
    int heads = count_log("HEAD /test-org/tiny-model/"), gets = count_log("GET /test-org/tiny-model/");
    rec r2 = {0};
    assert_int_equal(pull(cache, &r2, out, sizeof out, &err), LM_OK);
    assert_string_equal(out, want);
    snprintf(exp, sizeof exp,
             "CACHED config.json %lld/%lld 0/6\nCACHED generation_config.json %lld/%lld 1/6\n"
             "CACHED model.safetensors %lld/%lld 2/6\nCACHED sub/dir/extra.safetensors 8/8 3/6\n"
             "CACHED tokenizer.json %lld/%lld 4/6\nCACHED tokenizer_config.json %lld/%lld 5/6\n",
             (long long)cfg.st_size, (long long)cfg.st_size, (long long)gen.st_size, (long long)gen.st_size,
             (long long)model.st_size, (long long)model.st_size, (long long)tok.st_size, (long long)tok.st_size,
             (long long)tokc.st_size, (long long)tokc.st_size);
    assert_string_equal(r2.log.data, exp);
    assert_int_equal(r2.n_progress, 0);
    assert_int_equal(count_log("HEAD /test-org/tiny-model/"), heads);
    assert_int_equal(count_log("GET /test-org/tiny-model/"), gets);
    lm_buf_free(&r2.log);
    /* the callback may cancel on a cached file too */
    rec r3 = {.cancel_file = "model.safetensors", .cancel_on = LM_HUB_FILE_CACHED};
    assert_int_equal(pull(cache, &r3, out, sizeof out, &err), LM_ERR_CANCELLED);
    lm_buf_free(&r3.log);
}

static void test_cancel_and_resume(void **state) {
    (void)state;
    char cache[1200], out[4096], part[4400];
    snprintf(cache, sizeof cache, "%s/cache2", g_tmp);
    rec r = {.cancel_file = "model.safetensors", .cancel_on = LM_HUB_FILE_PROGRESS};
    lm_error err = {0};
    assert_int_equal(pull(cache, &r, out, sizeof out, &err), LM_ERR_CANCELLED);
    assert_non_null(strstr(err.msg, "download of model.safetensors cancelled (partial file kept: "));
    assert_int_equal(r.n_progress, 3); /* config.json, generation_config.json, then the cancelling one */
    assert_null(strstr(r.log.data, "DONE model.safetensors"));
    lm_buf_free(&r.log);
    /* the partial blob stays for the next pull */
    char *p = strstr(err.msg, "partial file kept: ");
    snprintf(part, sizeof part, "%s", p + strlen("partial file kept: "));
    size_t pl = strlen(part);
    if (pl && part[pl - 1] == ')') part[pl - 1] = 0;
    struct stat sb, model;
    assert_int_equal(stat(part, &sb), 0);
    assert_int_equal(stat(tu_src("models/tinychat/model.safetensors"), &model), 0);
    assert_true(sb.st_size > 0 && sb.st_size < model.st_size);
    /* resumed: START reports the bytes already there, and a Range request asked for the rest */
    rec r2 = {0};
    assert_int_equal(pull(cache, &r2, out, sizeof out, &err), LM_OK);
    char line[256];
    snprintf(line, sizeof line, "START model.safetensors %lld/%lld 2/6\n", (long long)sb.st_size, (long long)model.st_size);
    assert_non_null(strstr(r2.log.data, "CACHED config.json"));
    assert_non_null(strstr(r2.log.data, line));
    snprintf(line, sizeof line, "GET /test-org/tiny-model/resolve/%s/model.safetensors range=bytes=%lld-", MC, (long long)sb.st_size);
    assert_int_equal(count_log(line), 1);
    lm_buf_free(&r2.log);
    char snap[4400];
    snprintf(snap, sizeof snap, "%s/model.safetensors", out);
    size_t a_len = 0, b_len = 0;
    char *a = tu_read(snap, &a_len), *b = tu_read(tu_src("models/tinychat/model.safetensors"), &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, a_len);
    lm_free(a);
    lm_free(b);
    assert_int_not_equal(stat(part, &sb), 0); /* the .incomplete became the blob */
}

static void test_params(void **state) {
    (void)state;
    lm_hub_params hp = lm_hub_default_params();
    assert_null(hp.cache_dir);
    assert_null(hp.endpoint);
    assert_null(hp.token);
    assert_false(hp.offline);
    assert_null(hp.progress);
    assert_int_equal(hp.etag_timeout_s, 10);
    assert_int_equal(hp.download_timeout_s, 60);
    char out[4096];
    lm_error err = {0};
    assert_int_equal(lm_hub_pull("test-org/tiny-model", &hp, out, sizeof out, &err), LM_ERR_MISUSE);
    assert_non_null(strstr(err.msg, "cache_dir"));
    assert_int_equal(lm_hub_pull("test-org/tiny-model", NULL, out, sizeof out, &err), LM_ERR_MISUSE);
    char cache[1200];
    snprintf(cache, sizeof cache, "%s/cache3", g_tmp);
    hp.cache_dir = cache;
    hp.endpoint = g_endpoint;
    assert_int_equal(lm_hub_pull("test-org/../x", &hp, out, sizeof out, &err), LM_ERR_MISUSE);
    hp.offline = true;
    assert_int_equal(lm_hub_pull("test-org/tiny-model", &hp, out, sizeof out, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "offline"));
    hp.offline = false;
    hp.endpoint = "ftp://127.0.0.1";
    assert_int_equal(lm_hub_pull("test-org/tiny-model", &hp, out, sizeof out, &err), LM_ERR_MISUSE);
    /* a GGUF repository gives the chosen file; too small an out is LM_ERR_TOO_SMALL */
    hp.endpoint = g_endpoint;
    assert_int_equal(lm_hub_pull("test-org/tiny-gguf:Q8_0", &hp, out, sizeof out, &err), LM_OK);
    assert_non_null(strstr(out, "/snapshots/22222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/stories260K-Q8_0.gguf"));
    assert_int_equal(lm_hub_pull("test-org/tiny-gguf:Q8_0", &hp, out, 10, &err), LM_ERR_TOO_SMALL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_cancel_and_resume),
        cmocka_unit_test(test_params),
    };
    return cmocka_run_group_tests(tests, start_hub, stop_hub);
}
