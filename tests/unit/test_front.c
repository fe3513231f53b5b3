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

static void test_length(void **state) {
    (void)state;
    srv_head h;
    assert_int_equal(check("POST / HTTP/1.1\r\ncontent-length:  42 \r\n\r\n", 32768, &h), 1);
    assert_true(h.has_length && h.length == 42 && !h.chunked);
    assert_int_equal(check("POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", 32768, &h), 1);
    assert_int_equal(check("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", 32768, &h), 1);
    assert_true(h.chunked && !h.has_length);
    expect("POST / HTTP/1.1\r\nContent-Length: 4x\r\n\r\n", 32768, 400, "Content-Length '4x' is not a number of bytes");
    expect("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 32768, 400, "Content-Length '' is not");
    expect("POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n", 32768, 400, "Content-Length '+4' is not");
    expect("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 32768, 400,
           "two different Content-Length headers");
    expect("POST / HTTP/1.1\r\nContent-Length: 8388609\r\n\r\n", 32768, 413, "the request body is larger than 8388608 bytes");
    expect("POST / HTTP/1.1\r\nContent-Length: 123456789012345678901234567890\r\n\r\n", 32768, 413, "larger than");
    assert_int_equal(check("POST / HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n", 32768, &h), 1);
}

static int chunked(const char *body, srv_head *h) {
    memset(h, 0, sizeof *h);
    return srv_chunked_check(body, strlen(body), h);
}

static void test_chunked(void **state) {
    (void)state;
    srv_head h;
    const char *good[] = {"0\r\n\r\n", "2\r\n{}\r\n0\r\n\r\n", "A;ext=1\r\n0123456789\r\n00\r\nTrailer: x\r\n\r\n",
                          "3\nabc\n0\n\n", "1f\r\n0123456789012345678901234567890\r\n0\r\n\r\n"};
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        size_t n = strlen(good[k]);
        if (chunked(good[k], &h) != 1 || h.len != n) fail_msg("good %zu: %s (len %zu of %zu)", k, h.msg, h.len, n);
        /* every shorter prefix is well formed so far */
        for (size_t m = 0; m < n; m++) {
            memset(&h, 0, sizeof h);
            int st = srv_chunked_check(good[k], m, &h);
            if (st != 0) fail_msg("good %zu, prefix %zu: %d (%s)", k, m, st, h.msg);
        }
    }
    assert_int_equal(chunked("zz\r\nabc\r\n", &h), -1);
    assert_int_equal(h.status, 400);
    assert_non_null(strstr(h.msg, "the chunked body is malformed: chunk 1 has a size that is not hexadecimal"));
    assert_int_equal(chunked("\r\nabc\r\n", &h), -1);
    assert_non_null(strstr(h.msg, "chunk 1 has no size"));
    assert_int_equal(chunked("2\r\n{}\r\n3\r\nabcXX", &h), -1);
    assert_non_null(strstr(h.msg, "chunk 2 is not followed by CRLF"));
    assert_int_equal(chunked("2\r\n{}\rX", &h), -1);
    assert_int_equal(chunked("ffffffffffffffff\r\nabc", &h), -1);
    assert_int_equal(h.status, 413);
    assert_non_null(strstr(h.msg, "larger than 8388608 bytes"));
    assert_int_equal(chunked("ffffffffffffffffffffffff", &h), -1); /* found before the line ends */
    assert_int_equal(h.status, 413);
    /* chunks that add up to more than the cap */
    assert_int_equal(chunked("800000\r\n", &h), 0);
    char two[64];
    snprintf(two, sizeof two, "%x\r\n", 8u * 1024u * 1024u + 1u);
    assert_int_equal(chunked(two, &h), -1);
    assert_int_equal(h.status, 413);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_complete), cmocka_unit_test(test_refused),
                                       cmocka_unit_test(test_length), cmocka_unit_test(test_chunked)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
