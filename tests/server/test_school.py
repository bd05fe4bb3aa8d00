#!/usr/bin/env python3
"""test_school.py — a school's tablets behind its one address (TAP).

usage: test_school.py JIAYIN_TEST_BINARY

Children at a boarding school hear and answer their families on the school's tablets, all behind
the school's one address (its NAT), over a slow link. The stream and upload buffers a client
may hold (buffers-per-client) count per signed-in caller: a phone, a child's kiosk session, a
link signed for one of them. An address's requests count by address only when they carry none
(static files), and all of its buffers together in buffers-per-address. So, with the shares at
16 a caller and, here, 24 an address (64 by default):
1. 20 children, each of their own family, play their family's clip at the same moment, half
   through the API and half through signed links, and every one is served (a review: the
   school's 17th was 503 busy, the share being its address's);
2. the same 20 send their replies at once, plain uploads and then resumable ones: every body is
   read;
3. one caller still holds at most its own share of 16; the address, all its callers together,
   at most 24, counted as reason="address", while another address is served.
The clients announce a 1,200-byte segment size, as an Internet path would: over loopback's
64 KiB segments the kernel takes a whole clip and no buffer waits for a slow reader.
"""
import base64
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # helpers are imported from other tests: no __pycache__
import apiclient as ac  # noqa: E402
import test_conn_limits as cl  # noqa: E402
from serverlib import request  # noqa: E402
from tap import finish, ok  # noqa: E402
from test_tus import TUS, patch_head  # noqa: E402

SCHOOL = "127.0.0.80"
TOWN = "127.0.0.81"
MSS = 1200
CHILDREN = 20
PER_ADDRESS = 24
UPLOAD = 100000  # a reply's declared size; only its first bytes are sent


def refused(srv, reason):
    return cl.metric(srv, f'jiayin_buffers_refused_total{{reason="{reason}"}}')


def families(srv):
    """20 families, each with a child's device and one clip: [(child, audio path)]."""
    wav = ac.sine_wav(os.path.join(srv.tmp, "clip.wav"), 440, 10)
    out = []
    for i in range(CHILDREN):
        parent = ac.signup(srv, f"family {i}", "mum")
        child = ac.pair(srv, parent, "child", f"child {i}")
        fam = parent["family"]["id"]
        r = ac.upload_once(srv, parent["token"], fam, wav, "clip")
        if r is None or r.status != 201:
            raise RuntimeError(f"upload: {r and r.status} {r and r.body[:200]!r}")
        out.append((child, f"/v1/families/{fam}/messages/{r.json()['message']['id']}/audio"))
    return out


def play(srv, child, audio, signed, source=SCHOOL):
    """A clip's download that stalls after its head: (socket, status)."""
    if not signed:
        return cl.stalled(srv, audio, source, ac.bearer(child["token"]), mss=MSS)
    r = request(srv, "POST", audio + "-url", headers=ac.bearer(child["token"]))
    if r.status != 200:
        raise RuntimeError(f"audio-url: {r.status} {r.body[:200]!r}")
    return cl.stalled(srv, r.json()["url"], source, mss=MSS)


def settle(srv, socks):
    cl.close_all(socks)
    return cl.wait_metric(srv, "jiayin_buffer_bytes", 0, 5)


def downloads(srv, kids, socks):
    got = []
    for i, (child, audio) in enumerate(kids):
        s, status = play(srv, child, audio, signed=i % 2 == 1)
        socks.append(s)
        got.append(status)
    held = cl.metric(srv, "jiayin_buffer_bytes") or 0
    ok(got == [200] * CHILDREN and held >= CHILDREN * cl.STAGE and refused(srv, "client") == 0,
       f"{CHILDREN} children at one school's address each play a clip at once (10 through the "
       f"API, 10 through signed links), stalled on a slow link: all are served, holding "
       f"{held // 1024} KiB", f"statuses {got}, held {held}")
    ok(settle(srv, socks), "their buffers come back when they leave")


