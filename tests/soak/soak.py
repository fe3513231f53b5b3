#!/usr/bin/env python3
"""tests/soak/soak.py: a bounded soak of `locallm serve` on loopback (python3 stdlib only).

    soak.py CLI MODEL [--seconds 60] [--clients 8] [--seed 1] [--max-rss-growth-mb 8]

Starts the server on a free loopback port, then CLIENTS threads send, until SECONDS have passed,
a seeded random mix of: good chat requests (streamed and not), good /v1/completions, bad JSON,
wrong field types, a body over the 8 MB limit, truncated bodies, garbage bytes instead of HTTP,
slow readers of a stream, clients that hang up mid-stream, clients that trickle half a header
(closed by the server's header deadline) and clients without the API key that send an 8 MB body
(answered 401 on their headers, before the body). Checks:
  * every good request gets a complete answer: 200, finish_reason, content; streams end with
    `data: [DONE]` after a chunk carrying finish_reason;
  * every malformed request gets its 4xx (or, for garbage and oversized uploads, the connection
    closed), never a 5xx;
  * the server stays up and answers a good request at the end;
  * its resident memory (VmRSS from /proc/PID/status, sampled every 0.5 s after a warm-up)
    is flat: the median of the last third is within max(10 %, --max-rss-growth-mb) of the
    median of the first third.
Prints counts per kind, errors, and RSS first/last; exit status 0 on success.
"""
import argparse
import http.client
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# tests/raw_http.py, shared with e2e/server_guard.py; no __pycache__ left in the source tree
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from raw_http import read_raw  # noqa: E402

KEY = "soak-key"  # the server requires it: unauthenticated clients are one of the scenarios
AUTH = b"Authorization: Bearer " + KEY.encode() + b"\r\n"
PROMPTS = ["Hi", "Tell me a story.", "What is 2+2?", "Name a colour.", "Say hello in French.",
           "Write one sentence about cats.", "Why is the sky blue?", "Count to five."]


