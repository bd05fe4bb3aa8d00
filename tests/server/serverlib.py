"""serverlib.py — start a jiayin (or jiayin-test) on a free loopback port and talk raw HTTP.

Shared by the end-to-end server tests. The server is started with port 0 and the port is read
from its first log line; stderr is kept in a file so a failing test can show it. What a test
run makes in the temporary directory (each server's data and log, scratch_dir's) is removed
when it ends, and a server still running then is killed; JIAYIN_KEEP_TMP=1 keeps the files to
look at (they were always kept: a full run left hundreds of directories, tens of MiB each).
"""
import atexit
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

_scratch = []  # directories this run made, removed at its end
_servers = []  # servers started, killed at the end if still running


def scratch_dir(prefix):
    """A new temporary directory, removed when the test run ends (unless JIAYIN_KEEP_TMP)."""
    d = tempfile.mkdtemp(prefix=prefix)
    _scratch.append(d)
    return d


@atexit.register
def _clean_up():
    for srv in _servers:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    if not os.environ.get("JIAYIN_KEEP_TMP"):
        for d in _scratch:
            shutil.rmtree(d, ignore_errors=True)


# Damm's table: the check digit that ends a pairing code (server/api_pairing.c).
DAMM = ((0, 3, 1, 7, 5, 9, 8, 6, 4, 2), (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
        (4, 2, 0, 6, 8, 7, 1, 3, 5, 9), (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
        (6, 1, 2, 3, 0, 4, 5, 9, 7, 8), (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
        (5, 8, 6, 9, 7, 2, 0, 1, 3, 4), (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
        (9, 4, 3, 8, 6, 1, 7, 2, 0, 5), (2, 5, 8, 1, 4, 3, 6, 7, 9, 0))


def damm(digits):
    """0 for a string of digits whose last one checks the others."""
    c = 0
    for d in digits:
        c = DAMM[c][int(d)]
    return c


def pairing_code(n):
    """A well-formed pairing code (15 digits of n, then the one that checks them): what a
    guesser sends, a wrong code the locks count."""
    return f"{n:015d}" + str(damm(f"{n:015d}"))


def until(check, timeout=10.0, step=0.05):
    """check() again and again until it is true or timeout seconds have passed: its last value.
    For what the server does a moment after it answers (a log line, a reopened file): a fixed
    sleep was a race a loaded machine could lose, and what never comes still fails the check
    made of this value, at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(step)


def unanswered(sock):
    """True while nothing has come back on sock, no answer and no close: its request is still
    the server's. What a test checks before it changes something 'while' that request is in
    hand: the metric it waited for may never have come (until() gives up and says so), or the
    request may have been answered meanwhile, and the change then tests nothing."""
    return not select.select([sock], [], [], 0)[0]


def log_lines(path):
    """The whole lines of the log at path ("" while there is none): a read during the server's
    flush may end in the middle of one."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return text[:text.rfind("\n") + 1]


def wait_for_log(path, found, timeout=10.0):
    """The log at path (its whole lines) once found(text) is true of it, found being a function
    or a string the text holds; as it is at the deadline if never, and the caller's check of it
    fails then. The server writes an event line at once and request lines at its flush, once a
    second: a fixed 1.3 s sleep before the read left 0.3 s to a loaded machine."""
    test = (lambda text: found in text) if isinstance(found, str) else found
    deadline = time.monotonic() + timeout
    while True:
        text = log_lines(path)
        if test(text) or time.monotonic() >= deadline:
            return text
        time.sleep(0.05)


def logged_id(r, logfmt=False):
    """What the request log line of the request answered by r holds: its id, as the answer's
    X-Request-Id gives it. Waited for, it says every line before it is written too."""
    rid = r.header("X-Request-Id")
    return f"id={rid} " if logfmt else f'"id":"{rid}"'


class Server:
    def __init__(self, binary, *args, data=None, env=None):
        """env: variables the server gets on top of this process's (a preloaded library)."""
        self.tmp = scratch_dir("jiayin-e2e-")
        self.data = data or os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--data", self.data, *args],
            stdout=subprocess.DEVNULL, stderr=self.log,
            env={**os.environ, **env} if env else None)
        _servers.append(self)
        self.port = None
        deadline = time.time() + 20
        while time.time() < deadline and self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited at start: " + self.log_text())
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log_text())
            if m:
                self.port = int(m.group(1))
            else:
                time.sleep(0.02)
        if self.port is None:
            raise RuntimeError("server did not start: " + self.log_text())

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, found, timeout=10.0):
        """wait_for_log on this server's stderr, where its log goes unless --log-file."""
        return wait_for_log(self.log_path, found, timeout)

    def connect(self, timeout=5.0):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        return rc


class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class Reader:
    """Reads HTTP/1.1 responses (Content-Length framed, as jiayin sends them) from a socket."""

    def __init__(self, sock):
        self.sock, self.buf, self.eof = sock, b"", False
        self.timed_out = False  # the socket's timeout, not the server, ended the reading

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except ConnectionResetError:
            d = b""
        except (socket.timeout, TimeoutError):
            d, self.timed_out = b"", True
        if not d:
            self.eof = True
        self.buf += d
        return bool(d)

    def response(self, head_request=False):
        """The next response, or None when the connection closed (or timed out) first."""
        while b"\r\n\r\n" not in self.buf:
            if self.eof or not self._fill():
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
        r = Response(status, parts[2] if len(parts) > 2 else "", headers, b"")
        if status == 100:
            return self.response(head_request)
        n = int(r.header("Content-Length") or 0)
        if head_request:
            n = 0
        while len(self.buf) < n:
            if self.eof or not self._fill():
                raise IOError("connection closed inside a body")
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r

    def closed(self, timeout):
        """True when the server closes the connection within timeout (no more bytes)."""
        self.sock.settimeout(timeout)
        while not self.eof:
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError,):
                return True
            except (socket.timeout, TimeoutError):
                return False
            if not d:
                return True
            self.buf += d
        return not self.timed_out  # an earlier read that timed out is no close


