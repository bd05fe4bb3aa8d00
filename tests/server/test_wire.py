#!/usr/bin/env python3
"""test_wire.py — the bytes a phone's day costs on the wire, held to budgets (TAP).

usage: test_wire.py JIAYIN_BINARY

A grandmother's phone on a metered plan pays for every byte, headers included. What the app
does in a day, on one keep-alive connection with the request headers OkHttp sends (a bearer
token, Accept-Encoding: gzip, its User-Agent), counted byte for byte, request and answer: the
sign-in check, a long-poll that times out with nothing new, one answered by a new message, the
newest 20 messages (varied speech, three senders), a 50 s clip's audio and its revisit (304, by
the bearer token and by a signed URL), a receipt, a resumable upload's chunks, and a 50 s
recording sent as 48 kHz WAV against the same as Ogg Opus. Each figure is printed (a comment)
and held to a budget a little above what it is now, so that a header added to every answer, a
list that stops being gzipped or a revisit that downloads again is seen. The figures, and what
they make of a day, are in docs/performance.md ("Data on the wire").
"""
import base64
import gzip
import io
import json
import os
import random
import struct
import sys
import threading
import time
import wave

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import apiclient as ac  # noqa: E402
from serverlib import Reader, Server  # noqa: E402
from tap import finish, ok  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample.wav")


class Phone:
    """One keep-alive connection that counts what it sends and what it reads."""

    def __init__(self, srv, token):
        self.s = srv.connect(60)
        self.r = Reader(self.s)
        self.token = token

    def ask(self, method, path, body=b"", headers=(), auth=True):
        h = [("Host", "jiayin.example.org")]
        if auth:
            h.append(("Authorization", f"Bearer {self.token}"))
        h += list(headers)
        if body or method in ("POST", "PUT", "PATCH"):
            h.append(("Content-Length", str(len(body))))
        h += [("Connection", "Keep-Alive"), ("Accept-Encoding", "gzip"),
              ("User-Agent", "okhttp/4.12.0")]
        req = (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h)
               + "\r\n").encode()
        self.s.sendall(req + body)
        r = self.r.response(head_request=method == "HEAD")
        r.up = len(req) + len(body)
        r.head = (len(f"HTTP/1.1 {r.status} {r.reason}\r\n") + 2 +
                  sum(len(k) + len(v) + 4 for k, v in r.headers))
        r.down = r.head + len(r.body)
        return r


def figure(name, r):
    print(f"# {name}: {r.status}, up {r.up} B, down {r.down} B (head {r.head}, body "
          f"{len(r.body)})", flush=True)


def plain(r):
    return gzip.decompress(r.body) if r.header("Content-Encoding") == "gzip" else r.body


def speech(seconds, rate, offset=0, gain=1.0):
    """seconds of tests/data/sample.wav (16 kHz speech) from offset on, looped, at rate (a
    multiple of 16 kHz, each sample repeated) and gain: a WAV as a phone records it."""
    with wave.open(SAMPLE) as w:
        pcm = w.readframes(w.getnframes())
    src = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    k = rate // 16000
    n = int(seconds * 16000)
    out = []
    for i in range(n):
        v = max(-32768, min(32767, int(src[(offset + i) % len(src)] * gain)))
        out.extend([v] * k)
    b = io.BytesIO()
    with wave.open(b, "wb") as o:
        o.setnchannels(1)
        o.setsampwidth(2)
        o.setframerate(rate)
        o.writeframes(struct.pack(f"<{len(out)}h", *out))
    return b.getvalue()


