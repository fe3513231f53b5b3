#!/usr/bin/env python3
"""tests/e2e/server_batch.py: concurrent requests on `locallm serve` share the engine's passes.

Usage: server_batch.py BASE_URL CHECK
  CHECK identical: four different streamed chat requests (temperature 0) sent one at a time, then
        all at once: every reply is byte-identical, and /health shows passes that held several
        requests.
  CHECK disconnect: two long streams run together; one client hangs up: from then on each pass
        holds one token (the other's), i.e. the gone request's token count stops growing, and the
        remaining stream still completes.
  CHECK queue: one slot (serve --parallel 1 --queue 2): a long stream holds it, a short request
        waits; the long client hangs up and the waiting request gets the slot and its answer
        long before the long one would have ended.
Standard library only. Exit status 0 on success; a message on stderr otherwise.
"""
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse

BASE = urllib.parse.urlparse(sys.argv[1])
CHECK = sys.argv[2]
QUESTIONS = ["What is the capital of France?", "What colour is the sky?", "Hello!", "What is 2 plus 2?"]


def fail(msg):
    print("server_batch.py: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def health():
    c = http.client.HTTPConnection(BASE.hostname, BASE.port, timeout=30)
    c.request("GET", "/health")
    j = json.loads(c.getresponse().read())
    c.close()
    return j["engine"]


def stream_chat(question, max_tokens=48, ignore_eos=False, out=None, stop_after=None, started=None):
    """A streamed chat; returns the concatenated content. stop_after: hang up after that many
    content chunks (returns what came)."""
    body = {"messages": [{"role": "user", "content": question}], "temperature": 0, "max_tokens": max_tokens,
            "stream": True}
    if ignore_eos:
        body["ignore_eos"] = True
    c = http.client.HTTPConnection(BASE.hostname, BASE.port, timeout=120)
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    sock = c.sock  # the response takes it over when the server says Connection: close
    r = c.getresponse()
    if r.status != 200:
        fail("stream: HTTP %d: %s" % (r.status, r.read()[:300]))
    text, n, done = [], 0, False
    buf = b""
    while not done:
        line = r.fp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            done = True
            break
        j = json.loads(data)
        if "error" in j:
            fail("stream error: %s" % j["error"])
        for ch in j.get("choices", []):
            piece = (ch.get("delta") or {}).get("content")
            if piece:
                text.append(piece)
                n += 1
                if started is not None and n == 1:
                    started.set()
        if stop_after is not None and n >= stop_after:
            # hang up: close the socket under the response
            sock.shutdown(socket.SHUT_RDWR)
            r.close()
            c.close()
            break
    if out is not None:
        out.append("".join(text))
    if stop_after is None and not done:
        fail("stream ended without [DONE]")
    return "".join(text)


def check_identical():
    alone = [stream_chat(q) for q in QUESTIONS]
    for a in alone:
        if not a:
            fail("an empty reply alone")
    h0 = health()
    outs = [[] for _ in QUESTIONS]
    th = [threading.Thread(target=stream_chat, args=(q,), kwargs={"out": o}) for q, o in zip(QUESTIONS, outs)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    h1 = health()
    for q, a, o in zip(QUESTIONS, alone, outs):
        if o[0] != a:
            fail("%r: together %r, alone %r" % (q, o[0], a))
    if h1["shared_passes"] <= h0["shared_passes"] or h1["max_requests_in_pass"] < 2:
        fail("the concurrent requests shared no pass: %s -> %s" % (h0, h1))
    print("server_batch.py: 4 concurrent replies byte-identical to alone; %d passes shared, up to %d requests in one"
          % (h1["shared_passes"] - h0["shared_passes"], h1["max_requests_in_pass"]))


def check_disconnect():
    out_b = []
    started = threading.Event()
    b = threading.Thread(target=stream_chat, args=("Tell me a story.",),
                         kwargs={"max_tokens": 400, "ignore_eos": True, "out": out_b})
    b.start()
    # A runs beside B and hangs up after 5 chunks
    stream_chat("Tell me about the sky.", max_tokens=2000, ignore_eos=True, stop_after=5)
    # the cancel lands within a pass or two: then every pass holds B's token alone
    time.sleep(0.5)
    h0 = health()
    time.sleep(1.0)
    h1 = health()
    dp, dt = h1["passes"] - h0["passes"], h1["tokens"] - h0["tokens"]
    b.join()
    if dp > 0 and dt != dp:
        fail("after the hang-up, %d tokens in %d passes: the gone request still runs" % (dt, dp))
    if not out_b or not out_b[0]:
        fail("the remaining stream did not complete")
    print("server_batch.py: after a hang-up, %d passes of one token each; the other stream completed" % dp)


def check_queue():
    started = threading.Event()
    a = threading.Thread(target=stream_chat, args=("Tell me a story.",),
                         kwargs={"max_tokens": 2000, "ignore_eos": True, "stop_after": 20, "started": started})
    res = {}

    def short():
        c = http.client.HTTPConnection(BASE.hostname, BASE.port, timeout=120)
        body = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "temperature": 0,
                "max_tokens": 32}
        t0 = time.time()
        c.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = c.getresponse()
        res["status"] = r.status
        res["body"] = json.loads(r.read())
        res["wait"] = time.time() - t0

    a.start()
    started.wait(60)
    b = threading.Thread(target=short)
    b.start()
    a.join()  # A hangs up after 20 chunks, long before its 2000 tokens
    b.join(60)
    if b.is_alive():
        fail("the queued request did not get the slot after the hang-up")
    if res.get("status") != 200:
        fail("queued request: HTTP %s %s" % (res.get("status"), res.get("body")))
    content = res["body"]["choices"][0]["message"]["content"]
    if content != "The capital of France is Paris.":
        fail("queued request answered %r" % content)
    print("server_batch.py: the queued request got the slot after the hang-up (%.2f s in all)" % res["wait"])


{"identical": check_identical, "disconnect": check_disconnect, "queue": check_queue}[CHECK]()