def uploads(srv, kids, socks):
    for child, audio in kids:  # plain uploads: each reserves its family's transcode first
        fam = audio.split("/")[3]
        s = cl.connect(srv, SCHOOL, timeout=10)
        s.sendall((f"POST /v1/families/{fam}/messages HTTP/1.1\r\nHost: t\r\n"
                   f"Authorization: Bearer {child['token']}\r\nContent-Length: {UPLOAD}\r\n\r\n"
                   ).encode() + b"R" * 100)
        socks.append(s)
    want = CHILDREN * cl.STAGE
    read = cl.wait_metric(srv, "jiayin_upload_buffer_bytes", want, 10)
    ok(read and not any(cl.answered(s) for s in socks),
       f"the {CHILDREN} children send their replies at once (plain uploads): every body is read",
       f"upload buffers {cl.metric(srv, 'jiayin_upload_buffer_bytes')} of {want}, refused "
       f"{refused(srv, 'client')}")
    ok(settle(srv, socks), "the uploads' buffers come back when they stop")

    for child, audio in kids:  # resumable uploads
        meta = "family_id " + base64.b64encode(audio.split("/")[3].encode()).decode()
        r = request(srv, "POST", "/v1/uploads", headers=TUS + ac.bearer(child["token"]) + [
            ("Upload-Length", str(UPLOAD)), ("Upload-Metadata", meta)])
        if r.status != 201:
            raise RuntimeError(f"tus create: {r.status} {r.body[:200]!r}")
        s = cl.connect(srv, SCHOOL, timeout=10)
        s.sendall(patch_head(child, r.header("Location"), 0, UPLOAD) + b"R" * 100)
        socks.append(s)
    read = cl.wait_metric(srv, "jiayin_upload_buffer_bytes", want, 10)
    ok(read and not any(cl.answered(s) for s in socks),
       f"and as resumable uploads: all {CHILDREN} bodies are read",
       f"upload buffers {cl.metric(srv, 'jiayin_upload_buffer_bytes')} of {want}")
    ok(settle(srv, socks), "and give their buffers back")


def limits(srv, kids, socks):
    child, audio = kids[0]
    got = []
    for _ in range(17):
        s, status = play(srv, child, audio, signed=False)
        socks.append(s)
        got.append(status)
    ok(got == [200] * 16 + [503] and refused(srv, "client") == 1,
       "one child's 17 stalled downloads: 16 are served (its share), the 17th is 503 busy, "
       "counted as reason=\"client\"", f"statuses {got}, refused {refused(srv, 'client')}")
    got = []
    for i in range(1, 10):
        s, status = play(srv, *kids[i], signed=i % 2 == 1)
        socks.append(s)
        got.append(status)
    ok(got == [200] * 8 + [503] and refused(srv, "address") == 1,
       f"with the school's address holding {PER_ADDRESS} buffers (buffers-per-address), the "
       "next child there is 503 busy, counted as reason=\"address\"",
       f"statuses {got}, refused {refused(srv, 'address')}")
    s, status = play(srv, *kids[10], signed=False, source=TOWN)
    socks.append(s)
    ok(status == 200, "a phone at another address is served meanwhile", f"status {status}")
    r = cl.ask(srv, kids[11][1], SCHOOL, [("Authorization", "Bearer made-up")])
    ok(r is not None and r.status == 401,
       "a made-up token from the school is 401 (its caller is checked before a buffer is held)",
       f"{r and r.status}")
    ok(settle(srv, socks), "and every buffer comes back")


def main():
    binary = sys.argv[1]
    srv = cl.start(binary, "--signups-per-hour", "100", "--buffers-per-address",
                   str(PER_ADDRESS))
    if not srv:
        return finish()
    socks = []
    try:
        t0 = time.time()
        kids = families(srv)
        ok(len(kids) == CHILDREN, f"{CHILDREN} families, each with a child's device and a clip "
           f"({time.time() - t0:.1f} s)")
        downloads(srv, kids, socks)
        uploads(srv, kids, socks)
        limits(srv, kids, socks)
    finally:
        cl.close_all(socks)
        srv.stop()
    return finish()


if __name__ == "__main__":
    sys.exit(main())