def main():
    srv = Server(sys.argv[1])
    try:
        a = ac.signup(srv, "王家", "妈妈")
        b = ac.pair(srv, a, "caregiver", "奶奶")
        c = ac.pair(srv, a, "child", "小明")
        fam = a["family"]["id"]
        msgs = f"/v1/families/{fam}/messages"
        mom, gran = Phone(srv, a["token"]), Phone(srv, b["token"])

        r = gran.ask("GET", "/v1/me")
        figure("sign-in check, GET /v1/me", r)
        ok(r.status == 200 and r.down <= 620,
           f"the sign-in check's answer is {r.down} bytes (budget 620)")

        # A 50 s recording, as a phone records it (48 kHz mono WAV) and as Ogg Opus.
        wav = speech(50, 48000)
        w = mom.ask("POST", msgs, wav, [("Idempotency-Key", "wav"), ("Content-Type", "audio/wav")])
        figure("plain upload, 50 s 48 kHz WAV", w)
        m = json.loads(plain(w))["message"]
        clip = mom.ask("GET", f"{msgs}/{m['id']}/audio")
        o = mom.ask("POST", msgs, clip.body, [("Idempotency-Key", "ogg"),
                                              ("Content-Type", "audio/ogg")])
        figure("plain upload, the same 50 s as Ogg Opus 24 kb/s", o)
        mo = json.loads(plain(o))["message"] if o.status == 201 else {}
        ok(w.status == 201 and o.status == 201 and o.up * 20 < w.up and
           abs(mo.get("bytes", 0) - m["bytes"]) < m["bytes"] // 10,
           f"the recording sent as Ogg Opus costs {o.up} bytes, the WAV {w.up}, and both are "
           f"stored as much the same message ({mo.get('bytes')} and {m['bytes']} bytes)")
        ok(w.down <= 700 and o.down <= 700,
           f"an upload's answer (the message, gzipped) is {w.down} and {o.down} bytes "
           "(budget 700)")

        # The newest 20 messages: varied speech from three senders, half of them heard.
        rnd = random.Random(20261202)
        for i in range(18):
            who = (a, b, c)[i % 3]
            r = ac.upload_once(srv, who["token"], fam,
                               speech(rnd.uniform(2, 5), 16000, rnd.randrange(200000),
                                      rnd.uniform(0.3, 1.4)), f"k{i}")
            if r is None or r.status != 201:
                raise RuntimeError(f"upload: {r and r.status}")
        first = gran.ask("GET", msgs)
        figure("the newest 20 messages, gzipped", first)
        page = json.loads(plain(first))
        ok(len(page["messages"]) == 20 and first.header("Content-Encoding") == "gzip" and
           len(first.body) * 100 <= 40 * len(plain(first)) and first.down <= 20 * 200,
           f"a list of 20 is gzipped: {len(first.body)} bytes of {len(plain(first))} "
           f"({first.down} on the wire, budget 4000)")
        seq = page["seq"]

        r = gran.ask("GET", f"{msgs}?since={seq}&wait=1")
        figure("a long-poll that times out with nothing new", r)
        ok(r.status == 200 and r.json()["messages"] == [] and r.down <= 340,
           f"a long-poll with nothing new costs {r.up} up and {r.down} down (budget 340)")

        got = {}
        t = threading.Thread(target=lambda: got.update(r=gran.ask(
            "GET", f"{msgs}?since={seq}&wait=30")))
        t.start()
        time.sleep(0.5)
        new = mom.ask("POST", msgs, clip.body, [("Idempotency-Key", "new")])
        t.join(30)
        r = got.get("r")
        figure("a long-poll answered by one new message", r)
        news = json.loads(plain(r))["messages"] if r else []
        ok(new.status == 201 and len(news) == 1 and r.header("Content-Encoding") == "gzip" and
           r.down <= 700,
           f"a long-poll woken by one new message answers it alone, gzipped: "
           f"{r and r.down} bytes (budget 700)")
        mid = news[0]["id"] if news else m["id"]

        r = gran.ask("GET", f"{msgs}/{mid}/audio")
        figure("a 50 s clip's audio", r)
        etag = r.header("ETag")
        ok(r.status == 200 and len(r.body) == news[0]["bytes"] and r.head <= 450,
           f"the clip is its {len(r.body)} bytes and a head of {r.head} (budget 450)")
        r = gran.ask("GET", f"{msgs}/{mid}/audio", headers=[("If-None-Match", etag)])
        figure("the clip again, If-None-Match", r)
        ok(r.status == 304 and r.body == b"" and r.down <= 420,
           f"heard again, the clip costs a 304 of {r.down} bytes (budget 420)")
        u = gran.ask("POST", f"{msgs}/{mid}/audio-url")
        url = u.json()["url"]
        first = gran.ask("GET", url, auth=False)
        again = gran.ask("GET", url, headers=[("If-None-Match", first.header("ETag"))],
                         auth=False)
        figure("a signed URL for the clip", u)
        figure("the signed URL again, If-None-Match", again)
        ok(first.status == 200 and (first.header("Cache-Control") or "").startswith(
           "private, max-age=") and again.status == 304 and again.down <= 420,
           f"a browser keeps the signed URL's answer and revalidates it with a 304 of "
           f"{again.down} bytes")

        r = gran.ask("POST", f"{msgs}/{mid}/listened")
        figure("a listened receipt", r)
        ok(r.status == 200 and r.down <= 330, f"a receipt's answer is {r.down} bytes (budget 330)")

        # A resumable upload of the WAV in 1 MiB chunks: what each chunk adds.
        T = [("Tus-Resumable", "1.0.0")]
        md = (f"family_id {base64.b64encode(fam.encode()).decode()},"
              f"idempotency_key {base64.b64encode(b'tus').decode()}")
        cr = mom.ask("POST", "/v1/uploads", headers=T + [("Upload-Length", str(len(wav))),
                                                         ("Upload-Metadata", md)])
        figure("a resumable upload's creation", cr)
        loc, off, ups, downs = cr.header("Location"), 0, [], []
        while off < len(wav):
            part = wav[off:off + (1 << 20)]
            r = mom.ask("PATCH", loc, part, T + [
                ("Upload-Offset", str(off)), ("Content-Type", "application/offset+octet-stream")])
            ups.append(r.up - len(part))
            downs.append(r.down)
            off += len(part)
        print(f"# {len(ups)} PATCHes of 1 MiB: each {max(ups)} B of request head, an answer of "
              f"{max(downs)} B", flush=True)
        ok(r.status == 204 and r.header("Jiayin-Message-Id") and max(ups) <= 360 and
           max(downs) <= 450,
           f"a resumable upload's chunk costs {max(ups)} + {max(downs)} bytes besides itself "
           "(budget 360 + 450)")
    finally:
        srv.stop()
    return finish()


if __name__ == "__main__":
    sys.exit(main())
