/* tests/unit/test_request.c: request bodies the server must refuse with a 400 naming the field
 * (issue 20): a NUL (\u0000) inside any string, which C strings would cut short (finding 8); text
 * after the JSON body (finding 8); and error messages that quote the request stay valid UTF-8
 * without control characters (finding 9). tests/e2e/test_server_input.sh sends the same to a
 * running server. */
#include "testutil.h"

#include "server/server.h"

#include <stdio.h>

/* True when s is valid UTF-8 with no control characters. */
static bool printable(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return false;
        uint32_t cp;
        int l = lm_utf8_decode(s + i, n - i, &cp);
        if (c >= 0x80 && (l <= 1 || (cp >= 0x80 && cp <= 0x9f))) return false;
        i += (size_t)l;
    }
    return true;
}

#define BAD(chat, body, param, msg) bad(__LINE__, chat, body, param, msg)
static void bad(int line, bool chat, const char *body, const char *param, const char *msg) {
    srv_request rq;
    srv_reqerr e;
    if (srv_request_parse(body, strlen(body), chat, 4096, &rq, &e)) fail_msg("line %d: %s was accepted", line, body);
    if (e.status != 400) fail_msg("line %d: status %d", line, e.status);
    if (strcmp(e.param, param) != 0) fail_msg("line %d: param '%s', want '%s'", line, e.param, param);
    if (!strstr(e.msg, msg)) fail_msg("line %d: message '%s' lacks '%s'", line, e.msg, msg);
    if (!printable(e.msg) || !printable(e.param)) fail_msg("line %d: not printable: %s", line, e.msg);
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
    assert_false(srv_request_parse(raw, sizeof raw - 1, true, 4096, &rq0, &e0));
    assert_string_equal(e0.param, "messages[0].content");
    static const char hang[] = "\x01{\"olots_choice\":\"auto\",\"\x07e\xbe\x18w\xe4\xfe\x7f\0\0ssages\":[\0\0\0\0\0\0\0\0\0\0\0"
                               "{\"t\x7f\\u0000max_tuncots_choice\":\"au\0\0\0\0\"}]}";
    assert_false(srv_request_parse(hang, sizeof hang - 1, true, 4096, &rq0, &e0));
    assert_int_equal(e0.status, 400);
    /* "\\u0000" (an escaped backslash, then text) is not a NUL, and U+0001 is allowed */
    srv_request rq;
    srv_reqerr e;
    const char *ok = "{\"messages\":[{\"role\":\"user\",\"content\":\"C: \\\\u0000 \\u0001 \\u00e9\"}]}";
    assert_true(srv_request_parse(ok, strlen(ok), true, 4096, &rq, &e));
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
    assert_true(srv_request_parse(ok, strlen(ok), false, 4096, &rq, &e));
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_in_strings),
        cmocka_unit_test(test_trailing_text),
        cmocka_unit_test(test_messages_stay_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
