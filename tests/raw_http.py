"""tests/raw_http.py: reading HTTP answers from raw sockets, for the Python tests that speak to
`locallm serve` below http.client (e2e/server_guard.py, soak/soak.py). Standard library only.
Imported after the caller puts tests/ on sys.path."""
import re
import socket


def read_raw(s, to_close=False):
    """Bytes of one HTTP answer from the socket s, with the timeout already set on it: until the
    body is as long as its Content-Length says or the server closes (a server may keep the
    connection open after answering, so waiting for the close alone would stall on the timeout).
    to_close: read until the server closes whatever came, to see whether a second answer
    follows. A reset or a timeout ends the read; what came before it is returned."""
    out = b""
    try:
        while True:
            h = out.find(b"\r\n\r\n")
            if h >= 0 and not to_close:
                m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", out[:h])
                if m and len(out) >= h + 4 + int(m.group(1)):
                    break
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (ConnectionResetError, socket.timeout):
        pass
    return out
