/* tests/unit/test_core.c: what core guarantees about hostile input: error and log messages are
 * printable, valid UTF-8 whatever they quote (issue 20, findings 7 and 9); a JSON document is one
 * value with nothing after it (finding 8); only regular files are read, so a FIFO, a device or a
 * directory given as a model or config file fails at once (finding 12). */
#include "testutil.h"

#include "formats/formats.h"

#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_escape_text(void **state) {
    (void)state;
    char out[256];
    const char in[] = "a\x1b[31mb\x07\tc\nd\r\x7f \xff\xfe \xc3\xa9 \xc2\x9b \xe2\x82\xac \xf0\x9f\x98\x80 \xed\xa0\x80 \xc0\xaf";
    size_t n = lm_escape_text(out, sizeof out, in, sizeof in - 1);
    assert_string_equal(out, "a\\x1b[31mb\\x07\\tc\\nd\\r\\x7f \\xff\\xfe \xc3\xa9 \\u009b \xe2\x82\xac \xf0\x9f\x98\x80 "
                             "\\xed\\xa0\\x80 \\xc0\\xaf");
    assert_int_equal(n, strlen(out));
    assert_true(tu_printable(out));
    /* a NUL inside the given length is a control character too */
    lm_escape_text(out, sizeof out, "x\0y", 3);
    assert_string_equal(out, "x\\x00y");
    /* cut before an escape or a character that does not fit, never inside one */
    lm_escape_text(out, 6, "abc\x1b", 4);
    assert_string_equal(out, "abc");
    lm_escape_text(out, 5, "ab\xe2\x82\xac", 5);
    assert_string_equal(out, "ab");
    lm_escape_text(out, 1, "abc", 3);
    assert_string_equal(out, "");
}

static void test_fail_and_log_escape(void **state) {
    (void)state;
    lm_error err = {0};
    /* a hub file name with a terminal escape and bytes that are not UTF-8 */
    assert_int_equal(lm_fail(&err, LM_ERR_FORMAT, "siblings[3].rfilename '%s' is not safe", "\x1b]0;pwned\x07\xff.bin"),
                     LM_ERR_FORMAT);
    assert_string_equal(err.msg, "siblings[3].rfilename '\\x1b]0;pwned\\x07\\xff.bin' is not safe");
    assert_int_equal(err.code, LM_ERR_FORMAT);
    /* a long message of multi-byte characters is cut at a character */
    char big[1200];
    for (size_t i = 0; i + 2 < sizeof big; i += 2) memcpy(big + i, "\xc3\xa9", 2);
    big[sizeof big - 2] = 0;
    lm_fail(&err, LM_ERR_IO, "x%s", big);
    assert_true(tu_printable(err.msg));
    assert_int_equal(strlen(err.msg), 1 + 2 * 127);
}

static char g_logged[1024];
static void log_to(lm_log_level level, const char *msg, void *user) {
    (void)level;
    (void)user;
    snprintf(g_logged, sizeof g_logged, "%s", msg);
}

static void test_log_escape(void **state) {
    (void)state;
    lm_logger lg = {log_to, NULL};
    lm_log(&lg, LM_LOG_WARN, "upstream said: %s", "bad\x1b[2J\x9b\xc2\x9b!");
    assert_string_equal(g_logged, "upstream said: bad\\x1b[2J\\x9b\\u009b!");
}

/* The model's log sink hears the load: one INFO line naming what was loaded and how, and a
 * WARN when a model has no chat template of its own. */
typedef struct log_lines {
    int n_info, n_warn, n_other;
    char info[512], warn[512];
} log_lines;

static void collect_log(lm_log_level level, const char *msg, void *user) {
    log_lines *l = user;
    if (level == LM_LOG_INFO) snprintf(l->info, sizeof l->info, "%s", msg), l->n_info++;
    else if (level == LM_LOG_WARN) snprintf(l->warn, sizeof l->warn, "%s", msg), l->n_warn++;
    else if (level != LM_LOG_DEBUG) l->n_other++; /* debug lines (the device auto chose) may come */
}

static void test_model_log(void **state) {
    (void)state;
    log_lines l = {0};
    lm_model_params mp = lm_model_default_params();
    mp.log = collect_log;
    mp.log_user = &l;
    mp.n_threads = 1;
    lm_model *m = NULL;
    lm_error err = {0};
    assert_int_equal(lm_model_load(tu_data("stories260K/stories260K-q8_0.gguf"), &mp, &m, &err), LM_OK);
    lm_model_free(m);
    assert_int_equal(l.n_info, 1);
    assert_non_null(strstr(l.info, "stories260K-q8_0.gguf: llama gguf, 5 layers, device cpu (kernels "));
    assert_non_null(strstr(l.info, "Q8_0"));
    assert_non_null(strstr(l.info, "loaded in "));
    assert_int_equal(l.n_warn, 1); /* a base model: no template of its own */
    assert_non_null(strstr(l.warn, "no chat template in the model"));
    assert_int_equal(l.n_other, 0);
    /* no sink: silent (and no crash) */
    mp.log = NULL;
    assert_int_equal(lm_model_load(tu_data("stories260K/stories260K-q8_0.gguf"), &mp, &m, &err), LM_OK);
    lm_model_free(m);
}

