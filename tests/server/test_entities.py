#!/usr/bin/env python3
"""test_entities.py — what the HTTP engine serves from storage and disk, end to end (TAP).

usage: test_entities.py JIAYIN_TEST_BINARY

Starts jiayin-test (the real server plus tests/server/echo_routes.c, whose /clips stores and
serves a clip through the audio path) on loopback and checks: a stored clip comes back intact
with its validators; every conditional (If-None-Match, If-Modified-Since, If-Match,
If-Unmodified-Since, If-Range) and Range form gets the status and bytes RFC 9110 asks for; a
2 MiB clip streams in chunks and keeps the connection alive; a slow reader gets every byte
without holding up others. The static directory (--static-dir) serves the web client's files
with their types, validators and ranges, refuses hidden files, symlinks, traversal and FIFOs,
and a missing directory stops the start.
"""
import concurrent.futures
import io
import json
import math
import os
import socket
import struct
import subprocess
import sys
import time
import wave
from email.utils import parsedate_to_datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import Reader, Server, request, scratch_dir  # noqa: E402
from tap import finish, ok  # noqa: E402

FAST = ["--head-timeout-ms", "1000", "--body-idle-ms", "1000", "--keepalive-ms", "1500"]

def short_wav():
    """0.7 s of a 440 Hz tone, 16 kHz mono 16-bit: a quick upload."""
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 16000)))
                      for i in range(11200))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(frames)
    return buf.getvalue()


def get(srv, path, headers=(), method="GET"):
    return request(srv, method, path, headers=headers, timeout=20)


