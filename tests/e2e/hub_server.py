#!/usr/bin/env python3
"""tests/e2e/hub_server.py: a fake Hugging Face hub on loopback for test_hub.sh (standard library).

Usage: hub_server.py ROOT_DIR PORT_FILE LOG_FILE
Builds repos under ROOT_DIR at start from $LM_SOURCE_DIR/models/tinychat (test-org/tiny-model)
and tests/data/stories260K (test-org/tiny-gguf), listens on 127.0.0.1 with a free port, writes
the port to PORT_FILE and logs every request ("METHOD PATH range=...") to LOG_FILE.
Serves GET /api/models/ORG/NAME/revision/REV (sha, siblings), HEAD/GET /ORG/NAME/resolve/C/FILE
with ETag (quoted sha256 for .safetensors/.gguf, else a quoted git-like sha1) or X-Linked-Etag
(tokenizer.json, via a 302 redirect to /cdn/...), Range (206); 401 for test-org/gated, 404 for
unknown repos. Modes set with GET /control?mode=cut|corrupt|norange|normal: "cut" sends half the bytes of
the next big-file GET then closes; "corrupt" flips bytes of the next big-file GET; "norange"
answers the next big-file GET with 200 and the whole file even when a Range was asked;
"corrupt_small" flips bytes of the next small-file GET; "stall" sends half of the next big-file
GET, then nothing for 30 s; "slowhead" answers the next HEAD after 5 s.
Hostile repositories (issue 20): test-org/evil-names and test-org/evil-c1 list file names with
terminal control characters; test-org/many-files lists 60,000 files; test-org/lots lists the
tiny model's files plus 20,000 others; test-org/redirect-ftp redirects config.json to an ftp://
URL on a port this server also listens on (any connection there is logged "FTP-CONNECT");
test-org/huge-config announces a 100 MB config.json under a git sha1 etag; test-org/overflow
serves config.json without Content-Length and with 100,000 bytes more than its HEAD announced.
"""
import hashlib
import http.server
import os
import shutil
import sys
import threading

SRC = os.environ.get("LM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ROOT, PORT_FILE, LOG = sys.argv[1], sys.argv[2], sys.argv[3]
COMMITS = {"test-org/tiny-model": "1" * 8 + "a" * 32, "test-org/tiny-gguf": "2" * 8 + "b" * 32,
           "test-org/lots": "3" * 8 + "c" * 32, "test-org/evil-names": "4" * 8 + "d" * 32,
           "test-org/evil-c1": "5" * 8 + "e" * 32, "test-org/many-files": "6" * 8 + "f" * 32,
           "test-org/redirect-ftp": "7" * 8 + "a" * 32, "test-org/huge-config": "8" * 8 + "b" * 32,
           "test-org/overflow": "9" * 8 + "c" * 32}
EXTRA = {  # names listed by the API beyond the files on disk
    "test-org/lots": ["junk/%05d.txt" % i for i in range(20000)],
    "test-org/evil-names": ["\x1b[31mevil\x07.safetensors"],
    "test-org/evil-c1": ["\u009b31mx.safetensors"],
    "test-org/many-files": ["f%05d.txt" % i for i in range(60000)],
}
FTP = {"port": 0}
STATE = {"mode": "normal"}
LOCK = threading.Lock()


def build():
    tm = os.path.join(ROOT, "test-org/tiny-model")
    os.makedirs(tm, exist_ok=True)
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "model.safetensors", "README.md"):
        shutil.copy(os.path.join(SRC, "models/tinychat", f), os.path.join(tm, f))
    os.makedirs(os.path.join(tm, "sub/dir"), exist_ok=True)
    with open(os.path.join(tm, "sub/dir/extra.safetensors"), "wb") as f:
        f.write(b"\0" * 8)
    tg = os.path.join(ROOT, "test-org/tiny-gguf")
    os.makedirs(tg, exist_ok=True)
    d = os.path.join(SRC, "tests/data/stories260K")
    shutil.copy(os.path.join(d, "stories260K-q8_0.gguf"), os.path.join(tg, "stories260K-Q8_0.gguf"))
    shutil.copy(os.path.join(d, "stories260K-f32.gguf"), os.path.join(tg, "stories260K-F32.gguf"))
    with open(os.path.join(tg, "README.md"), "w") as f:
        f.write("tiny gguf\n")
    for repo in ("test-org/lots", "test-org/evil-names", "test-org/evil-c1", "test-org/many-files",
                 "test-org/redirect-ftp", "test-org/huge-config", "test-org/overflow"):
        d = os.path.join(ROOT, repo)
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(SRC, "models/tinychat/config.json"), os.path.join(d, "config.json"))
    for f in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(SRC, "models/tinychat", f), os.path.join(ROOT, "test-org/lots", f))


