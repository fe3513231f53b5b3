#!/usr/bin/env python3
"""tests/e2e/server_guard.py: what `locallm serve` refuses before a request reaches the model
(issue 20), each against a real server on models/tinychat, over raw sockets.

Usage: server_guard.py CLI MODEL CHECK...
  rebinding  finding 1: on a loopback bind a foreign Host is a 403 in OpenAI's error shape (curl's
             text/plain POST with the attacker's Host too); localhost, 127.0.0.1 and [::1] with any
             port pass; --allow-host adds names; an Origin not in the CORS list is a 403, a
             request without Origin is served whatever its Content-Type.
  edges      findings 9 and 10: HTTP/1.1 without Host is a 400 (HTTP/1.0 is served); a target with
             a NUL is a 400, not /health; queries and %-escapes still route; a 404 quoting
             invalid UTF-8 is valid UTF-8 JSON; a method with invalid UTF-8 is a 400 quoting it
             escaped, an unknown one a 405; a target or head too long (414, 431), an HTTP version
             other than 1.x (505), a malformed request line or header line (400) are answered
             before MHD sees them, as are a Content-Length that is not digits, two that differ,
             one over 8 MB (413), a chunked body with a size that is not hexadecimal or a chunk
             without its CRLF; a good chunked body is served; a second request on a connection
             is not read (every answer has Connection: close); bare LF, folding and a leading
             empty line are still served;
             Transfer-Encoding gzip is a 400; a 100 KB chunk extension is a 4xx JSON; all of these
             are JSON, not HTML.
  slow       finding 2: with --header-timeout 2 --body-timeout 3, a trickled header is closed
             within the header deadline, a short body and a chunk that never ends within the body
             deadline, a chunk size of 2^64-1 is a 413 at once; while 300 connections trickle their headers, /health answers every time
             within 2 s; with --max-conns-per-ip 8 an address holding 8 connections gets no 9th,
             another address is served.
  auth       finding 3: with --api-key, the 401 arrives on the headers, before an 8 MB body is
             sent (with and without Expect: 100-continue; no 100 Continue), and ten such bodies
             pushed anyway leave RSS within 16 MB; the right key is served.
  messages   finding 5: 4,000 messages are a 400 naming the limit (1024); with --max-messages
             5000 they are trimmed to the window and answered (the time is printed); a client
             that hangs up while its long conversation is prepared frees the only slot at once.
  queue      finding 14: a request whose client left while it waited for the only slot is
             dropped: no prefill, no token (the engine's token count and the log say so).
Standard library only. Exit status 0 on success; a message on stderr otherwise.
"""
import atexit
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

# tests/raw_http.py, shared with soak/soak.py; no __pycache__ left in the source tree
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from raw_http import read_raw  # noqa: E402

CLI, MODEL = sys.argv[1], sys.argv[2]
TMP = tempfile.mkdtemp()
atexit.register(shutil.rmtree, TMP, True)
SERVERS = []
n_checks = 0


@atexit.register
def stop_servers():
    for p in SERVERS:
        if p.poll() is None:
            p.kill()
            p.wait()


def fail(msg, srv=None):
    print("server_guard.py: FAIL: " + msg, file=sys.stderr)
    if srv:
        srv.dump()
    sys.exit(1)


def ok():
    global n_checks
    n_checks += 1