static void test_json_trailing(void **state) {
    (void)state;
    cJSON *j = NULL;
    lm_error err = {0};
    const char *ok[] = {"{}", " {\"a\": [1, 2]}\n", "[1]\r\n\t ", "\"s\"", "3", "null"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(lm_json_parse(ok[i], strlen(ok[i]), "x.json", &j, &err), LM_OK);
        cJSON_Delete(j);
    }
    assert_int_equal(lm_json_parse("{\"a\":1} xyz", 11, "request body", &j, &err), LM_ERR_FORMAT);
    assert_null(j);
    assert_string_equal(err.msg, "request body: unexpected text after the JSON value at byte 8 (line 1)");
    assert_int_equal(lm_json_parse("{}\n{}", 5, "config.json", &j, &err), LM_ERR_FORMAT);
    assert_string_equal(err.msg, "config.json: unexpected text after the JSON value at byte 3 (line 2)");
    /* a NUL after the value, inside the given length, is text too */
    assert_int_equal(lm_json_parse("[1]\0", 4, "x", &j, &err), LM_ERR_FORMAT);
    assert_int_equal(lm_json_parse("1 2", 3, "x", &j, &err), LM_ERR_FORMAT);
    /* config.json read from a folder */
    const char *dir = tu_temp_dir();
    const char *path =
        tu_put_in(dir, "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64} trailing");
    hf_config c;
    assert_int_equal(hf_config_load(dir, &c, &err), LM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "config.json: unexpected text after the JSON value at byte 59 (line 1)"));
    unlink(path);
    rmdir(dir);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char m[] = "test_core: a read of a special file blocked\n";
    (void)!write(2, m, sizeof m - 1);
    _exit(1);
}

static void test_special_files(void **state) {
    (void)state;
    signal(SIGALRM, on_alarm);
    alarm(20); /* a FIFO that blocks fails the test instead of hanging it */
    const char *dir = tu_temp_dir();
    char fifo[4200], cfg[4200];
    snprintf(fifo, sizeof fifo, "%s/model.gguf", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    lm_error err = {0};
    lm_file f;
    assert_int_equal(lm_file_open(&f, fifo, true, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "model.gguf: is a FIFO, expected a regular file"));
    assert_int_equal(lm_file_open(&f, fifo, false, &err), LM_ERR_IO);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(lm_read_text(fifo, &text, &len, &err), LM_ERR_IO);
    assert_null(text);
    assert_non_null(strstr(err.msg, "is a FIFO"));
    lm_model *m = NULL;
    assert_int_equal(lm_model_load(fifo, NULL, &m, &err), LM_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(err.msg, "is a FIFO"));
    /* a model folder whose config.json is a FIFO */
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    assert_int_equal(mkfifo(cfg, 0600), 0);
    hf_config c;
    assert_int_equal(hf_config_load(dir, &c, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "config.json: is a FIFO"));
    assert_int_equal(lm_model_load(dir, NULL, &m, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "config.json: is a FIFO"));
    /* devices and folders */
    assert_int_equal(lm_file_open(&f, "/dev/null", true, &err), LM_ERR_IO);
    assert_string_equal(err.msg, "/dev/null: is a character device, expected a regular file");
    assert_int_equal(lm_read_text(dir, &text, &len, &err), LM_ERR_IO);
    assert_non_null(strstr(err.msg, "is a directory"));
    /* a symlink to a regular file is fine */
    char real[4200], link[4200];
    snprintf(real, sizeof real, "%s/real.json", dir);
    snprintf(link, sizeof link, "%s/link.json", dir);
    tu_put(real, "[1, 2]");
    assert_int_equal(symlink("real.json", link), 0);
    cJSON *j = NULL;
    assert_int_equal(lm_json_load(link, &j, &err), LM_OK);
    assert_int_equal(cJSON_GetArraySize(j), 2);
    cJSON_Delete(j);
    alarm(0);
    unlink(link);
    unlink(real);
    unlink(cfg);
    unlink(fifo);
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_text),
        cmocka_unit_test(test_fail_and_log_escape),
        cmocka_unit_test(test_log_escape),
        cmocka_unit_test(test_model_log),
        cmocka_unit_test(test_json_trailing),
        cmocka_unit_test(test_special_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