def ftp_listener():
    """Accepts and logs connections on the port test-org/redirect-ftp redirects to."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    FTP["port"] = srv.getsockname()[1]

    def loop():
        while True:
            c, _ = srv.accept()
            with LOCK, open(LOG, "a") as f:
                f.write("FTP-CONNECT\n")
            c.close()
    threading.Thread(target=loop, daemon=True).start()


def files(repo):
    base = os.path.join(ROOT, repo)
    out = []
    for dp, _, fs in os.walk(base):
        for f in fs:
            out.append(os.path.relpath(os.path.join(dp, f), base))
    return sorted(out)


def etag(path, name):
    data = open(path, "rb").read()
    if name.endswith((".safetensors", ".gguf")):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def log(self):
        with LOCK, open(LOG, "a") as f:
            f.write("%s %s range=%s auth=%s\n" % (self.command, self.path, self.headers.get("Range", "-"),
                                                 "yes" if self.headers.get("Authorization") else "no"))

    def send(self, code, body=b"", ctype="application/json", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.handle_req()

    def do_GET(self):
        self.handle_req()

    def handle_req(self):
        self.log()
        p = self.path.split("?")[0]
        if p == "/control":
            STATE["mode"] = self.path.split("mode=")[1]
            return self.send(200, b"ok\n", "text/plain")
        parts = p.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 6 and parts[1] == "models" and parts[4] == "revision":
            repo = parts[2] + "/" + parts[3]
            return self.api(repo)
        if parts[0] == "cdn" and len(parts) >= 4:
            repo, name = parts[1] + "/" + parts[2], "/".join(parts[3:])
            return self.blob(repo, name, redirected=True)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = parts[0] + "/" + parts[1], "/".join(parts[4:])
            if repo == "test-org/gated":
                return self.send(401, b'{"error":"gated"}')
            if repo not in COMMITS or parts[3] != COMMITS[repo]:
                return self.send(404, b'{"error":"not found"}')
            if self.command == "HEAD" and STATE["mode"] == "slowhead":
                STATE["mode"] = "normal"
                import time
                time.sleep(5)
            if repo == "test-org/redirect-ftp":
                return self.send(302, b"", "text/plain", {"Location": "ftp://127.0.0.1:%d/%s" % (FTP["port"], name)})
            if repo == "test-org/huge-config" and self.command == "HEAD":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(100 << 20))
                self.send_header("ETag", '"%s"' % ("ab" * 20))
                self.end_headers()
                return
            if repo == "test-org/overflow" and self.command == "GET":
                path = os.path.join(ROOT, repo, name)
                data = open(path, "rb").read() + b" " * 100000
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("ETag", '"%s"' % etag(path, name))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                self.close_connection = True
                return
            if name == "tokenizer.json":
                path = os.path.join(ROOT, repo, name)
                return self.send(302, b"", "text/plain", {"Location": "/cdn/%s/%s" % (repo, name),
                                                          "X-Linked-Etag": '"%s"' % etag(path, name),
                                                          "X-Linked-Size": str(os.path.getsize(path))})
            return self.blob(repo, name, redirected=False)
        return self.send(404, b'{"error":"not found"}')

    def api(self, repo):
        if repo == "test-org/gated":
            return self.send(401, b'{"error":"Access to model test-org/gated is restricted."}')
        if repo not in COMMITS:
            return self.send(404, b'{"error":"Repository not found"}')
        import json
        names = files(repo) + EXTRA.get(repo, [])
        body = json.dumps({"id": repo, "sha": COMMITS[repo], "siblings": [{"rfilename": f} for f in names]})
        self.send(200, body.encode())

    def blob(self, repo, name, redirected):
        path = os.path.join(ROOT, repo, name)
        if ".." in name.split("/") or not os.path.isfile(path):
            return self.send(404, b'{"error":"entry not found"}')
        data = open(path, "rb").read()
        tag = etag(path, name)
        hdr = {"ETag": ('W/"%s"' % tag) if not redirected else '"cdn-%s"' % tag[:16], "Accept-Ranges": "bytes"}
        start = 0
        rng = self.headers.get("Range")
        code = 200
        big = len(data) > 4096 and self.command == "GET"
        if big and STATE["mode"] == "norange":
            STATE["mode"] = "normal"
            rng = None
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                return self.send(416, b"", "text/plain")
            code = 206
            hdr["Content-Range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
        body = data[start:]
        small = not big and self.command == "GET"
        mode = STATE["mode"] if big and STATE["mode"] in ("cut", "corrupt", "stall") else \
            STATE["mode"] if small and STATE["mode"] == "corrupt_small" else "normal"
        if mode != "normal":
            STATE["mode"] = "normal"
        if mode in ("corrupt", "corrupt_small"):
            body = bytes(b ^ 0x5A for b in body[:64]) + body[64:]
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in hdr.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        if mode in ("cut", "stall"):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if mode == "stall":
                import time
                time.sleep(30)
            self.close_connection = True
            return
        self.wfile.write(body)


if __name__ == "__main__":
    build()
    ftp_listener()
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            if isinstance(sys.exc_info()[1], ConnectionError):
                return  # a client that cancelled or timed out on purpose
            super().handle_error(request, client_address)

    srv = Server(("127.0.0.1", 0), H)
    with open(PORT_FILE + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(PORT_FILE + ".tmp", PORT_FILE)
    srv.serve_forever()
