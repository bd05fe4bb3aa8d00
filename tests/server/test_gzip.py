#!/usr/bin/env python3
"""test_gzip.py — gzipped answers for clients that take them (TAP).

usage: test_gzip.py JIAYIN_BINARY

A phone on a metered plan pays for every byte of its family's list. JSON and text answers of
512 bytes or more go gzipped to a client whose Accept-Encoding takes gzip, and every such
answer says Vary: Accept-Encoding. Checked over HTTP against the real server:
1. a mailbox's list, gzipped, reads back (Python's gzip) as the very bytes of the plain answer,
   and is smaller; HEAD gives the gzipped length; "*" takes it, "gzip;q=0" and no header do
   not, and get the plain answer with Vary;
2. answers under 512 bytes (/v1/me, errors) are plain and carry no Vary; /metrics (text) is
   gzipped for a scraper that asks;
3. long-polls woken together by a new message, two of one phone with gzip and one without
   (the woken ones share a list made once): each gets its own coding, and all read the same;
4. an upload's 201 (the new message, its waveform) is gzipped too.
"""
import gzip
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import apiclient as ac  # noqa: E402
from serverlib import Reader, Server, request  # noqa: E402
from tap import finish, ok  # noqa: E402

GZ = [("Accept-Encoding", "gzip, deflate, br")]  # what browsers send


def plain(r):
    """The body as sent before coding."""
    return gzip.decompress(r.body) if r.header("Content-Encoding") == "gzip" else r.body


def coded(r):
    return r.header("Content-Encoding") == "gzip" and r.header("Vary") == "Accept-Encoding"


def lists(srv, who, fam, wav):
    for i in range(4):
        r = ac.upload_once(srv, who["token"], fam, wav, f"k{i}")
        if r is None or r.status != 201:
            raise RuntimeError(f"upload: {r and r.status}")
    path = f"/v1/families/{fam}/messages"
    auth = ac.bearer(who["token"])
    bare = request(srv, "GET", path, headers=auth)
    z = request(srv, "GET", path, headers=auth + GZ)
    ok(bare.status == 200 and bare.header("Content-Encoding") is None
       and bare.header("Vary") == "Accept-Encoding",
       f"a list of 4 without Accept-Encoding is plain ({len(bare.body)} bytes), with Vary")
    ok(z.status == 200 and coded(z) and plain(z) == bare.body and len(z.body) < len(bare.body),
       f"with gzip it is gzipped ({len(z.body)} bytes) and reads back as the plain answer's "
       "bytes", f"{z.status} {z.headers}")
    ok(len(json.loads(plain(z))["messages"]) == 4, "and it is the list of 4")
    h = request(srv, "HEAD", path, headers=auth + GZ)
    ok(h.status == 200 and coded(h) and h.header("Content-Length") == str(len(z.body))
       and h.body == b"", "HEAD says the gzipped answer's length",
       f"{h.header('Content-Length')} against {len(z.body)}")
    for ae, want in (("*", True), ("br;q=1, *;q=0.1", True), ("gzip;q=0", False),
                     ("gzip;q=0, *", False), ("deflate, br", False), ("", False)):
        r = request(srv, "GET", path, headers=auth + [("Accept-Encoding", ae)])
        ok(r.status == 200 and coded(r) == want and r.header("Vary") == "Accept-Encoding"
           and plain(r) == bare.body,
           f"Accept-Encoding: {ae!r} is {'gzipped' if want else 'plain'}",
           f"{r.headers}")


def small(srv, who):
    r = request(srv, "GET", "/v1/me", headers=ac.bearer(who["token"]) + GZ)
    ok(r.status == 200 and r.header("Content-Encoding") is None and r.header("Vary") is None
       and len(r.body) < 512, f"/v1/me ({len(r.body)} bytes) is plain, without Vary")
    r = request(srv, "GET", "/v1/me", headers=[("Authorization", "Bearer nope")] + GZ)
    ok(r.status == 401 and r.header("Content-Encoding") is None and r.header("Vary") is None
       and json.loads(r.body)["error"]["code"] == "unauthorized",
       "an error is plain JSON, without Vary", f"{r.status} {r.headers} {r.body[:100]}")
    r = request(srv, "GET", "/metrics", headers=[("Accept-Encoding", "gzip")])
    text = plain(r).decode()
    ok(r.status == 200 and coded(r) and "jiayin_http_requests_total" in text
       and len(r.body) * 2 < len(text.encode()),
       f"/metrics for a scraper that takes gzip: {len(r.body)} bytes for {len(text)}")


def poll(srv, who, fam, since, gz):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    extra = "Accept-Encoding: gzip\r\n" if gz else ""
    s.sendall((f"GET /v1/families/{fam}/messages?since={since}&wait=20 HTTP/1.1\r\nHost: t\r\n"
               f"Authorization: Bearer {who['token']}\r\n{extra}\r\n").encode())
    return s


def long_polls(srv, who, fam, wav):
    since = request(srv, "GET", f"/v1/families/{fam}/messages",
                    headers=ac.bearer(who["token"])).json()["seq"]
    socks = [poll(srv, who, fam, since, gz) for gz in (True, False, True)]
    parked = ac.wait_parked(srv, 3, 10)
    r = ac.upload_once(srv, who["token"], fam, wav, "news")
    ok(parked is not None and r is not None and r.status == 201,
       "a new message while three long-polls wait")
    new_id = r.json()["message"]["id"]
    got = []
    for s in socks:
        got.append(Reader(s).response())
        s.close()
    bodies = [plain(a) for a in got]
    ok(all(a.status == 200 for a in got) and coded(got[0]) and coded(got[2])
       and got[1].header("Content-Encoding") is None,
       "the two that take gzip get it, the one that does not gets it plain",
       f"{[(a.status, a.header('Content-Encoding')) for a in got]}")
    ok(bodies[0] == bodies[1] == bodies[2]
       and [m["id"] for m in json.loads(bodies[1])["messages"]] == [new_id],
       f"all three read the same answer, the new message ({len(bodies[1])} bytes plain, "
       f"{len(got[0].body)} gzipped)")


def upload_answer(srv, who, fam, wav):
    r = request(srv, "POST", f"/v1/families/{fam}/messages", wav,
                headers=ac.bearer(who["token"]) + GZ + [("Idempotency-Key", "z")], timeout=60)
    body = plain(r) if r else b""
    ok(r is not None and r.status == 201 and coded(r)
       and json.loads(body)["message"]["duration_ms"] > 0,
       f"an upload's 201 is gzipped ({len(r.body)} bytes for {len(body)})",
       f"{r and r.status} {r and r.headers}")


def main():
    srv = Server(sys.argv[1])
    try:
        who = ac.signup(srv, "王家", "妈妈")
        fam = who["family"]["id"]
        wav = ac.sine_wav(os.path.join(srv.tmp, "clip.wav"), 440, 2)
        lists(srv, who, fam, wav)
        small(srv, who)
        long_polls(srv, who, fam, wav)
        upload_answer(srv, who, fam, wav)
    finally:
        srv.stop()
    return finish()


if __name__ == "__main__":
    sys.exit(main())
