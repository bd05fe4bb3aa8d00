#!/usr/bin/env python3
"""test_conn_limits.py — what one client can hold of the server, and for how long (TAP).

usage: test_conn_limits.py JIAYIN_TEST_BINARY

Starts jiayin-test (the real server plus tests/server/echo_routes.c) on loopback and checks the
connection layer's answers to a review's findings:
3. body-min-rate over a sliding window (body-rate-window-ms): a body that sent 2 MB at once and
   then drips is cut within the window (plain and claimed bodies), a steady slow one is not.
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
def body_window(binary):
    srv = start(binary, "--body-idle-ms", "3000", "--body-min-rate", "512",
                "--body-rate-window-ms", "2000", "--signups-per-hour", "100")
    if not srv:
        return
    socks = []
    try:
        # 2 MB at once, then a byte every 0.8 s: far over 512 B/s on average for an hour.
        s = connect(srv, timeout=10)
        socks.append(s)
        s.sendall(b"POST /echo-file HTTP/1.1\r\nHost: t\r\nContent-Length: 3000000\r\n\r\n"
                  + b"a" * 2000000)
        t0 = time.time()
        r = None
        s.settimeout(0.8)
        while time.time() - t0 < 8 and r is None:
            try:
                d = s.recv(65536)
                rd = Reader(s)
                rd.buf = d
                s.settimeout(5)
                r = rd.response() if d else None
                break
            except (socket.timeout, TimeoutError):
                s.sendall(b"a")
        took = time.time() - t0
        ok(r is not None and r.status == 408 and r.json()["error"]["code"] == "body_too_slow"
           and took < 5.5,
           f"2 MB at once then a byte every 0.8 s: 408 body_too_slow within the 2 s window "
           f"({took:.1f} s)", f"{r and r.status} after {took:.1f} s")
        close_all(socks)

        # A steady slow body (about 1 KB/s against a floor of 512) is not cut.
        s = connect(srv, timeout=10)
        socks.append(s)
        n = 250 * 20
        s.sendall(f"POST /echo-file HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\r\n"
                  .encode())
        for _ in range(20):
            time.sleep(0.25)
            s.sendall(b"b" * 250)
        r = Reader(s).response()
        ok(r is not None and r.status == 200 and r.json()["bytes"] == n,
           "a steady body at ~1 KB/s for 5 s (floor 512 B/s, window 2 s) arrives whole",
           f"{r and r.status} {r and r.body}")
        close_all(socks)

        # The same for a claimed body (a resumable upload's PATCH): cut, and its bytes kept.
        r = request(srv, "POST", "/v1/families",
                    b'{"family_name":"f","member_name":"m"}',
                    headers=[("Content-Type", "application/json")])
        token = r.json()["token"]
        fam = r.json()["family"]["id"]
        auth = [("Authorization", f"Bearer {token}"), ("Tus-Resumable", "1.0.0")]
        import base64
        meta = "family_id " + base64.b64encode(fam.encode()).decode()
        c = request(srv, "POST", "/v1/uploads",
                    headers=auth + [("Upload-Length", "3000000"), ("Upload-Metadata", meta)])
        loc = c.header("Location")
        s = connect(srv, timeout=10)
        socks.append(s)
        s.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
                   "Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                   "Upload-Offset: 0\r\nContent-Length: 3000000\r\n\r\n").encode()
                  + b"c" * 2000000)
        t0 = time.time()
        r = None
        s.settimeout(0.8)
        while time.time() - t0 < 8:
            try:
                d = s.recv(65536)
                rd = Reader(s)
                rd.buf = d
                s.settimeout(5)
                r = rd.response() if d else None
                break
            except (socket.timeout, TimeoutError):
                s.sendall(b"c")
        took = time.time() - t0
        h = None
        deadline = time.time() + 10
        while time.time() < deadline:
            h = request(srv, "HEAD", loc, headers=auth)
            if h.status != 423:
                break
            time.sleep(0.05)
        off = int(h.header("Upload-Offset") or -1) if h else -1
        ok(r is not None and r.status == 408 and r.json()["error"]["code"] == "body_too_slow"
           and took < 5.5 and off >= 2000000,
           f"a claimed body that drips after 2 MB is 408 body_too_slow ({took:.1f} s) and "
           f"keeps its bytes (offset {off})", f"{r and r.status} {r and r.body}")
    finally:
        close_all(socks)
        srv.stop()


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
    body_window(binary)
    drain_claim(binary)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
