/* tests/unit/test_request.c: request bodies the server must refuse with a 400 naming the field
 * (issue 20): a NUL (\u0000) inside any string, which C strings would cut short (finding 8); text
 * after the JSON body (finding 8); and error messages that quote the request stay valid UTF-8
 * without control characters (finding 9); the cap on messages (finding 5) and the Host/Origin
 * rules (finding 1). tests/e2e/test_server_input.sh sends the same to a
 * running server. */
#include "testutil.h"

#include "server/server.h"

#include <stdio.h>

#define BAD(chat, body, param, msg) bad(__LINE__, chat, body, param, msg)
static void bad(int line, bool chat, const char *body, const char *param, const char *msg) {
    srv_request rq;
    srv_reqerr e;
    if (srv_request_parse(body, strlen(body), chat, 4096, 0, &rq, &e)) fail_msg("line %d: %s was accepted", line, body);
    if (e.status != 400) fail_msg("line %d: status %d", line, e.status);
    if (strcmp(e.param, param) != 0) fail_msg("line %d: param '%s', want '%s'", line, e.param, param);
    if (!strstr(e.msg, msg)) fail_msg("line %d: message '%s' lacks '%s'", line, e.msg, msg);
    if (!tu_printable(e.msg) || !tu_printable(e.param)) fail_msg("line %d: not printable: %s", line, e.msg);
}

static void test_nul_in_strings(void **state) {
    (void)state;
    BAD(true, "{\"messages\":[{\"role\":\"user\",\"content\":\"Hello\\u0000 world\"}]}", "messages[0].content",
        "'messages[0].content' must not contain a NUL character (\\u0000)");
    BAD(true, "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\\u0000evil\",\"content\":\"hi\"}]}",
        "messages[1].role", "'messages[1].role' must not contain a NUL character");
    BAD(false, "{\"prompt\":\"Once\\u0000 upon\",\"max_tokens\":4}", "prompt", "'prompt' must not contain a NUL");
    BAD(false, "{\"prompt\":[\"x\\u0000\"]}", "prompt[0]", "'prompt[0]' must not contain a NUL");
    BAD(true, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"\\u0000\"}]}]}",
        "messages[0].content[1].text", "must not contain a NUL");
    BAD(true, "{\"stop\":[\"ok\",\"x\\u0000y\"],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "stop[1]",
        "must not contain a NUL");
    /* in a key, after nested values and escapes that look alike */
    BAD(true, "{\"a\":{\"b\":[1,{\"c\":\"\\\\u0000\"}]},\"mod\\u0000el\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        "mod\\u0000el", "must not contain a NUL");
    /* a raw NUL byte inside a string (cJSON keeps it), and NUL bytes between tokens, which cJSON
       reads as white space: found without looping (a fuzzer's find) */
    static const char raw[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\0b\"}]}";
    srv_request rq0;
    srv_reqerr e0;
    assert_false(srv_request_parse(raw, sizeof raw - 1, true, 4096, 0, &rq0, &e0));
    assert_string_equal(e0.param, "messages[0].content");
    static const char hang[] = "\x01{\"olots_choice\":\"auto\",\"\x07e\xbe\x18w\xe4\xfe\x7f\0\0ssages\":[\0\0\0\0\0\0\0\0\0\0\0"
                               "{\"t\x7f\\u0000max_tuncots_choice\":\"au\0\0\0\0\"}]}";
    assert_false(srv_request_parse(hang, sizeof hang - 1, true, 4096, 0, &rq0, &e0));
    assert_int_equal(e0.status, 400);
    /* "\\u0000" (an escaped backslash, then text) is not a NUL, and U+0001 is allowed */
    srv_request rq;
    srv_reqerr e;
    const char *ok = "{\"messages\":[{\"role\":\"user\",\"content\":\"C: \\\\u0000 \\u0001 \\u00e9\"}]}";
    assert_true(srv_request_parse(ok, strlen(ok), true, 4096, 0, &rq, &e));
    assert_string_equal(rq.msgs[0].content, "C: \\u0000 \x01 \xc3\xa9");
    srv_request_free(&rq);
}

static void test_trailing_text(void **state) {
    (void)state;
    BAD(true, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]} xyz", "",
        "request body: unexpected text after the JSON value at byte 46 (line 1)");
    BAD(false, "{\"prompt\":\"hi\"}{\"prompt\":\"again\"}", "", "unexpected text after the JSON value at byte 15");
    srv_request rq;
    srv_reqerr e;
    const char *ok = "{\"prompt\":\"hi\"}\r\n  \n";
    assert_true(srv_request_parse(ok, strlen(ok), false, 4096, 0, &rq, &e));
    srv_request_free(&rq);
}