def entities(binary):
    srv = Server(binary, *FAST)
    try:
        clip = os.urandom(150 * 1024)
        r = request(srv, "POST", "/clips", clip)
        ids = r.json()
        path = f"/clips/{ids['family']}/{ids['message']}"
        g = get(srv, path)
        etag, lm = g.header("ETag"), g.header("Last-Modified")
        ok(g.status == 200 and g.body == clip and g.header("Content-Type") == "audio/ogg" and
           g.header("Accept-Ranges") == "bytes" and etag and etag.startswith('"') and lm and
           "private" in (g.header("Cache-Control") or ""),
           "stored clip: 200 with the exact bytes, ETag, Last-Modified, Accept-Ranges")
        h = get(srv, path, method="HEAD")
        ok(h.status == 200 and h.body == b"" and int(h.header("Content-Length")) == len(clip)
           and h.header("ETag") == etag, "stored clip: HEAD has the headers and no body")
        # Last-Modified is never after Date: Date is made once a second, so a message's audio
        # fetched within a second of its making (a long-poll woke the phone) was Last-Modified
        # up to a second after the Date of its answer (RFC 9110 8.8.2.1 forbids it)
        r = request(srv, "POST", "/v1/families", json.dumps(
            {"family_name": "王家", "member_name": "妈妈"}).encode(),
            headers=[("Content-Type", "application/json")])
        fam, auth = r.json()["family"]["id"], [("Authorization", f"Bearer {r.json()['token']}")]
        later = []
        for _ in range(12):
            m = request(srv, "POST", f"/v1/families/{fam}/messages", short_wav(),
                        headers=auth, timeout=60)
            g2 = get(srv, f"/v1/families/{fam}/messages/{m.json()['message']['id']}/audio",
                     headers=auth, method="HEAD")
            lm2, date2 = g2.header("Last-Modified"), g2.header("Date")
            if not (m.status == 201 and lm2 and date2 and
                    parsedate_to_datetime(lm2) <= parsedate_to_datetime(date2)):
                later.append((m.status, lm2, date2))
            time.sleep(0.05)
        ok(not later, "a message's audio fetched at once: Last-Modified is not after Date",
           str(later))
        n = len(clip)
        cases = [
            ([("If-None-Match", etag)], 304, None),
            ([("If-None-Match", '"other", ' + etag)], 304, None),
            ([("If-None-Match", "W/" + etag)], 304, None),
            ([("If-None-Match", "*")], 304, None),
            ([("If-None-Match", '"other"')], 200, clip),
            ([("If-Modified-Since", lm)], 304, None),
            ([("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")], 200, clip),
            ([("If-Modified-Since", "yesterday")], 200, clip),
            ([("If-None-Match", '"other"'), ("If-Modified-Since", lm)], 200, clip),
            ([("If-Match", '"other"')], 412, None),
            ([("If-Match", etag)], 200, clip),
            ([("If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")], 412, None),
            ([("Range", "bytes=0-99")], 206, clip[:100]),
            ([("Range", "bytes=100-")], 206, clip[100:]),
            ([("Range", "bytes=-500")], 206, clip[-500:]),
            ([("Range", "bytes=0-0")], 206, clip[:1]),
            ([("Range", f"bytes={n - 1}-")], 206, clip[-1:]),
            ([("Range", "bytes=1000-99999999")], 206, clip[1000:]),
            # past 2^64, and leading zeros: numbers all the same (RFC 9110 14.1.1), where
            # a 20th digit made it unread and the whole clip was sent again
            ([("Range", "bytes=1000-99999999999999999999")], 206, clip[1000:]),
            ([("Range", "bytes=-99999999999999999999")], 206, clip),
            ([("Range", "bytes=0000000000000000000001000-")], 206, clip[1000:]),
            ([("Range", "bytes=99999999999999999999-")], 416, None),
            ([("Range", f"bytes={n}-")], 416, None),
            ([("Range", "bytes=-0")], 416, None),
            ([("Range", "bytes=0-1,5-6")], 200, clip),
            ([("Range", "bytes=abc")], 200, clip),
            ([("Range", "bytes=5-1")], 200, clip),
            ([("Range", "items=0-1")], 200, clip),
            ([("Range", "bytes=10-19"), ("If-Range", etag)], 206, clip[10:20]),
            ([("Range", "bytes=10-19"), ("If-Range", '"stale"')], 200, clip),
            ([("Range", "bytes=10-19"), ("If-Range", lm)], 206, clip[10:20]),
            ([("Range", "bytes=10-19"), ("If-Range", "Sat, 01 Jan 2000 00:00:00 GMT")], 200,
             clip),
        ]
        for hdrs, status, body in cases:
            g = get(srv, path, hdrs)
            good = g.status == status and (body is None or g.body == body)
            if status == 206:
                lo = clip.find(body) if len(body) > 1 else (n - 1 if hdrs[0][1] ==
                                                            f"bytes={n - 1}-" else 0)
                good = good and g.header("Content-Range") == \
                    f"bytes {lo}-{lo + len(body) - 1}/{n}"
            if status == 416:
                good = good and g.header("Content-Range") == f"bytes */{n}"
            if status == 304:
                good = good and g.body == b"" and g.header("ETag") == etag and \
                    g.header("Content-Length") is None
            ok(good, f"stored clip: {'; '.join(f'{k}: {v}' for k, v in hdrs)} -> {status}",
               f"got {g.status} {g.headers}")
        # more than one chunk, a range across chunk boundaries, keep-alive after streams
        big = os.urandom(2 * 1024 * 1024 + 12345)
        ids2 = request(srv, "POST", "/clips", big, timeout=30).json()
        path2 = f"/clips/{ids2['family']}/{ids2['message']}"
        s = srv.connect(timeout=20)
        rd = Reader(s)
        s.sendall(f"GET {path2} HTTP/1.1\r\nHost: t\r\n\r\n"
                  f"GET {path2} HTTP/1.1\r\nHost: t\r\nRange: bytes=200000-600000\r\n\r\n"
                  f"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        a, b, c = rd.response(), rd.response(), rd.response()
        ok(a.status == 200 and a.body == big and b.status == 206 and
           b.body == big[200000:600001] and c.status == 200,
           "a 2 MiB clip streams in chunks, intact; a range across chunks; keep-alive after")
        s.close()
        # a slow reader gets every byte, and does not hold up others
        s = srv.connect(timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(f"GET {path2} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        time.sleep(0.5)
        t = time.perf_counter()
        others = [get(srv, "/healthz").status for _ in range(20)]
        fast = time.perf_counter() - t
        data = b""
        while True:
            d = s.recv(8192)
            if not d:
                break
            data += d
            if len(data) < 300000:
                time.sleep(0.001)
        s.close()
        body = data.split(b"\r\n\r\n", 1)[1]
        ok(body == big and others == [200] * 20 and fast < 2,
           f"a slow reader gets all {len(big)} bytes; 20 other requests meanwhile took "
           f"{fast * 1000:.0f} ms")
        g = get(srv, f"/clips/{ids['family']}/{'A' * 26}")
        ok(g.status == 404 and g.json()["error"]["code"] == "not_found",
           "an unknown message is 404 not_found")
        g = get(srv, f"/clips/{ids['family']}/..%2f..%2fetc")
        ok(g.status == 404, "a malformed message id is 404")
    finally:
        rc = srv.stop()
    ok(rc == 0, "entities: clean exit")


def static_files(binary):
    root = scratch_dir("jiayin-static-")
    os.makedirs(os.path.join(root, "assets", "img"))
    index = "<!doctype html><title>家音</title>".encode()
    app = b"console.log('hi');\n" * 50
    img = os.urandom(300 * 1024)
    for name, data in (("index.html", index), ("assets/app.js", app),
                       ("assets/img/a.png", img), ("assets/.secret", b"secret")):
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    os.symlink("/etc/passwd", os.path.join(root, "assets", "link"))
    srv = Server(binary, *FAST, "--static-dir", root)
    try:
        g = get(srv, "/")
        ok(g.status == 200 and g.body == index and g.header("Content-Type").startswith(
           "text/html") and "'self'" in g.header("Content-Security-Policy") and
           "frame-ancestors 'none'" in g.header("Content-Security-Policy"),
           "static: / is index.html, with the HTML content security policy")
        g = get(srv, "/assets/app.js")
        etag = g.header("ETag")
        ok(g.status == 200 and g.body == app and g.header("Content-Type").startswith(
           "text/javascript") and etag and g.header("Last-Modified"),
           "static: a script with its type, ETag and Last-Modified")
        ok(get(srv, "/assets/app.js", [("If-None-Match", etag)]).status == 304,
           "static: If-None-Match gives 304")
        r = get(srv, "/assets/app.js", [("Range", "bytes=5-9")])
        ok(r.status == 206 and r.body == app[5:10], "static: a range")
        h = get(srv, "/assets/app.js", method="HEAD")
        ok(h.status == 200 and h.body == b"" and int(h.header("Content-Length")) == len(app),
           "static: HEAD")
        g = get(srv, "/assets/img/a.png")
        ok(g.status == 200 and g.body == img and g.header("Content-Type") == "image/png",
           "static: a 300 KiB image in a subdirectory, in two parts, intact")
        # Last-Modified is never after Date (a file written within the Date's second, or
        # with a clock ahead: here an hour ahead)
        later = os.path.join(root, "assets", "later.js")
        with open(later, "wb") as f:
            f.write(app)
        os.utime(later, (time.time() + 3600, time.time() + 3600))
        g = get(srv, "/assets/later.js")
        lm, date = g.header("Last-Modified"), g.header("Date")
        ok(g.status == 200 and lm and date and
           parsedate_to_datetime(lm) <= parsedate_to_datetime(date),
           f"static: Last-Modified is not after Date ({lm} / {date})")
        # If-Range with a date whose weekday starts with W (a Wednesday) is a date, not a
        # weak entity tag: a resumed download of a file modified on a Wednesday got all of it
        wed = os.path.join(root, "assets", "wed.js")
        with open(wed, "wb") as f:
            f.write(app)
        os.utime(wed, (1735689600, 1735689600))  # Wed, 01 Jan 2025 00:00:00 GMT
        lm = get(srv, "/assets/wed.js").header("Last-Modified")
        r = get(srv, "/assets/wed.js", [("Range", "bytes=5-9"), ("If-Range", lm)])
        ok(lm == "Wed, 01 Jan 2025 00:00:00 GMT" and r.status == 206 and r.body == app[5:10],
           f"static: If-Range with a Wednesday's date gives the range ({lm}: {r.status})")
        for bad in ("/assets/.secret", "/assets/link", "/assets/../index.html",
                    "/assets/img/../app.js", "/assets/img", "/assets/nope.js",
                    "/assets/%2e%2e/index.html", "/assets//app.js", "/assets/app.js/"):
            g = get(srv, bad)
            ok(g.status in (400, 404), f"static: {bad} is refused ({g.status})")
        # A FIFO in the directory: opening it waited for a writer and held a pool thread for
        # ever (the review: six requests held all four, and every family's list timed out).
        fifo = os.path.join(root, "assets", "pipe.txt")
        os.mkfifo(fifo)
        t0 = time.time()
        def status(path):  # None: no answer within 5 s
            try:
                r = request(srv, "GET", path, timeout=5)
            except OSError:
                return None
            return r.status if r else None
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: status("/assets/pipe.txt"), range(6)))
        after = status("/assets/app.js")
        ok(codes == [404] * 6 and after == 200 and time.time() - t0 < 5,
           f"static: a FIFO is 404 at once and holds no thread ({codes}, then {after}, "
           f"{time.time() - t0:.2f} s)")
    finally:
        fifo = os.path.join(root, "assets", "pipe.txt")
        if os.path.exists(fifo):  # frees threads an old build left waiting on it
            try:
                for _ in range(6):
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        srv.stop()
    srv = Server(binary, *FAST)
    try:
        ok(get(srv, "/").status == 404, "static: without static-dir, / is 404")
    finally:
        srv.stop()
    bad = subprocess.run([binary, "--static-dir", "/nonexistent", "--listen", "127.0.0.1:0"],
                         capture_output=True, text=True, timeout=20)
    ok(bad.returncode == 70 and "static-dir" in bad.stderr,
       "a static-dir that does not exist stops the start (exit 70)")

def documented_codes():
    """The error table of docs/api.md: {code: statuses}; a `storage_*` row covers its prefix."""
    here = os.path.dirname(os.path.abspath(__file__))
    table = {}
    with open(os.path.join(here, "..", "..", "docs", "api.md"), encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.split("|")]
            if len(cells) > 3 and cells[1].startswith("`") and cells[2][:1].isdigit():
                for code in cells[1].replace("`", "").split(","):
                    table[code.strip()] = cells[2]
    return table


def storage_errors(binary):
    """Every error storage can return reaches a client as a status and code docs/api.md lists,
    with Retry-After on a 503; conflict, changed and limit_reached, which
    endpoints that meet them answer themselves, were 503 with codes no client knew."""
    table = documented_codes()
    srv = Server(binary, *FAST)
    try:
        for n in range(1, 16):
            r = get(srv, f"/storage-failed/{n}")
            code = r.json()["error"]["code"]
            row = table.get(code) or table.get("storage_*" if code.startswith("storage_")
                                               else code)
            ok(row is not None and str(r.status) in row and
               (r.status != 503 or r.header("Retry-After")),
               f"storage error -{n}: {r.status} {code} is in docs/api.md's table",
               f"row {row!r}, Retry-After {r.header('Retry-After')}")
    finally:
        srv.stop()


def main():
    binary = sys.argv[1]
    for part in (entities, static_files, storage_errors):
        try:
            part(binary)
        except Exception as e:  # a crash of the harness is a failure, not a stop
            ok(False, f"{part.__name__} ran to the end", repr(e))
    return finish()


if __name__ == "__main__":
    sys.exit(main())
