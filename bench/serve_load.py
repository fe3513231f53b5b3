#!/usr/bin/env python3
"""bench/serve_load.py: load on `locallm serve`: N concurrent streaming clients.

Starts `locallm serve MODEL --port 0 --parallel P`, waits for /health, then for each client
count N (default 1, 4, 16) runs N threads that each send R streamed requests one after another
(POST /v1/completions with "stream": true, "ignore_eos": true so every request generates exactly
--max-tokens tokens, and stream_options.include_usage for the counts). Per request it records
the time to the first content byte (TTFT) and the tokens generated; per N it reports:

  requests/s        finished requests / wall time of the round
  TTFT p50 / p99    over all requests of the round (includes waiting for a slot)
  tok/s total       generated tokens of all requests / wall time (server throughput)
  tok/s per stream  median over requests of tokens / (end - first token)

Only the Python standard library (threads, http.client). Prints a Markdown table and, with
--json FILE, writes the raw numbers. Example:

  python3 bench/serve_load.py --locallm build/locallm --model tests/data/stories260K/stories260K-f32.gguf
  python3 bench/serve_load.py --model /tmp/locallm-bench/qwen2.5-0.5b-Q4_0.gguf --max-tokens 16 --requests 2

The Qwen2.5-0.5B-shaped file comes from tools/make_synthetic_gguf.py (needs numpy):
  python3 tools/make_synthetic_gguf.py --preset qwen2.5-0.5b --type Q4_0 --out /tmp/locallm-bench/qwen2.5-0.5b-Q4_0.gguf
No peer: node-llama-cpp (the llama.cpp build bench/compare.sh uses) ships no llama-server.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def percentile(xs, p):
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def one_request(port, prompt, max_tokens, timeout):
    """One streamed completion. Returns dict(ttft, total, tokens, ok, error)."""
    body = json.dumps({
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "ignore_eos": True, "stream_options": {"include_usage": True},
    })
    t0 = time.perf_counter()
    ttft = None
    tokens = 0
    pieces = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        if r.status != 200:
            return {"ok": False, "error": "HTTP %d %s" % (r.status, r.read(300)), "ttft": 0, "total": 0, "tokens": 0}
        buf = b""
        done = False
        while not done:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                if not frame.startswith(b"data: "):
                    continue
                data = frame[6:]
                if data == b"[DONE]":
                    done = True
                    break
                j = json.loads(data)
                if "error" in j:
                    return {"ok": False, "error": j["error"].get("message"), "ttft": 0, "total": 0, "tokens": 0}
                for ch in j.get("choices", []):
                    if ch.get("text"):
                        pieces += 1
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                if j.get("usage"):
                    tokens = j["usage"]["completion_tokens"]
        total = time.perf_counter() - t0
        return {"ok": done, "error": None if done else "no [DONE]", "ttft": ttft if ttft is not None else total,
                "total": total, "tokens": tokens or pieces}
    except Exception as e:  # a timeout or reset counts as a failed request
        return {"ok": False, "error": repr(e), "ttft": 0, "total": 0, "tokens": 0}
    finally:
        conn.close()


def run_round(port, n_clients, n_requests, max_tokens, timeout):
    results = []
    lock = threading.Lock()

    def client(ci):
        for k in range(n_requests):
            # distinct prompts: no client gets another's cached prefix for free
            res = one_request(port, "Once upon a time, client %d told story %d about" % (ci, k), max_tokens, timeout)
            with lock:
                results.append(res)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    ttfts = [r["ttft"] * 1000 for r in ok]
    per_stream = [r["tokens"] / (r["total"] - r["ttft"]) for r in ok if r["total"] > r["ttft"] and r["tokens"] > 1]
    return {
        "clients": n_clients, "requests": len(results), "failed": len(results) - len(ok),
        "errors": sorted({r["error"] for r in results if not r["ok"]})[:3],
        "wall_s": wall, "req_s": len(ok) / wall if wall > 0 else 0,
        "ttft_p50_ms": percentile(ttfts, 50), "ttft_p99_ms": percentile(ttfts, 99),
        "tok_s_total": sum(r["tokens"] for r in ok) / wall if wall > 0 else 0,
        "tok_s_stream_median": statistics.median(per_stream) if per_stream else float("nan"),
        "tokens": sum(r["tokens"] for r in ok),
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--locallm", default=os.path.join(here, "..", "build", "locallm"))
    ap.add_argument("--model", required=True)
    ap.add_argument("--clients", default="1,4,16", help="comma-separated client counts")
    ap.add_argument("--requests", type=int, default=4, help="requests per client per round")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=4, help="server slots (--parallel)")
    ap.add_argument("--threads", type=int, default=0, help="server threads (-t; 0: its default)")
    ap.add_argument("--ctx", type=int, default=512, help="context per slot")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", help="write the raw numbers here")
    a = ap.parse_args()
    clients = [int(x) for x in a.clients.split(",") if x]

    log = tempfile.NamedTemporaryFile(prefix="serve_load-", suffix=".log", delete=False)
    cmd = [a.locallm, "serve", a.model, "--port", "0", "--parallel", str(a.parallel),
           "--queue", str(max(clients) * 2 + 16), "--ctx", str(a.ctx)]
    if a.threads:
        cmd += ["-t", str(a.threads)]
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    port = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and port is None:
            if srv.poll() is not None:
                sys.exit("serve_load: the server exited: " + open(log.name).read()[-2000:])
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(log.name).read())
            if m:
                port = int(m.group(1))
            else:
                time.sleep(0.1)
        if port is None:
            sys.exit("serve_load: the server did not listen")
        while time.time() < deadline:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                c.close()
            time.sleep(0.2)
        else:
            sys.exit("serve_load: the model did not load: " + open(log.name).read()[-2000:])

        # Warm-up: one request per slot at once, so every slot's session has run once and the
        # mapped weights are paged in before anything is timed.
        warm = [threading.Thread(target=one_request, args=(port, "Warm up %d" % i, 4, a.timeout))
                for i in range(a.parallel)]
        for t in warm:
            t.start()
        for t in warm:
            t.join()
        rows = []
        for n in clients:
            r = run_round(port, n, a.requests, a.max_tokens, a.timeout)
            rows.append(r)
            print("clients %2d: %d requests (%d failed) in %.1f s" % (n, r["requests"], r["failed"], r["wall_s"]),
                  file=sys.stderr)
        name = os.path.basename(a.model.rstrip("/"))
        print("model %s, %d tokens per request (ignore_eos), %d requests per client, server --parallel %d%s"
              % (name, a.max_tokens, a.requests, a.parallel, (" -t %d" % a.threads) if a.threads else ""))
        print()
        print("| clients | requests/s | TTFT p50 ms | TTFT p99 ms | tok/s total | tok/s per stream | failed |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print("| %d | %.2f | %.0f | %.0f | %.1f | %.1f | %d |" % (
                r["clients"], r["req_s"], r["ttft_p50_ms"], r["ttft_p99_ms"], r["tok_s_total"],
                r["tok_s_stream_median"], r["failed"]))
        for r in rows:
            if r["errors"]:
                print("clients %d errors: %s" % (r["clients"], "; ".join(str(e) for e in r["errors"])), file=sys.stderr)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"model": a.model, "max_tokens": a.max_tokens, "requests": a.requests,
                           "parallel": a.parallel, "threads": a.threads, "rounds": rows}, f, indent=1)
    finally:
        srv.terminate()
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()
        os.unlink(log.name)


if __name__ == "__main__":
    main()
