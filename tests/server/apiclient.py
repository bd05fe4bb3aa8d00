"""apiclient.py — the v1 API as a client app uses it, for the load test and the API benchmark.

Shared by tests/server/test_api_load.py and tests/bench/bench_api.py: sign-up and pairing,
an upload that honours 503 + Retry-After the way a real client does, sine clips whose
frequency identifies them after transcoding, ffmpeg's verdict on a downloaded clip, the
server's RSS and metrics, and `Waiters`: thousands of long-poll requests held open on
non-blocking sockets (one epoll selector), whose answers are timed as they arrive.
"""
import json
import math
import re
import selectors
import socket
import struct
import subprocess
import tempfile
import time
import wave

from serverlib import request


def bearer(token):
    return [("Authorization", f"Bearer {token}")]


def post_json(srv, path, obj, headers=()):
    return request(srv, "POST", path, json.dumps(obj).encode(),
                   headers=[("Content-Type", "application/json")] + list(headers))


def signup(srv, family, member):
    r = post_json(srv, "/v1/families", {"family_name": family, "member_name": member})
    if r is None or r.status != 201:
        raise RuntimeError(f"sign-up: {r and r.status} {r and r.body[:200]!r}")
    return r.json()


def pair(srv, parent, role, name):
    """A new device for a new member of parent's family (pairing code, then /v1/pair)."""
    fam = parent["family"]["id"]
    r = post_json(srv, f"/v1/families/{fam}/pairing-codes", {"role": role, "member_name": name},
                  headers=bearer(parent["token"]))
    if r is None or r.status != 201:
        raise RuntimeError(f"pairing code: {r and r.status} {r and r.body[:200]!r}")
    p = post_json(srv, "/v1/pair", {"code": r.json()["code"], "device_name": name})
    if p is None or p.status != 201:
        raise RuntimeError(f"pair: {p and p.status} {p and p.body[:200]!r}")
    return p.json()


def upload_once(srv, token, fam, data, key=None, timeout=120):
    hdrs = bearer(token) + ([("Idempotency-Key", key)] if key else [])
    return request(srv, "POST", f"/v1/families/{fam}/messages", data, headers=hdrs,
                   timeout=timeout)


def upload(srv, token, fam, data, key, deadline_s=90, timeout=120):
    """Uploads until the server answers something other than 503, sleeping Retry-After between
    tries as a client app does. Returns (final response, number of 503s seen)."""
    busy = 0
    end = time.time() + deadline_s
    while True:
        r = upload_once(srv, token, fam, data, key, timeout)
        if r is None or r.status != 503 or time.time() > end:
            return r, busy
        busy += 1
        time.sleep(float(r.header("Retry-After") or 1))


def list_all(srv, token, fam):
    """Every message of the family in its latest state, following `seq` page by page."""
    out, since = {}, 0
    while True:
        r = request(srv, "GET", f"/v1/families/{fam}/messages?since={since}",
                    headers=bearer(token), timeout=30)
        if r is None or r.status != 200:
            raise RuntimeError(f"list: {r and r.status} {r and r.body[:200]!r}")
        j = r.json()
        for m in j["messages"]:
            out[m["id"]] = m
        if not j["messages"] or j["seq"] <= since:
            return out
        since = j["seq"]


def sine_wav(path, freq, seconds, rate=16000, amplitude=0.3):
    """A mono 16-bit sine: after transcoding, its zero crossings name the upload it was."""
    n = int(rate * seconds)
    frames = struct.pack(f"<{n}h", *(int(amplitude * 32767 * math.sin(2 * math.pi * freq * i /
                                                                        rate)) for i in range(n)))
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    with open(path, "rb") as f:
        return f.read()