def request(server, method, path, body=b"", headers=(), timeout=5.0):
    s = server.connect(timeout)
    try:
        h = "".join(f"{k}: {v}\r\n" for k, v in headers)
        if body or method in ("POST", "PUT"):
            h += f"Content-Length: {len(body)}\r\n"
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\n{h}Connection: close\r\n\r\n"
                  .encode() + body)
        return Reader(s).response(head_request=(method == "HEAD"))
    finally:
        s.close()


def each_read_failing(binary, data, preload, table, act, check, most=20):
    """A sector of the directory that fails to read (EIO): the page of `table` (its root page,
    a small table's only one) in a stopped server's `data`, failing through preload
    (tests/tools/eio_preload.c) from its first read on, then from its second, and so on. Each
    time on a copy of `data`: act(srv) is answered by a server under the fault, then the disk
    is well again and check(srv, answer) looks at what is left, on a server started again
    without it: (whether it is right, what it saw). Until an answer is no error (the reads the
    request makes are all behind it). [(status, right, saw), ...] for each."""
    db = os.path.join(data, "directory.db")
    con = sqlite3.connect(f"file:{db}?immutable=1", uri=True)  # no -wal beside it
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (table,)).fetchone()[0]
    at = (root - 1) * con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    runs = []
    for passes in range(most):
        copy = os.path.join(scratch_dir("jiayin-eio-"), "data")
        shutil.copytree(data, copy)
        env = {"LD_PRELOAD": preload, "JIAYIN_EIO_FILE": os.path.join(copy, "directory.db"),
               "JIAYIN_EIO_AT": str(at), "JIAYIN_EIO_PASS": str(passes),
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
               ":verify_asan_link_order=0"}
        srv = Server(binary, data=copy, env=env)
        try:
            answer = act(srv)
        finally:
            srv.stop()
        srv = Server(binary, data=copy)
        try:
            right, saw = check(srv, answer)
        finally:
            srv.stop()
        runs.append((answer.status, right, saw))
        if answer.status < 400:
            break
    return runs


def each_read_verdict(runs, status):
    """each_read_failing's verdict: every run right, the fault met at least once (more than one
    run), and the last run answered `status` (the request's reads all behind the fault); and
    what each run saw, a line each, for the failure's detail."""
    return (all(right for _, right, _ in runs) and len(runs) > 1 and runs[-1][0] == status,
            "\n".join(f"{got}: {saw}" for got, _, saw in runs))


def audit_count(data, action):
    """How many records of `action` the audit log in data's directory.db holds (read only)."""
    db = sqlite3.connect(f"file:{os.path.join(data, 'directory.db')}?mode=ro", uri=True)
    try:
        return db.execute("SELECT count(*) FROM audit_log WHERE action = ?",
                          (action,)).fetchone()[0]
    finally:
        db.close()


def add_kiosk(data):
    """A school and a kiosk with a device token, as jiayinctl makes them (the store's rows)."""
    import base64
    import hashlib
    import secrets
    import time
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

    def new_id():
        return "".join(secrets.choice(alphabet) for _ in range(26))
    now = int(time.time() * 1000)
    school, kiosk, device = new_id(), new_id(), new_id()
    token = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    db = sqlite3.connect(os.path.join(data, "directory.db"), timeout=10)
    db.execute("INSERT INTO schools (id, name, created_ms) VALUES (?, ?, ?)", (school, "s", now))
    db.execute("INSERT INTO kiosks (id, school_id, name, created_ms) VALUES (?, ?, ?, ?)",
               (kiosk, school, "k", now))
    db.execute("INSERT INTO devices (id, token_hash, kind, kiosk_id, name, created_ms) "
               "VALUES (?, ?, 'kiosk', ?, 'k', ?)",
               (device, hashlib.sha256(token.encode()).digest(), kiosk, now))
    db.commit()
    db.close()
    return token
