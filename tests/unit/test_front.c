/* tests/unit/test_front.c: srv_head_check, the look at a connection's first request head that
 * lets the server answer in JSON what the HTTP library would refuse with an HTML page: complete,
 * incomplete (every prefix of a good head), and each refusal with its status and message. */
#include "testutil.h"

#include "server/server.h"

#include <string.h>

static int check(const char *s, size_t max, srv_head *h) { return srv_head_check(s, strlen(s), max, h); }

static void test_complete(void **state) {
    (void)state;
    srv_head h;
    const char *good[] = {
        "GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", /* a body follows */
        "GET /health HTTP/1.1\nHost: localhost\n\n",                           /* bare LF */
        "\r\n\r\nGET / HTTP/1.1\r\n\r\n",                                      /* empty lines first */
        "GET / HTTP/1.1\r\nX: a\r\n  folded\r\nY:\r\n\r\n",                    /* folding, empty value */
        "GET /%ff?x=1 HTTP/1.2\r\nHost: x\r\n\r\n",                            /* HTTP/1.x */
    };
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        const char *s = good[k];
        assert_int_equal(check(s, 32768, &h), 1);
        /* len ends at the empty line: what follows is the body */
        assert_true(h.len <= strlen(s));
        assert_true(h.len >= 2 && s[h.len - 1] == '\n' && (s[h.len - 2] == '\n' || s[h.len - 2] == '\r'));
        /* every prefix that stops before the end of the head is incomplete, never refused */
        for (size_t n = 0; n < h.len; n++) {
            srv_head p;
            int st = srv_head_check(s, n, 32768, &p);
            if (st != 0) fail_msg("head %zu: prefix of %zu bytes gave %d (%s)", k, n, st, p.msg);
        }
    }
    assert_int_equal(check("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 32768, &h), 1);
    assert_int_equal(h.len, strlen("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n"));
}

static void expect(const char *s, size_t max, int status, const char *piece) {
    srv_head h;
    int st = check(s, max, &h);
    if (st != -1 || h.status != status || !strstr(h.msg, piece))
        fail_msg("%.40s: %d, status %d, '%s' (want %d and '%s')", s, st, h.status, h.msg, status, piece);
}

static void test_refused(void **state) {
    (void)state;
    expect("HELLO\r\n\r\n", 32768, 400, "the request line is not 'METHOD TARGET HTTP/1.1'");
    expect("GET /\r\n\r\n", 32768, 400, "the request line is not");
    expect("GET  / HTTP/1.1\r\n\r\n", 32768, 400, "the request line is not");
    expect("GET / x HTTP/1.1\r\n\r\n", 32768, 400, "the request line is not");
    expect(" GET / HTTP/1.1\r\n\r\n", 32768, 400, "the request line is not");
    expect("G\xffT / HTTP/1.1\r\n\r\n", 32768, 400, "the method 'G\\xffT' has a character");
    expect("G\xc3\xa9T / HTTP/1.1\r\n\r\n", 32768, 400, "the method 'G\xc3\xa9T' has a character");
    expect("GET / HTTP/2.0\r\n\r\n", 32768, 505, "HTTP version 'HTTP/2.0' is not supported");
    expect("GET / HTTP/1.10\r\n\r\n", 32768, 505, "HTTP version 'HTTP/1.10'");
    expect("GET / FTP/1.1\r\n\r\n", 32768, 400, "ends in 'FTP/1.1', not an HTTP version");
    expect("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 32768, 400, "header line 2 has no colon");
    expect("GET / HTTP/1.1\r\n: v\r\n\r\n", 32768, 400, "header line 1 has no name before its colon");
    expect("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 32768, 400, "header line 1 has whitespace before its colon");
    expect("GET / HTTP/1.1\r\nA(b: x\r\n\r\n", 32768, 400, "header line 1 has a name with a character");
    /* a refusal is found as soon as its line is whole, before the rest arrives */
    expect("GET / HTTP/3\r\nHost", 32768, 505, "HTTP version 'HTTP/3'");
    /* sizes: the request line alone, then the whole head, of max bytes or more */
    char big[200];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    big[sizeof big - 1] = '\0';
    expect(big, 64, 414, "the request line is longer than the 64 bytes allowed");
    srv_head h;
    assert_int_equal(check(big, 4096, &h), 0); /* below max: wait for more */
    char head[300];
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nX: %0200d", 0);
    expect(head, 100, 431, "the request's headers are longer than the 100 bytes allowed");
    assert_int_equal(check(head, 4096, &h), 0);
    /* a quoted part is escaped: no control characters in the message */
    expect("GET / HTTP/\x1b[31m\r\n\r\n", 32768, 505, "HTTP/\\x1b[31m");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_complete), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