class Server:
    def __init__(self, *args):
        self.log = os.path.join(TMP, "log")
        self.logf = open(self.log, "wb")
        self.p = subprocess.Popen([CLI, "serve", MODEL, "--port", "0", "--threads", "1"] + list(args),
                                  stderr=self.logf, stdout=subprocess.DEVNULL)
        SERVERS.append(self.p)
        self.port = None
        for _ in range(300):
            m = re.search(r"listening on http://\S*:(\d+)\n", open(self.log).read())
            if m:
                self.port = int(m.group(1))
                break
            if self.p.poll() is not None:
                fail("the server exited at start", self)
            time.sleep(0.05)
        if not self.port:
            fail("the server did not say where it listens", self)
        for _ in range(300):
            st, _, _ = request(self.port, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            if st == 200:
                return
            time.sleep(0.1)
        fail("the model did not become ready", self)

    def rss_kb(self):
        for line in open("/proc/%d/status" % self.p.pid):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def logtext(self):
        return open(self.log, errors="replace").read()

    def dump(self):
        sys.stderr.write("--- server log:\n" + self.logtext()[-3000:] + "\n")

    def stop(self):
        self.p.terminate()
        if self.p.wait(30) != 0:
            fail("the server exited with status %d" % self.p.returncode, self)
        self.logf.close()


def connect(port, src="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_answer(s, timeout=10.0):
    """One HTTP answer from a raw socket: (status or None, headers bytes, body bytes)."""
    s.settimeout(timeout)
    out = read_raw(s)
    h = out.find(b"\r\n\r\n")
    if not out.startswith(b"HTTP/1.") or h < 0:
        return None, b"", out
    return int(out.split(b" ", 2)[1]), out[:h], out[h + 4:]


def request(port, data, src="127.0.0.1", timeout=10.0):
    s = connect(port, src)
    try:
        s.sendall(data)
        return read_answer(s, timeout)
    finally:
        s.close()


def expect_error(what, answer, status, piece):
    st, head, body = answer
    if st != status:
        fail("%s: HTTP %s, want %d: %r" % (what, st, status, (head + body)[:300]))
    if not re.search(rb"(?i)\r\ncontent-type: application/json", head):
        fail("%s: not JSON: %r" % (what, head))
    try:
        e = json.loads(body.decode("utf-8", errors="strict"))["error"]
    except (ValueError, KeyError) as x:
        fail("%s: the body is not OpenAI's error JSON in UTF-8 (%s): %r" % (what, x, body[:300]))
    if piece not in e["message"]:
        fail("%s: message %r lacks %r" % (what, e["message"], piece))
    ok()
    return e


def get(port, path=b"/health", host=b"localhost", extra=b""):
    return request(port, b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n" + extra + b"\r\n")


CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}).encode()


def post(port, body, host=b"localhost", extra=b"", path=b"/v1/chat/completions", timeout=60):
    return request(port, b"POST " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n" + extra +
                   b"Content-Length: %d\r\n\r\n" % len(body) + body, timeout=timeout)


def check_rebinding():
    srv = Server("--allow-host", "myhost.lan,other.lan")
    p = srv.port
    hp = b":%d" % p
    expect_error("foreign Host", get(p, host=b"attacker.example" + hp), 403, "Host 'attacker.example:%d' is not allowed" % p)
    expect_error("foreign Host, text/plain POST", post(p, CHAT, host=b"attacker.example" + hp,
                 extra=b"Content-Type: text/plain\r\n"), 403, "--allow-host")
    expect_error("localhost.attacker", get(p, host=b"localhost.attacker.example"), 403, "not allowed")
    for h in (b"localhost" + hp, b"127.0.0.1" + hp, b"[::1]" + hp, b"localhost", b"MyHost.lan" + hp, b"other.lan"):
        st, _, body = get(p, host=h)
        if st != 200:
            fail("Host %r: HTTP %s %r" % (h, st, body[:200]), srv)
        ok()
    # curl -d sends no Origin: served whatever the Content-Type
    st, _, body = post(p, CHAT, extra=b"Content-Type: text/plain\r\n")
    if st != 200 or b"chat.completion" not in body:
        fail("text/plain POST without Origin: HTTP %s %r" % (st, body[:200]), srv)
    ok()
    expect_error("foreign Origin", post(p, CHAT, extra=b"Origin: http://evil.example\r\nContent-Type: text/plain\r\n"),
                 403, "Origin 'http://evil.example' is not allowed")
    expect_error("Origin on GET", get(p, extra=b"Origin: http://localhost:3000\r\n"), 403, "--cors")
    if "Host 'attacker.example" not in srv.logtext():
        fail("the refused Host is not logged", srv)
    srv.stop()


def check_edges():
    srv = Server()
    p = srv.port
    expect_error("HTTP/1.1 without Host", request(p, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"), 400,
                 "no Host header")
    st, _, _ = request(p, b"GET /health HTTP/1.0\r\n\r\n")
    if st != 200:
        fail("HTTP/1.0 without Host: %s" % st, srv)
    ok()
    expect_error("NUL in the target", get(p, path=b"/health\x00/x"), 400, "NUL")
    for path in (b"/health?x=1&y=%41", b"/heal%74h", b"/health?"):
        st, _, body = get(p, path=path)
        if st != 200:
            fail("%r: HTTP %s %r" % (path, st, body[:200]), srv)
        ok()
    e = expect_error("404 quoting invalid UTF-8", get(p, path=b"/%ff%fe\x1b"), 404, "no such path: /\\xff\\xfe")
    if any(ord(ch) < 0x20 for ch in e["message"]):
        fail("control characters in %r" % e["message"])
    expect_error("a method that is not a token, quoted", request(p, b"PO\xffST /health HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                 400, "the method 'PO\\xffST' has a character")
    expect_error("405 for an unknown method", request(p, b"BREW /health HTTP/1.1\r\nHost: localhost\r\n\r\n"), 405,
                 "method BREW is not allowed")
    # the heads the HTTP library refuses with its own HTML pages are answered in JSON before it
    # sees them (server/front.c), each on a new connection
    for what, data, status, piece in (
            ("a 300 KB target", b"GET /" + b"a" * 300000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414,
             "the request line is longer than the 32768 bytes allowed"),
            ("a 300 KB header", b"GET /health HTTP/1.1\r\nHost: localhost\r\nX: " + b"a" * 300000 + b"\r\n\r\n", 431,
             "headers are longer than the 32768 bytes allowed"),
            ("20,000 headers", b"GET /health HTTP/1.1\r\nHost: localhost\r\n" +
             b"".join(b"X%d: y\r\n" % i for i in range(20000)) + b"\r\n", 431, "headers are longer"),
            ("HTTP/9.9", b"GET /health HTTP/9.9\r\nHost: localhost\r\n\r\n", 505, "HTTP version 'HTTP/9.9' is not supported"),
            ("HTTP/2's preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP version 'HTTP/2.0' is not supported"),
            ("a request line of one word", b"HELLO\r\n\r\n", 400, "the request line is not"),
            ("no HTTP version", b"GET /health\r\n\r\n", 400, "the request line is not"),
            ("a version that is not HTTP", b"GET /health FTP/1.1\r\n\r\n", 400, "ends in 'FTP/1.1', not an HTTP version"),
            ("a header line without a colon", b"GET /health HTTP/1.1\r\nHost: localhost\r\nBadHeader\r\n\r\n", 400,
             "header line 2 has no colon"),
            ("whitespace before a colon", b"GET /health HTTP/1.1\r\nHost : localhost\r\n\r\n", 400,
             "header line 1 has whitespace before its colon"),
            ("an empty header name", b"GET /health HTTP/1.1\r\nHost: localhost\r\n: x\r\n\r\n", 400,
             "header line 2 has no name"),
            ("a Content-Length that is not a number", b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Length: abc\r\n\r\n", 400, "Content-Length 'abc' is not a number of bytes"),
            ("a negative Content-Length", b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Length: -5\r\n\r\n", 400, "Content-Length '-5' is not"),
            ("two different Content-Lengths", b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "two different Content-Length headers"),
            ("a Content-Length of 10^23", b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
             b"Content-Length: 99999999999999999999999\r\n\r\n", 413, "larger than 8388608 bytes"),
            ("a chunk size that is not hexadecimal", b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
             b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400,
             "the chunked body is malformed: chunk 1 has a size that is not hexadecimal"),
            ("a chunk without its CRLF", b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n3\r\nabcXX0\r\n\r\n", 400,
             "chunk 2 is not followed by CRLF")):
        expect_error(what, request(p, data), status, piece)
    # a good chunked body reaches the handler (which says what the body lacks)
    expect_error("a chunked body", request(p, b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), 400, "'prompt' is required")
    # one request per connection: a second one sent on the same connection is never read, so
    # MHD never answers it (with its HTML); the first is answered with Connection: close
    s = connect(p)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /health HTTP/9.9\r\nHost: localhost\r\n\r\n")
    s.settimeout(10)
    got = read_raw(s, to_close=True)
    s.close()
    if not got.startswith(b"HTTP/1.1 200") or not re.search(rb"(?i)\r\nconnection: close\r\n", got) or \
            got.count(b"HTTP/1.") != 1 or b"<html" in got:
        fail("a second request on one connection: %r" % (got[:400],), srv)
    ok()
    # what the library takes stays served: bare LF line ends, obsolete folding, empty lines first
    for what, data in (("bare LF", b"GET /health HTTP/1.1\nHost: localhost\nConnection: close\n\n"),
                       ("a folded header", b"GET /health HTTP/1.1\r\nHost: localhost\r\nX: a\r\n b\r\nConnection: close\r\n\r\n"),
                       ("an empty line first", b"\r\nGET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")):
        st, _, body = request(p, data)
        if st != 200:
            fail("%s: HTTP %s %r" % (what, st, body[:200]), srv)
        ok()
    expect_error("Transfer-Encoding gzip", request(p, b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                 b"Transfer-Encoding: gzip\r\n\r\nabc"), 400, "Transfer-Encoding 'gzip' is not supported")
    t = time.time()
    ans = request(p, b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n5;" + b"a" * 100000 + b"\r\nhello\r\n0\r\n\r\n")
    if ans[0] is None or not 400 <= ans[0] < 500:
        fail("100 KB chunk extension: %r" % ((ans[1] + ans[2])[:300],), srv)
    expect_error("100 KB chunk extension", ans, ans[0], "")
    if time.time() - t > 5:
        fail("100 KB chunk extension took %.1f s" % (time.time() - t))
    srv.stop()


def trickle(socks, stop):
    """Sends one more header byte on each socket every 0.5 s until stop is set."""
    while not stop.is_set():
        for s in socks:
            try:
                s.send(b"a")
            except OSError:
                pass
        stop.wait(0.5)


def closed_within(s, limit):
    """Seconds until the server closes s without an answer (fails past limit)."""
    t = time.time()
    s.settimeout(limit)
    try:
        d = s.recv(1000)
    except socket.timeout:
        fail("still open after %.1f s" % limit)
    except ConnectionResetError:
        d = b""
    if d:
        fail("an answer instead of a close: %r" % d[:200])
    return time.time() - t


def check_slow():
    srv = Server("--header-timeout", "2", "--body-timeout", "3", "--max-conns-per-ip", "8")
    p = srv.port
    # a trickled header: closed by the header deadline, counted from the connection
    s = connect(p)
    stop = threading.Event()
    s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX: ")
    th = threading.Thread(target=trickle, args=([s], stop))
    th.start()
    dt = closed_within(s, 6)
    stop.set()
    th.join()
    if not 1.5 <= dt <= 3.5:
        fail("trickled header closed after %.1f s, want ~2" % dt, srv)
    ok()
    # a chunk of 2^64-1 bytes: a 413 at once, before any of it is waited for
    t = time.time()
    expect_error("a chunk of 2^64-1 bytes", request(p, b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc"), 413, "larger than 8388608 bytes")
    if time.time() - t > 2:
        fail("the 413 for a 2^64-1 chunk took %.1f s" % (time.time() - t), srv)
    # a short body, and a chunk that never ends: closed by the body deadline
    for what, data in (("short body", b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 40\r\n\r\n{\"p"),
                       ("a chunk that never ends", b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n"
                                                   b"Transfer-Encoding: chunked\r\n\r\n100000\r\nabc")):
        s = connect(p)
        s.sendall(data)
        dt = closed_within(s, 7)
        if not 2.5 <= dt <= 4.5:
            fail("%s closed after %.1f s, want ~3" % (what, dt), srv)
        s.close()
        ok()
    # 300 trickling connections from one address: /health answers every time
    socks = []
    for _ in range(300):
        try:
            c = connect(p)
            c.send(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            socks.append(c)
        except OSError:
            pass
    stop = threading.Event()
    th = threading.Thread(target=trickle, args=(socks, stop))
    th.start()
    time.sleep(0.5)  # those past 250 ms count against their address's cap on waiting connections
    worst = 0.0
    end = time.time() + 5
    while time.time() < end:
        t = time.time()
        st, _, _ = request(p, b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", timeout=5)
        worst = max(worst, time.time() - t)
        if st != 200:
            stop.set()
            fail("/health beside 300 trickling connections: %s after %.2f s" % (st, time.time() - t), srv)
        time.sleep(0.2)
    stop.set()
    th.join()
    for c in socks:
        c.close()
    print("server_guard.py: /health beside 300 trickling connections: slowest %.3f s" % worst)
    if worst > 2:
        fail("/health took %.2f s" % worst, srv)
    ok()
    # the per-address cap: 8 connections sending bodies from 127.0.0.2 hold all it may have
    held = []
    for _ in range(8):
        c = connect(p, "127.0.0.2")
        c.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
        held.append(c)
    time.sleep(0.3)
    c = connect(p, "127.0.0.2")
    try:
        c.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    except OSError:
        pass
    st, _, _ = read_answer(c, 2)
    if st is not None:
        fail("a 9th connection from 127.0.0.2 was served (%s)" % st, srv)
    c.close()
    st, _, _ = get(p)
    if st != 200:
        fail("127.0.0.1 beside 127.0.0.2's cap: %s" % st, srv)
    for c in held:
        c.close()
    ok()
    srv.stop()


def check_auth():
    srv = Server("--api-key", "sekret")
    p = srv.port
    big = b'{"prompt":"' + b"x" * (8 * 1024 * 1024 - 40) + b'"}'
    head = (b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n" % len(big))
    for expect in (b"Expect: 100-continue\r\n", b""):
        s = connect(p)
        s.sendall(head + expect + b"\r\n")
        st, h, body = read_answer(s, 5)
        expect_error("401 on the headers (%r)" % expect, (st, h, body), 401, "invalid or missing API key")
        if b"100 Continue" in h or b"100 Continue" in body:
            fail("100 Continue sent to an unauthenticated client")
        s.close()
    rss0 = srv.rss_kb()
    for _ in range(10):
        s = connect(p)
        try:
            s.sendall(head + b"Authorization: Bearer wrong\r\n\r\n" + big)
        except OSError:
            pass  # the server answered and closed: what it should do
        st, h, body = read_answer(s, 10)
        if st != 401:
            fail("an 8 MB body with a wrong key: %s" % st, srv)
        s.close()
    grow = srv.rss_kb() - rss0
    print("server_guard.py: RSS after ten unauthenticated 8 MB bodies: %+d KB" % grow)
    if grow > 16 * 1024:
        fail("RSS grew %d KB" % grow, srv)
    ok()
    st, _, body = post(p, CHAT, extra=b"Authorization: Bearer sekret\r\nContent-Type: application/json\r\n")
    if st != 200:
        fail("with the key: %s %r" % (st, body[:200]), srv)
    ok()
    srv.stop()


def conversation(n):
    msgs = [{"role": "user" if i % 2 == 0 else "assistant",
             "content": ("m%05d " % i + "lorem ipsum dolor sit amet " * 8)[:200]} for i in range(n)]
    if msgs[-1]["role"] != "user":
        msgs.append({"role": "user", "content": "hi"})
    return json.dumps({"messages": msgs, "max_tokens": 2, "temperature": 0}).encode()


def check_messages():
    srv = Server()
    body = conversation(4000)
    expect_error("4,000 messages", post(srv.port, body), 400, "'messages' has 4001 messages; at most 1024 are allowed")
    srv.stop()
    srv = Server("--max-messages", "5000")
    p = srv.port
    t = time.time()
    st, _, ans = post(p, body)
    dt = time.time() - t
    if st != 200:
        fail("4,000 messages with --max-messages 5000: %s %r" % (st, ans[:300]), srv)
    print("server_guard.py: 4,000 messages of 200 characters answered in %.2f s" % dt)
    if dt > 30:
        fail("4,000 messages took %.1f s" % dt, srv)
    ok()
    # hang up while the conversation is prepared: the one slot is free for the next at once
    s = connect(p)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    time.sleep(0.1)
    s.close()
    t = time.time()
    st, _, ans = post(p, CHAT)
    if st != 200:
        fail("after a hang-up: %s %r" % (st, ans[:200]), srv)
    if time.time() - t > dt + 2:
        fail("the request after a hang-up waited %.1f s" % (time.time() - t), srv)
    ok()
    srv.stop()


def check_queue():
    srv = Server("--parallel", "1", "--queue", "16")
    p = srv.port
    long_body = json.dumps({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 1800,
                            "temperature": 0, "ignore_eos": True}).encode()
    res = {}

    def run_long():
        res["long"] = post(p, long_body, timeout=400)  # minutes under TSan
    th = threading.Thread(target=run_long)
    th.start()
    # the long request holds the slot before the others come (its first pass counts tokens; a
    # loaded machine may take longer than any fixed pause to get there)
    end = time.time() + 120
    while time.time() < end:
        st, _, h = get(p)
        if st == 200 and json.loads(h)["engine"]["tokens"] > 0:
            break
        time.sleep(0.05)
    else:
        fail("the long request never started", srv)
    gone = []
    for i in range(8):
        b = json.dumps({"messages": [{"role": "user", "content": "Question %d?" % i}], "max_tokens": 8,
                        "temperature": 0}).encode()
        s = connect(p)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
        gone.append(s)
    time.sleep(0.5)
    for s in gone:
        s.close()
    th.join(450)
    st, _, ans = res.get("long", (None, b"", b""))
    if st != 200:
        fail("the long request: %s %r" % (st, ans[:200]), srv)
    u = json.loads(ans)["usage"]
    time.sleep(0.5)
    st, _, h = get(p)
    eng = json.loads(h)["engine"]
    # the long request alone: its prompt and its tokens (the last one is not evaluated)
    if eng["tokens"] > u["prompt_tokens"] + u["completion_tokens"]:
        fail("the engine evaluated %d tokens, the only answered request needs %d: abandoned requests ran"
             % (eng["tokens"], u["prompt_tokens"] + u["completion_tokens"]), srv)
    n_gone = len(re.findall(r"cancelled \(client gone\)", srv.logtext()))
    if n_gone != 8:
        fail("%d requests logged as cancelled (client gone), want 8" % n_gone, srv)
    if re.search(r"[1-9]\d* generated tokens, finish cancelled", srv.logtext()):
        fail("an abandoned request generated tokens", srv)
    ok()
    srv.stop()


CHECKS = {"rebinding": check_rebinding, "edges": check_edges, "slow": check_slow, "auth": check_auth,
          "messages": check_messages, "queue": check_queue}
for name in sys.argv[3:]:
    CHECKS[name]()
print("server_guard.py: %d checks passed" % n_checks)