static void test_messages_stay_utf8(void **state) {
    (void)state;
    /* invalid bytes and terminal escapes in values quoted by the message */
    BAD(true, "{\"messages\":[{\"role\":\"us\xff\xfe" "er\",\"content\":\"hi\"}]}", "messages[0].role",
        "unknown role 'us\\xff\\xfeer'");
    BAD(true, "{\"messages\":[{\"role\":\"\\u001b[31mred\\u0007\",\"content\":\"hi\"}]}", "messages[0].role",
        "unknown role '\\x1b[31mred\\x07'");
    BAD(true, "{\"messages\":[{\"role\":\"\xc2\x9b" "2J\",\"content\":\"hi\"}]}", "messages[0].role",
        "unknown role '\\u009b2J'");
    /* quoting stops at 40 bytes, before a character, never inside one */
    BAD(true, "{\"messages\":[{\"role\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\xc3\xa9\",\"content\":\"hi\"}]}",
        "messages[0].role", "unknown role 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
    BAD(true, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"im\xe2\x82\",\"text\":\"x\"}]}]}",
        "messages[0].content", "content part type 'im\\xe2\\x82' is not supported");
    BAD(true, "{\"response_format\":{\"type\":\"\\u0085x\"},\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        "response_format", "response_format type '\\u0085x' is not supported");
}

/* A chat request may carry at most max_msgs messages (issue 20, finding 5): more is a 400 naming
 * the field and the limit, before any template work. */
static void test_message_cap(void **state) {
    (void)state;
    lm_buf b = {0};
    lm_buf_puts(&b, "{\"messages\":[");
    for (int i = 0; i < 5; i++) lm_buf_printf(&b, "%s{\"role\":\"user\",\"content\":\"m%d\"}", i ? "," : "", i);
    lm_buf_puts(&b, "]}");
    assert_false(b.oom);
    srv_request rq;
    srv_reqerr e;
    assert_false(srv_request_parse(b.data, b.len, true, 4096, 4, &rq, &e));
    assert_int_equal(e.status, 400);
    assert_string_equal(e.param, "messages");
    assert_string_equal(e.msg, "'messages' has 5 messages; at most 4 are allowed per request");
    assert_true(srv_request_parse(b.data, b.len, true, 4096, 5, &rq, &e));
    assert_int_equal(rq.n_msgs, 5);
    assert_string_equal(rq.msgs[4].content, "m4");
    srv_request_free(&rq);
    /* the Ollama API's /api/chat keeps the same cap (its body names the model) */
    lm_buf_reset(&b);
    lm_buf_puts(&b, "{\"model\":\"m\",\"messages\":[");
    for (int i = 0; i < 5; i++) lm_buf_printf(&b, "%s{\"role\":\"user\",\"content\":\"m%d\"}", i ? "," : "", i);
    lm_buf_puts(&b, "]}");
    assert_false(b.oom);
    assert_false(srv_ollama_parse(b.data, b.len, true, 4096, "m", 4, &rq, &e));
    assert_int_equal(e.status, 400);
    assert_string_equal(e.msg, "'messages' has 5 messages; at most 4 are allowed per request");
    assert_true(srv_ollama_parse(b.data, b.len, true, 4096, "m", 5, &rq, &e));
    assert_int_equal(rq.n_msgs, 5);
    srv_request_free(&rq);
    lm_buf_free(&b);
}

/* The Host and Origin rules against DNS rebinding (finding 1): on a loopback bind only loopback
 * names pass unless allowed; Origin must be listed; elsewhere any Host passes. */
static void test_host_origin(void **state) {
    (void)state;
    srv_config cfg = {0};
    assert_true(srv_host_allowed(&cfg, "localhost:8080"));
    assert_true(srv_host_allowed(&cfg, "LOCALHOST"));
    assert_true(srv_host_allowed(&cfg, "127.0.0.1:1"));
    assert_true(srv_host_allowed(&cfg, "127.1.2.3"));
    assert_true(srv_host_allowed(&cfg, "[::1]:8080"));
    assert_true(srv_host_allowed(&cfg, "[::1]"));
    assert_true(srv_host_allowed(&cfg, NULL));
    assert_false(srv_host_allowed(&cfg, "attacker.example:8080"));
    assert_false(srv_host_allowed(&cfg, "localhost.attacker.example"));
    assert_false(srv_host_allowed(&cfg, "127.0.0.1.nip.io"));
    assert_false(srv_host_allowed(&cfg, "localhost:80x"));
    assert_false(srv_host_allowed(&cfg, "[::1"));
    assert_false(srv_host_allowed(&cfg, ""));
    assert_false(srv_host_allowed(&cfg, "10.0.0.1"));
    const char *allow[] = {"myhost.lan", "fe80::1"};
    cfg.allow_hosts = allow;
    cfg.n_allow_hosts = 2;
    assert_true(srv_host_allowed(&cfg, "MyHost.lan:8080"));
    assert_true(srv_host_allowed(&cfg, "[fe80::1]:80"));
    assert_false(srv_host_allowed(&cfg, "other.lan"));
    cfg.host = "0.0.0.0";
    assert_true(srv_host_allowed(&cfg, "other.lan"));
    cfg.host = "::1";
    assert_false(srv_host_allowed(&cfg, "other.lan"));
    assert_true(srv_host_is_loopback("127.0.0.1"));
    assert_true(srv_host_is_loopback("::1"));
    assert_false(srv_host_is_loopback("0.0.0.0"));
    assert_false(srv_host_is_loopback("::"));

    assert_true(srv_origin_allowed(&cfg, NULL));
    assert_false(srv_origin_allowed(&cfg, "http://localhost:3000"));
    char *cors[] = {"http://localhost:3000"};
    cfg.cors = cors;
    cfg.n_cors = 1;
    assert_true(srv_origin_allowed(&cfg, "http://localhost:3000"));
    assert_false(srv_origin_allowed(&cfg, "http://localhost:3001"));
    assert_false(srv_origin_allowed(&cfg, "null"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_cap),
        cmocka_unit_test(test_host_origin),
        cmocka_unit_test(test_nul_in_strings),
        cmocka_unit_test(test_trailing_text),
        cmocka_unit_test(test_messages_stay_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