class Soak:
    def __init__(self, args):
        self.a = args
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []
        self.deadline = 0.0
        self.port = 0

    # ---- bookkeeping ----
    def count(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def error(self, kind, msg):
        with self.lock:
            self.counts["ERROR " + kind] = self.counts.get("ERROR " + kind, 0) + 1
            if len(self.errors) < 50:
                self.errors.append("%s: %s" % (kind, msg))

    # ---- helpers ----
    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def body(self, rng, stream, completions=False):
        b = {"model": "local", "max_tokens": rng.choice([1, 4, 8, 16]),
             "temperature": rng.choice([0, 0.8]), "seed": rng.randrange(1000), "stream": stream}
        if completions:
            b["prompt"] = rng.choice(PROMPTS)
        else:
            msgs = []
            if rng.random() < 0.3:
                msgs.append({"role": "system", "content": "Be brief."})
            msgs.append({"role": "user", "content": rng.choice(PROMPTS)})
            b["messages"] = msgs
        return json.dumps(b).encode()

    def read_stream(self, resp, kind, slow=False):
        """Reads an SSE answer to its end; returns True when complete."""
        finish = None
        done = False
        text = ""
        while True:
            if slow:
                time.sleep(0.02)
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            try:
                ev = json.loads(data)
            except ValueError:
                self.error(kind, "a frame is not JSON: %r" % data[:200])
                return False
            if "error" in ev:
                self.error(kind, "error frame: %r" % data[:300])
                return False
            ch = ev.get("choices") or [{}]
            c = ch[0]
            piece = (c.get("delta") or {}).get("content") or c.get("text") or ""
            text += piece
            if c.get("finish_reason"):
                finish = c["finish_reason"]
        if not done:
            self.error(kind, "stream ended without [DONE]")
            return False
        if not finish:
            self.error(kind, "stream had no finish_reason")
            return False
        return True

    # ---- scenarios ----
    def good(self, rng, stream, completions=False):
        kind = ("completion" if completions else "chat") + (" stream" if stream else "")
        path = "/v1/completions" if completions else "/v1/chat/completions"
        c = self.conn()
        try:
            c.request("POST", path, self.body(rng, stream, completions),
                      {"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
            r = c.getresponse()
            if r.status != 200:
                self.error(kind, "status %d: %r" % (r.status, r.read()[:300]))
                return
            if stream:
                if self.read_stream(r, kind):
                    self.count(kind)
                return
            ans = json.loads(r.read())
            ch = ans["choices"][0]
            content = ch["text"] if completions else ch["message"]["content"]
            if not ch.get("finish_reason") or not isinstance(content, str):
                self.error(kind, "incomplete answer %r" % ans)
                return
            self.count(kind)
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            self.error(kind, repr(e))
        finally:
            c.close()

    def expect_4xx(self, kind, body, headers=None):
        c = self.conn()
        try:
            h = {"Content-Type": "application/json", "Authorization": "Bearer " + KEY}
            h.update(headers or {})
            c.request("POST", "/v1/chat/completions", body, h)
            r = c.getresponse()
            data = r.read()
            if not 400 <= r.status < 500:
                self.error(kind, "status %d (expected 4xx): %r" % (r.status, data[:200]))
                return
            err = json.loads(data).get("error")
            if not err or not err.get("message"):
                self.error(kind, "4xx without an OpenAI error object: %r" % data[:200])
                return
            self.count(kind)
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.error(kind, repr(e))
        finally:
            c.close()

    def bad_json(self, rng):
        bodies = [b"{", b"{\"messages\": [", b"not json at all", b"[1,2,3]", b"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],}",
                  bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))]
        self.expect_4xx("bad json", rng.choice(bodies))

    def wrong_types(self, rng):
        bodies = [{"messages": 5}, {"messages": [{"role": 3, "content": "x"}]},
                  {"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"},
                  {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
                  {"messages": [{"role": "user", "content": "x"}], "stream": "yes"},
                  {"messages": []}, {}, {"prompt": 7}]
        self.expect_4xx("wrong types", json.dumps(rng.choice(bodies)).encode())

    def raw(self, payload, read=True, timeout=15):
        """Sends raw bytes; returns what came back before the server closed (b'' on reset)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            try:
                s.sendall(payload)
            except OSError:
                pass
            if not read:
                return b""
            return read_raw(s)
        finally:
            s.close()

    def huge(self, rng):
        kind = "huge body"
        n = 9 * 1024 * 1024
        declared = rng.random() < 0.5  # also a chunked upload that grows past the limit
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        got = b""
        try:
            if declared:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n" + AUTH + b"Content-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % n)
            else:
                s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n" + AUTH + b"Content-Type: application/json\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"{\"messages\":\"" + b"a" * (1 << 20)
            sent = 0
            try:
                while sent < n:
                    part = chunk if sent == 0 else b"a" * (1 << 20)
                    if declared:
                        s.sendall(part)
                    else:
                        s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                    sent += len(part)
                if not declared:
                    s.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server answered 413 and closed while we were still sending
            got = read_raw(s)
        finally:
            s.close()
        m = re.match(rb"HTTP/1\.[01] (\d+)", got)
        if m and int(m.group(1)) != 413:
            self.error(kind, "status %s (expected 413)" % m.group(1).decode())
        else:
            self.count(kind)  # 413, or closed before we could read the answer

    def truncated(self, rng):
        body = self.body(rng, rng.random() < 0.5)
        cut = rng.randrange(0, len(body))
        self.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n" + AUTH + b"Content-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body[:cut]), read=False)
        self.count("truncated body")

    def garbage(self, rng):
        kind = "garbage"
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
        if rng.random() < 0.5:
            junk += b"\r\n\r\n"
        got = self.raw(junk, read=rng.random() < 0.7)
        m = re.match(rb"HTTP/1\.[01] (\d+)", got)
        if m and int(m.group(1)) >= 500:
            self.error(kind, "status %s" % m.group(1).decode())
        else:
            self.count(kind)

    def slow_reader(self, rng):
        kind = "slow reader"
        s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            c.sock = s
            c.request("POST", "/v1/chat/completions", self.body(rng, True),
                      {"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
            r = c.getresponse()
            if r.status != 200:
                self.error(kind, "status %d" % r.status)
                return
            if self.read_stream(r, kind, slow=True):
                self.count(kind)
        except (OSError, http.client.HTTPException) as e:
            self.error(kind, repr(e))
        finally:
            s.close()

    def hang_up(self, rng):
        kind = "hang up mid-stream"
        c = self.conn()
        try:
            c.request("POST", "/v1/chat/completions",
                      json.dumps({"messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
                                  "max_tokens": 64, "stream": True}).encode(),
                      {"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
            r = c.getresponse()
            if r.status != 200:
                self.error(kind, "status %d" % r.status)
                return
            r.readline()
            self.count(kind)
        except (OSError, http.client.HTTPException) as e:
            self.error(kind, repr(e))
        finally:
            c.close()

    def slow_header(self, rng):
        """Half a header, then a byte every 0.3 s: the server closes it at its header deadline."""
        kind = "slow header"
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        t = time.time()
        try:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            s.settimeout(0.3)
            while time.time() - t < 8:
                try:
                    if s.recv(1000) == b"":
                        break
                except socket.timeout:
                    s.send(b"a")
            else:
                self.error(kind, "still open after 8 s")
                return
            self.count(kind)
        except (ConnectionResetError, BrokenPipeError):
            self.count(kind)
        except OSError as e:
            self.error(kind, repr(e))
        finally:
            s.close()

    def unauth_big(self, rng):
        """An 8 MB body without the key: the 401 comes on the headers; the body sent anyway."""
        kind = "unauthenticated 8 MB body"
        n = 8 * 1024 * 1024 - 64
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        try:
            key = rng.choice([b"", b"Authorization: Bearer wrong\r\n"])
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n" + key +
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % n)
            if rng.random() < 0.5:
                try:
                    s.sendall(b"x" * n)
                except OSError:
                    pass  # answered and closed
            got = read_raw(s)
            m = re.match(rb"HTTP/1\.1 (\d+)", got)
            if not m or m.group(1) != b"401":
                self.error(kind, "got %r" % got[:200])
            else:
                self.count(kind)
        except OSError as e:
            self.error(kind, repr(e))
        finally:
            s.close()

    def client(self, idx):
        rng = random.Random(self.a.seed * 1000 + idx)
        mix = [(30, lambda: self.good(rng, False)), (30, lambda: self.good(rng, True)),
               (5, lambda: self.good(rng, rng.random() < 0.5, True)),
               (8, lambda: self.bad_json(rng)), (8, lambda: self.wrong_types(rng)),
               (1, lambda: self.huge(rng)), (5, lambda: self.truncated(rng)),
               (5, lambda: self.garbage(rng)), (4, lambda: self.slow_reader(rng)),
               (6, lambda: self.hang_up(rng)), (3, lambda: self.slow_header(rng)),
               (2, lambda: self.unauth_big(rng))]
        total = sum(w for w, _ in mix)
        while time.time() < self.deadline:
            x = rng.randrange(total)
            for w, f in mix:
                if x < w:
                    f()
                    break
                x -= w

    # ---- the server ----
    def start(self):
        self.log = tempfile.NamedTemporaryFile(prefix="soak-", suffix=".log", delete=False)
        cmd = [self.a.cli, "serve", self.a.model, "--port", "0", "--parallel", str(self.a.parallel),
               "--queue", "256", "--threads", "1", "--api-key", KEY, "--header-timeout", "2"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        t0 = time.time()
        while time.time() - t0 < 120:
            if self.proc.poll() is not None:
                sys.exit("soak: the server exited at start; log: " + self.log.name)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(self.log.name).read())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.1)
        if not self.port:
            sys.exit("soak: the server did not say where it listens; log: " + self.log.name)
        while time.time() - t0 < 300:
            try:
                c = self.conn(5)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("soak: /health never answered 200")

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def run(self):
        self.start()
        # warm-up: the KV caches and scratch of every slot exist before memory is sampled
        warm = random.Random(self.a.seed)
        for _ in range(2 * self.a.parallel):
            self.good(warm, False)
            self.good(warm, True)
        t0 = time.time()
        self.deadline = t0 + self.a.seconds
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                   for i in range(self.a.clients)]
        for t in threads:
            t.start()
        samples = []
        while any(t.is_alive() for t in threads):
            r = self.rss_kb()
            if r is None or self.proc.poll() is not None:
                self.error("server", "the server died (exit %r)" % self.proc.poll())
                break
            samples.append(r)
            time.sleep(0.5)
        for t in threads:
            t.join(timeout=120)
        elapsed = time.time() - t0
        alive = self.proc.poll() is None
        if alive:
            before = dict(self.counts)
            self.good(random.Random(0), True)
            self.good(random.Random(0), False)
            if sum(v for k, v in self.counts.items() if k.startswith("ERROR")) != \
                    sum(v for k, v in before.items() if k.startswith("ERROR")):
                self.error("final", "good requests after the soak failed")
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.error("server", "did not stop within 60 s of SIGTERM")
                self.proc.kill()
        return self.report(samples, elapsed, alive)

    def report(self, samples, elapsed, alive):
        ok = alive and not self.errors
        n_req = sum(v for k, v in self.counts.items())
        n_err = sum(v for k, v in self.counts.items() if k.startswith("ERROR"))
        print("soak: %d requests in %.0f s from %d clients (%.1f/s), %d errors, server %s"
              % (n_req, elapsed, self.a.clients, n_req / max(elapsed, 1e-9), n_err,
                 "up" if alive else "DOWN"))
        for k in sorted(self.counts):
            print("  %-24s %6d" % (k, self.counts[k]))
        if len(samples) >= 6:
            third = len(samples) // 3
            first = statistics.median(samples[:third]) / 1024
            last = statistics.median(samples[-third:]) / 1024
            limit = max(first * 0.10, self.a.max_rss_growth_mb)
            print("  RSS MiB: first third %.1f, last third %.1f, min %.1f, max %.1f (%d samples; allowed growth %.1f)"
                  % (first, last, min(samples) / 1024, max(samples) / 1024, len(samples), limit))
            if last - first > limit:
                ok = False
                print("soak: FAIL: memory grew %.1f MiB" % (last - first))
        else:
            print("  RSS: too few samples")
        for e in self.errors[:20]:
            print("  error: " + e)
        if not ok:
            print("soak: FAIL (server log: %s)" % self.log.name)
            os.system("tail -20 %s" % self.log.name)
        else:
            os.unlink(self.log.name)
            print("soak: ok")
        return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cli")
    p.add_argument("model")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-rss-growth-mb", type=float, default=8)
    sys.exit(Soak(p.parse_args()).run())


if __name__ == "__main__":
    main()
