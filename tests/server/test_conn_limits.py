#!/usr/bin/env python3
"""test_conn_limits.py — what one client can hold of the server, and for how long (TAP).

usage: test_conn_limits.py JIAYIN_TEST_BINARY

Starts jiayin-test (the real server plus tests/server/echo_routes.c) on loopback and checks the
connection layer's answers to a review's findings:
4. SIGTERM while a claimed upload's route is still checking its caller: the answer says
   Connection: close (the claim used to turn keep-alive back on).
"""
import hashlib
import os
import re
import signal
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import Reader, Server, request  # noqa: E402
from tap import finish, ok  # noqa: E402

SLOT = 256 * 1024
BIG = 4 * 1024 * 1024  # more than the kernel's socket buffers hold for a slow reader


def static_root():
    root = tempfile.mkdtemp(prefix="jiayin-conn-static-")
    os.makedirs(os.path.join(root, "assets"))
    big = os.urandom(BIG)
    with open(os.path.join(root, "assets", "big.bin"), "wb") as f:
        f.write(big)
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(b"<!doctype html><title>t</title>")
    return root, big


def start(binary, *args):
    """A server, or None (reported) when it does not start: each part goes on without it."""
    try:
        return Server(binary, *args)
    except RuntimeError as e:
        ok(False, f"the server starts with {' '.join(args)}", str(e)[-500:])
        return None


def connect(srv, source="127.0.0.1", rcvbuf=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", srv.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def ask(srv, path, source="127.0.0.1", headers=(), method="GET", timeout=10.0):
    """One request on its own connection from source; the whole response."""
    s = connect(srv, source, timeout=timeout)
    try:
        h = "".join(f"{k}: {v}\r\n" for k, v in headers)
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\n{h}Connection: close\r\n\r\n"
                  .encode())
        return Reader(s).response(head_request=(method == "HEAD"))
    finally:
        s.close()


def stalled(srv, path, source="127.0.0.1", headers=()):
    """A GET whose client never reads past the head: (socket, status of the answer)."""
    s = connect(srv, source, rcvbuf=1024)
    h = "".join(f"{k}: {v}\r\n" for k, v in headers)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{h}\r\n".encode())
    head = b""
    while b"\r\n" not in head:
        d = s.recv(1)
        if not d:
            return s, None
        head += d
    m = re.match(rb"HTTP/1\.1 (\d+)", head)
    return s, int(m.group(1)) if m else None


def metric(srv, name):
    r = request(srv, "GET", "/metrics")
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", r.body.decode(), re.M)
    return int(m.group(1)) if m else None


def wait_metric(srv, name, want, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if metric(srv, name) == want:
            return True
        time.sleep(0.05)
    return metric(srv, name) == want


def close_all(socks):
    for s in socks:
        s.close()
    socks.clear()


# ---------------------------------------------------------------------------------------------
def drain_claim(binary):
    srv = start(binary, "--threads", "1", "--signups-per-hour", "100",
                "--shutdown-grace-ms", "20000")
    if not srv:
        return
    socks = []
    try:
        r = request(srv, "POST", "/v1/families",
                    b'{"family_name":"f","member_name":"m"}',
                    headers=[("Content-Type", "application/json")])
        token = r.json()["token"]
        fam = r.json()["family"]["id"]
        import base64
        meta = "family_id " + base64.b64encode(fam.encode()).decode()
        auth = [("Authorization", f"Bearer {token}"), ("Tus-Resumable", "1.0.0")]
        c = request(srv, "POST", "/v1/uploads",
                    headers=auth + [("Upload-Length", "5000"), ("Upload-Metadata", meta)])
        loc = c.header("Location")
        # The only pool thread is busy for 2 s, so the PATCH's check of its caller waits, and
        # SIGTERM comes before the PATCH claims its body.
        a = connect(srv, timeout=15)
        socks.append(a)
        a.sendall(b"POST /echo?work=2000 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        time.sleep(0.2)
        b = connect(srv, timeout=15)
        socks.append(b)
        b.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
                   "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                   "Upload-Offset: 0\r\nContent-Length: 1000\r\n\r\n").encode() + b"d" * 1000)
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        ra = Reader(a).response()
        rb_reader = Reader(b)
        rb = rb_reader.response()
        ok(ra is not None and ra.status == 200 and (ra.header("Connection") or "") == "close",
           "SIGTERM: the request in flight is answered with Connection: close",
           f"{ra and ra.status} {ra and ra.headers}")
        ok(rb is not None and rb.status == 204 and rb.header("Upload-Offset") == "1000"
           and (rb.header("Connection") or "") == "close",
           "SIGTERM before a PATCH claimed its body: the body is taken and the 204 says "
           "Connection: close", f"{rb and rb.status} {rb and rb.headers}")
        ok(rb_reader.closed(5), "and that connection is closed after it")
        rc = srv.proc.wait(timeout=20)
        ok(rc == 0, "the server then exits 0", f"exit {rc}")
    finally:
        close_all(socks)
        srv.stop()


def main():
    binary = sys.argv[1]
    drain_claim(binary)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