def decode(ogg_bytes, rate=48000):
    """ffmpeg's decode of an Ogg Opus clip: (problems, seconds, frequency in Hz).

    problems is ffmpeg's stderr at -v error plus its exit status (empty when it decoded
    cleanly); the frequency comes from the zero crossings of the middle half, so a clip
    fades in or out (the codec's limiter) without moving it."""
    with tempfile.NamedTemporaryFile(suffix=".ogg") as f:
        f.write(ogg_bytes)
        f.flush()
        p = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", f.name, "-f", "s16le",
                            "-ac", "1", "-ar", str(rate), "-"], capture_output=True)
    problems = p.stderr.decode("utf-8", "replace").strip()
    if p.returncode != 0:
        problems += f" (exit {p.returncode})"
    n = len(p.stdout) // 2
    pcm = struct.unpack(f"<{n}h", p.stdout[:2 * n]) if n else ()
    mid = pcm[n // 4: 3 * n // 4]
    crossings = sum(1 for a, b in zip(mid, mid[1:]) if (a < 0) != (b < 0))
    freq = crossings / 2 / (len(mid) / rate) if len(mid) > rate // 10 else 0.0
    return problems, n / rate, freq


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_head(s):
    """Bytes from socket s until a response head is in (or the connection closes): the head
    and what followed it."""
    got = b""
    while b"\r\n\r\n" not in got:
        d = s.recv(4096)
        if not d:
            break
        got += d
    return got


def slow_export(srv, who, fam):
    """A family's export read through a small window: the socket and its first bytes (the
    head and what came with it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", srv.port))
    s.settimeout(30)
    s.sendall((f"GET /v1/families/{fam}/export HTTP/1.1\r\nHost: t\r\n"
               f"Authorization: Bearer {who['token']}\r\n\r\n").encode())
    return s, read_head(s)

def metric(srv, name):
    r = request(srv, "GET", "/metrics", timeout=30)
    m = re.search(rf"^{name} ([0-9.e+]+)$", r.body.decode(), re.M) if r else None
    return float(m.group(1)) if m else None


class Waiter:
    __slots__ = ("sock", "group", "buf", "sent_at", "done_at", "status", "body")

    def __init__(self, sock, group):
        self.sock, self.group, self.buf = sock, group, b""
        self.sent_at = self.done_at = self.status = self.body = None


class Waiters:
    """n keep-alive connections to srv, each able to hold one long-poll at a time.

    open() connects them (blocking connects, in order: the listen backlog never overflows);
    ask() sends each its GET; collect() reads answers as they come and stamps each with
    time.perf_counter() the moment its last byte is read."""

    def __init__(self, srv):
        self.srv, self.conns = srv, []
        self.sel = selectors.DefaultSelector()  # epoll: select() stops at 1024 descriptors

    def open(self, n, groups):
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", self.srv.port), timeout=30)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self.conns.append(Waiter(s, groups(i)))

    def ask(self, request_for):
        """Sends request_for(waiter) (bytes) on every connection; registers them for reading."""
        for w in self.conns:
            req = request_for(w)
            w.sent_at, w.done_at, w.status, w.body = time.perf_counter(), None, None, None
            if w.sock.send(req) != len(req):  # a few hundred bytes: the socket takes them all
                raise IOError("short send of a long-poll request")
            self.sel.register(w.sock, selectors.EVENT_READ, w)

    def answered(self):
        return [w for w in self.conns if w.done_at is not None]

    def collect(self, until, stop=lambda: False):
        """Reads answers until every connection has one, until perf_counter() passes until,
        or until stop() is true (checked between reads). A connection the server closed
        counts as answered with status 0."""
        pending = sum(1 for w in self.conns if w.done_at is None)
        while pending and time.perf_counter() < until and not stop():
            for key, _ in self.sel.select(min(0.2, max(0.0, until - time.perf_counter()))):
                w = key.data
                try:
                    d = w.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionError:
                    d = b""
                now = time.perf_counter()
                if d:
                    w.buf += d
                    m = re.match(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(.*?)\r\n\r\n",
                                 w.buf, re.S)
                    if not m:
                        continue
                    cl = re.search(rb"(?im)^content-length: *(\d+)", m.group(2))
                    need = m.end() + (int(cl.group(1)) if cl else 0)
                    if len(w.buf) < need:
                        continue
                    w.status, w.body = int(m.group(1)), w.buf[m.end():need]
                    w.buf = w.buf[need:]
                else:
                    w.status, w.body = 0, b""
                w.done_at = now
                self.sel.unregister(w.sock)
                pending -= 1
        return pending

    def close(self):
        for w in self.conns:
            try:
                self.sel.unregister(w.sock)
            except (KeyError, ValueError):
                pass
            w.sock.close()
        self.conns = []
        self.sel.close()


def wait_parked(srv, expect_conns, timeout_s):
    """Until the server holds expect_conns open connections (besides the metrics probe) with
    no job queued or running: every long-poll has run its first list and is parked. Returns
    the seconds it took, or None on timeout."""
    t0 = time.time()
    stable = 0
    while time.time() - t0 < timeout_s:
        conns = metric(srv, "jiayin_connections_open")
        jobs = metric(srv, "jiayin_jobs_queued")
        stable = stable + 1 if conns is not None and conns >= expect_conns + 1 and jobs == 0 \
            else 0
        if stable >= 3:
            return time.time() - t0
        time.sleep(0.1)
    return None
