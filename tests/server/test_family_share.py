#!/usr/bin/env python3
"""test_family_share.py — what one family may take of what all families share (TAP).

usage: test_family_share.py JIAYIN_BINARY

The review's findings, at a small scale:
1. Transcodes waiting their turn do not fill the job queue of light requests: while one family
   keeps sending uploads (--threads 2 --max-queued-jobs 8), another family's GET /v1/me and
   lists are all answered; the busy family's uploads past its share (threads: 2) are 503 busy
   with Retry-After, a plain upload's before its body is read (no 100 Continue).
2. One export per family at a time: while a parent's export downloads, 15 more of the same
   family are 429 export_in_progress with Retry-After (one zip in data/tmp, not 16); a child's
   403 and a stranger's 404 take nothing; once the download ends, the next export is served.
3. Unfinished uploads count against the family's room: a family whose quota is full (1 byte)
   opens no upload, resumable or plain (507 quota_exceeded before any body is stored), and a
   family's unfinished uploads together stay within --family-upload-bytes, or 64 times the
   room its quota leaves if that is less; a recording larger than the room itself (a WAV
   that becomes far less Opus) is taken. A finished, terminated or expired upload, and a plain
   upload once answered, give their bytes back; a restart counts the uploads on disk again.
4. A creation whose answer was lost, sent again with the same idempotency_key, is the same
   upload (held once, at its offset), so the retry of a 15-minute WAV in a family with 3 MB
   of room is 201, not 507; the same key for another length replaces it; and room that the
   family's unfinished uploads hold is 507 uploads_hold_room, not quota_exceeded. An upload
   that has received nothing expires sooner (--upload-start-expiry-s).
5. A plain upload's transcode is reserved at its gate: relatives' clips sent while grandpa's
   body trickles in cannot take his family's share, so his body is not thrown away with a 503
   when its last byte arrives; every way a body may end gives the reservation back.
6. A chunked plain body holds a little of the family's room at first and more as it arrives,
   so the rest of the family is not 507 while it does. When the room it needs next was taken
   meanwhile, or it outgrows the family's room, it is answered in the middle of its body (507
   uploads_hold_room with Retry-After, or quota_exceeded) and the phone reads the answer.
"""
import base64
import json
import os
import re
import select
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # apiclient and test_api's helpers: no __pycache__ in the tree
from serverlib import Reader, Server, request, until  # noqa: E402
from tap import finish, ok  # noqa: E402
from apiclient import metric, read_head, sine_wav, slow_export  # noqa: E402
from test_api import SAMPLE, bearer, invite_and_pair, signup, upload  # noqa: E402

TUS = [("Tus-Resumable", "1.0.0")]
MB = 1000 * 1000
WAV_15_MIN = 172800044  # 15 minutes of 48 kHz 16-bit stereo WAV, with its 44-byte header


def b64(text):
    return base64.b64encode(text.encode()).decode()


def code_of(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, AttributeError):
        return None


def create(srv, who, length, key=None):
    meta = "family_id " + b64(who["family"]["id"])
    if key:
        meta += ",idempotency_key " + b64(key)
    return request(srv, "POST", "/v1/uploads",
                   headers=TUS + bearer(who["token"]) +
                   [("Upload-Length", str(length)), ("Upload-Metadata", meta)])


def set_quota(srv, who, quota):
    r = request(srv, "PATCH", f"/v1/families/{who['family']['id']}",
                json.dumps({"quota_bytes": quota}).encode(),
                headers=[("Content-Type", "application/json")] + bearer(who["token"]))
    assert r.status == 200, r.body
    return r.json()["family"]


def first_answer(srv, head, timeout=10):
    """Sends a request head that waits for 100 Continue; its first answer's status line and
    the whole response (None when the first answer is 100 Continue)."""
    s = srv.connect()
    s.settimeout(timeout)
    try:
        s.sendall(head.encode())
        got = read_head(s)
        line = got.split(b"\r\n", 1)[0].decode("latin-1")
        if " 100 " in line:
            return line, None
        r = Reader(s)
        r.buf = got
        return line, r.response()
    finally:
        s.close()


def plain_head(who, length):
    return (f"POST /v1/families/{who['family']['id']}/messages HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {who['token']}\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n")


def heavy_jobs_apart(binary):
    """Finding B: one family's 80 uploads kept the job queue full, and other families' light
    requests were 503 busy on 10.5% of requests."""
    srv = Server(binary, "--threads", "2", "--max-queued-jobs", "8")
    try:
        busy_fam = signup(srv, "张家", "爸爸")
        phones = [busy_fam] + [invite_and_pair(srv, busy_fam, "caregiver", f"手机{i}")
                               for i in range(3)]
        calm = signup(srv, "李家", "妈妈")
        fam = busy_fam["family"]["id"]
        clip = sine_wav(os.path.join(srv.tmp, "clip.wav"), 440.0, 20, rate=8000)
        stop = threading.Event()
        sent = []

        def sender(who):
            while not stop.is_set():
                r = request(srv, "POST", f"/v1/families/{fam}/messages", clip,
                            headers=bearer(who["token"]), timeout=60)
                sent.append((r.status if r else None, r and r.header("Retry-After"),
                             code_of(r)))
                if r and r.status == 503:
                    time.sleep(float(r.header("Retry-After") or 1))  # as the apps do
        senders = [threading.Thread(target=sender, args=(phones[i % 4],)) for i in range(12)]
        for t in senders:
            t.start()
        time.sleep(1.0)
        light, queued, heavy = [], [], []
        t_end = time.time() + 6
        while time.time() < t_end:
            for path in ("/v1/me", f"/v1/families/{calm['family']['id']}/messages"):
                r = request(srv, "GET", path, headers=bearer(calm["token"]), timeout=30)
                light.append(r.status if r else None)
            queued.append(metric(srv, "jiayin_jobs_queued") or 0)
            heavy.append(metric(srv, "jiayin_heavy_jobs_queued"))
            time.sleep(0.05)  # an app's pace, not a flood
        stop.set()
        for t in senders:
            t.join()
        refused = [s for s in sent if s[0] == 503]
        ok(light and light.count(200) == len(light),
           f"while one family keeps 12 uploads coming, another family's {len(light)} light "
           "requests are all answered",
           f"{len(light) - light.count(200)} of {len(light)} not 200: {sorted(set(light))}")
        ok(sent.count((201, None, None)) >= 2 and refused and
           all(ra and code == "busy" for _, ra, code in refused) and
           set(s[0] for s in sent) <= {201, 503},
           "the busy family's uploads beyond its share are 503 busy with Retry-After, the "
           f"rest 201 ({sent.count((201, None, None))} stored, {len(refused)} refused)",
           str(sorted(set(sent), key=str)))
        ok(None not in heavy and max(heavy) <= 2,
           "the heavy jobs queued or running stay within the family's share (2)",
           f"heavy at most {max(h or 0 for h in heavy)} ({heavy.count(None)} not reported); "
           f"light jobs queued at most {max(queued)}")

        # Before its body: a third upload while the family has two transcodes queued.
        long_clip = sine_wav(os.path.join(srv.tmp, "long.wav"), 300.0, 240, rate=8000)
        longs = []

        def send_long():
            longs.append(request(srv, "POST", f"/v1/families/{fam}/messages", long_clip,
                                 headers=bearer(busy_fam["token"]), timeout=60))
        two = [threading.Thread(target=send_long) for _ in range(2)]
        for t in two:
            t.start()
        # both bodies are in: one transcodes, one waits (asked for, where a fixed second was a
        # race a loaded machine could lose)
        until(lambda: (metric(srv, "jiayin_heavy_jobs_queued") or 0) >= 2, timeout=20)
        line, r = first_answer(srv, plain_head(phones[1], len(clip)))
        for t in two:
            t.join()
        ok(line.startswith("HTTP/1.1 503") and r and code_of(r) == "busy" and
           r.header("Retry-After") and [x.status for x in longs] == [201, 201],
           "with two transcodes of the family queued, its third upload is 503 busy with "
           "Retry-After before 100 Continue; the two are stored",
           f"{line} {[x.status for x in longs]}")
    finally:
        srv.stop()


def open_tmp_files(srv):
    tmp = os.path.realpath(os.path.join(srv.data, "tmp"))
    n = 0
    for fd in os.listdir(f"/proc/{srv.proc.pid}/fd"):
        try:
            n += os.readlink(f"/proc/{srv.proc.pid}/fd/{fd}").startswith(tmp)
        except OSError:
            pass
    return n


def exports_one_at_a_time(binary):
    """Finding A, exports: 16 concurrent exports of a 10 MB family held 16 zips in data/tmp."""
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        dad = invite_and_pair(srv, mom, "parent", "爸爸")
        kid = invite_and_pair(srv, mom, "child", "小明")
        stranger = signup(srv, "李家", "爸爸")
        with open(SAMPLE, "rb") as f:
            assert upload(srv, mom["token"], fam, f.read()).status == 201
        big = 10 << 20  # a 10 MiB mailbox without minutes of transcoding
        db = sqlite3.connect(os.path.join(srv.data, "families", fam + ".db"), timeout=10)
        db.execute("UPDATE audio SET data = randomblob(?)", (big,))
        db.execute("UPDATE messages SET bytes = ?", (big,))
        db.commit()
        db.close()
        ways = [None] * 16

        def go(i):
            ways[i] = slow_export(srv, mom if i % 2 else dad, fam)
        threads = [threading.Thread(target=go, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.5)
        held = open_tmp_files(srv)
        lines = [g.split(b"\r\n", 1)[0].decode("latin-1") for _, g in ways]
        served = [i for i, line in enumerate(lines) if " 200 " in line]
        refused = [g for _, g in ways if g.startswith(b"HTTP/1.1 429")]
        ok(len(served) == 1 and len(refused) == 15 and held == 1 and
           all(b"export_in_progress" in g and re.search(rb"Retry-After: \d+", g)
               for g in refused),
           "16 exports of one family at once: one is served, 15 are 429 export_in_progress "
           "with Retry-After, one zip in data/tmp",
           f"{len(served)} served, {len(refused)} refused, {held} open in data/tmp: {lines}")
        child = request(srv, "GET", f"/v1/families/{fam}/export", headers=bearer(kid["token"]))
        other = request(srv, "GET", f"/v1/families/{fam}/export",
                        headers=bearer(stranger["token"]))
        theirs = request(srv, "GET", f"/v1/families/{stranger['family']['id']}/export",
                         headers=bearer(stranger["token"]), timeout=30)
        ok(child.status == 403 and other.status == 404 and theirs.status == 200,
           "meanwhile a child's export is 403, a stranger's 404, and another family's is served",
           f"{child.status} {other.status} {theirs.status}")
        for i, (s, _) in enumerate(ways):
            if i not in served:
                s.close()
        s, got = ways[served[0]]
        length = int(re.search(rb"Content-Length: (\d+)", got).group(1))
        body = len(got.split(b"\r\n\r\n", 1)[1])
        while body < length:
            d = s.recv(65536)
            if not d:
                break
            body += len(d)
        s.close()
        deadline = time.time() + 5
        nxt = None
        while time.time() < deadline:
            nxt = request(srv, "GET", f"/v1/families/{fam}/export", headers=bearer(mom["token"]),
                          timeout=30)
            if nxt.status != 429:
                break
            time.sleep(0.1)
        ok(body == length and nxt.status == 200 and len(nxt.body) == length,
           "once the download is over, the next export is served",
           f"{body} of {length}; then {nxt and nxt.status}")
        s, got = slow_export(srv, mom, fam)
        s.close()  # a phone that gives up at once
        deadline = time.time() + 10
        while time.time() < deadline:
            nxt = request(srv, "GET", f"/v1/families/{fam}/export", headers=bearer(dad["token"]),
                          timeout=30)
            if nxt.status != 429:
                break
            time.sleep(0.1)
        ok(got.startswith(b"HTTP/1.1 200") and nxt.status == 200,
           "a download cut by its phone lets the next export in", f"{nxt.status}")
        deadline = time.time() + 5
        while time.time() < deadline and open_tmp_files(srv):
            time.sleep(0.1)
        ok(open_tmp_files(srv) == 0, "and no zip stays open in data/tmp")
    finally:
        srv.stop()


def uploads_on_disk(srv):
    root = os.path.join(srv.data, "uploads")
    return sorted(f for _, _, fs in os.walk(root) for f in fs)


def uploads_count(binary):
    """Finding A: a family whose quota was 1 byte held 16 unfinished uploads of 10 MB."""
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    cap = 50 * MB
    args = ("--signups-per-hour", "1000", "--family-upload-bytes", str(cap))
    srv = Server(binary, *args)
    try:
        mom = signup(srv, "王家", "妈妈")
        dad = invite_and_pair(srv, mom, "parent", "爸爸")
        set_quota(srv, mom, 1)
        refused = [create(srv, who, 10 * MB) for who in (mom, dad) for _ in range(8)]
        codes = [r.status for r in refused]
        ok(codes == [507] * 16 and all(code_of(r) == "quota_exceeded" and
                                       r.header("Tus-Resumable") == "1.0.0" for r in refused)
           and uploads_on_disk(srv) == [],
           "a family whose quota is 1 byte: 16 uploads of 10 MB from two phones are each 507 "
           "quota_exceeded at creation, nothing on disk", f"{codes} {uploads_on_disk(srv)}")
        line, r = first_answer(srv, plain_head(mom, 10 * MB))
        ok(line.startswith("HTTP/1.1 507") and code_of(r) == "quota_exceeded",
           "and a plain upload of 10 MB is 507 quota_exceeded before 100 Continue", line)

        fam = set_quota(srv, mom, 1 << 20)  # a mebibyte of room: 64 MiB of recording
        big = create(srv, mom, 30 * MB)
        ok(big.status == 201 and fam["usage_bytes"] == 0,
           "a 1 MiB quota: an upload of 30 MB (a WAV of what becomes far less Opus) is taken",
           f"{big.status} {big.body[:120]!r}")
        got = [create(srv, dad, 15 * MB).status, create(srv, dad, 10 * MB).status,
               create(srv, mom, 5 * MB).status, create(srv, mom, 1).status]
        ok(got == [201, 507, 201, 507],
           "the family's unfinished uploads together stay within --family-upload-bytes (50 MB):"
           " 30 + 15 fit, 10 more do not, 5 more do, then not a byte", str(got))
        d = request(srv, "DELETE", big.header("Location"), headers=TUS + bearer(mom["token"]))
        again = create(srv, dad, 10 * MB)
        ok(d.status == 204 and again.status == 201,
           "a terminated upload gives its bytes back", f"{d.status} {again.status}")
        near = create(srv, mom, 20 * MB - len(wav))
        last = create(srv, mom, len(wav))
        over = create(srv, mom, 1)
        loc = last.header("Location")
        p = request(srv, "PATCH", loc, wav, timeout=60,
                    headers=TUS + bearer(mom["token"]) +
                    [("Content-Type", "application/offset+octet-stream"), ("Upload-Offset", "0")])
        after = create(srv, mom, len(wav))
        ok(near.status == 201 and last.status == 201 and over.status == 507 and
           p.status == 204 and p.header("Jiayin-Message-Id") and after.status == 201,
           "an upload that became a message gives its bytes back",
           f"{near.status} {last.status} {over.status} {p.status} {after.status}")
        request(srv, "DELETE", after.header("Location"), headers=TUS + bearer(mom["token"]))
        plain_full = request(srv, "POST", f"/v1/families/{mom['family']['id']}/messages",
                             wav + b"\0" * 4, headers=bearer(mom["token"]), timeout=60)
        plain = request(srv, "POST", f"/v1/families/{mom['family']['id']}/messages", wav,
                        headers=bearer(mom["token"]), timeout=60)
        then = create(srv, mom, len(wav))
        ok(plain_full.status == 507 and plain.status == 201 and then.status == 201,
           "a plain upload counts while it is received: one byte too many is 507, one that "
           "fits is 201 and gives its bytes back once answered",
           f"{plain_full.status} {plain.status} {then.status}")
        line, r = first_answer(srv, plain_head(mom, 0).replace(
            "Content-Length: 0", "Transfer-Encoding: chunked"))
        ok(line.startswith("HTTP/1.1 507") and code_of(r) == "uploads_hold_room",
           "with all 50 MB held, a chunked plain upload is 507 uploads_hold_room before "
           "100 Continue", f"{line} {code_of(r)}")
    finally:
        srv.stop()

    srv = Server(binary, *args, data=srv.data)
    try:
        r30, r20 = create(srv, mom, 30 * MB), create(srv, mom, len(wav))
        ok(r30.status == 507 and r20.status == 507,
           "after a restart the uploads on disk count again", f"{r30.status} {r20.status}")
    finally:
        srv.stop()
    time.sleep(1.2)
    srv = Server(binary, *args, "--upload-expiry-s", "1", data=srv.data)
    try:
        deadline = time.time() + 10
        while time.time() < deadline and uploads_on_disk(srv):
            time.sleep(0.1)
        r = create(srv, mom, cap)
        ok(r.status == 201, "expired and swept, they count no more: the whole 50 MB is free",
           f"{r.status} {uploads_on_disk(srv)}")
    finally:
        srv.stop()


def patch(srv, who, loc, offset, data):
    return request(srv, "PATCH", loc, data, timeout=60,
                   headers=TUS + bearer(who["token"]) +
                   [("Content-Type", "application/offset+octet-stream"),
                    ("Upload-Offset", str(offset))])


def lost_creation_answers(binary):
    """Finding 4: a creation whose 201 was lost held its whole length for 24 h, so the same
    recording's retry (tus-js-client's) was 507 quota_exceeded: 'mailbox full'."""
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary)
    try:
        mom = signup(srv, "赵家", "妈妈")
        dad = invite_and_pair(srv, mom, "parent", "爸爸")
        set_quota(srv, mom, 3 * MB)  # 3 MB of room: 192 MB of recordings on their way
        first = create(srv, mom, WAV_15_MIN, "grandpa-15min")
        again = create(srv, mom, WAV_15_MIN, "grandpa-15min")
        loc = first.header("Location")
        ok(first.status == 201 and again.status == 201 and again.header("Location") == loc and
           again.header("Upload-Offset") == "0" and len(uploads_on_disk(srv)) == 2,
           "3 MB of room: a 15-minute WAV's creation sent again with its idempotency_key (its "
           "201 lost) is 201 with the same upload, held once",
           f"{first.status} {again.status} {code_of(again)} {uploads_on_disk(srv)}")
        other = create(srv, dad, 30 * MB, "another")
        alone = create(srv, dad, 200 * MB, "too-big")
        ok(other.status == 507 and code_of(other) == "uploads_hold_room" and
           other.header("Retry-After") and alone.status == 507 and
           code_of(alone) == "quota_exceeded",
           "another recording that fits the room but not beside the unfinished upload is 507 "
           "uploads_hold_room with Retry-After; one larger than the room is quota_exceeded",
           f"{other.status} {code_of(other)} {alone.status} {code_of(alone)}")
        changed = create(srv, mom, 100 * MB, "grandpa-15min")
        old = request(srv, "HEAD", loc, headers=TUS + bearer(mom["token"]))
        fits = create(srv, dad, 30 * MB, "another")
        ok(changed.status == 201 and changed.header("Location") != loc and old.status == 404
           and fits.status == 201,
           "the same key for another length is a new upload that replaces the old one, "
           "whose room comes back", f"{changed.status} {old.status} {fits.status}")
        for r in (changed, fits):
            request(srv, "DELETE", r.header("Location"), headers=TUS + bearer(mom["token"]
                    if r is changed else dad["token"]))
        set_quota(srv, mom, 1 << 30)
        seven = [create(srv, dad, WAV_15_MIN, "dad-15min") for _ in range(7)]
        ok([r.status for r in seven] == [201] * 7 and
           len({r.header("Location") for r in seven}) == 1,
           "with 1 GiB of room, 7 creations of the same recording are 7 times the same upload",
           f"{[(r.status, code_of(r)) for r in seven]}")
        small = create(srv, mom, len(wav), "story")
        half = patch(srv, mom, small.header("Location"), 0, wav[:len(wav) // 2])
        retry = create(srv, mom, len(wav), "story")
        from_zero = patch(srv, mom, retry.header("Location"), 0, wav)
        rest = patch(srv, mom, retry.header("Location"), len(wav) // 2, wav[len(wav) // 2:])
        ok(half.status == 204 and retry.status == 201 and
           retry.header("Location") == small.header("Location") and
           retry.header("Upload-Offset") == str(len(wav) // 2) and from_zero.status == 409 and
           rest.status == 204 and rest.header("Jiayin-Message-Id"),
           "an upload half sent, created again, is answered with its offset; a PATCH from 0 "
           "is 409 (tus-js-client then asks with HEAD), the rest from there makes the message",
           f"{half.status} {retry.status} {retry.header('Upload-Offset')} "
           f"{from_zero.status} {rest.status}")
    finally:
        srv.stop()


class PlainUpload:
    """A plain upload sent by hand, as a phone on 2G sends it: its head, which waits for
    100 Continue (.refused: the answer instead), then its body in parts."""

    def __init__(self, srv, who, length=None, timeout=30):
        self.s = srv.connect(timeout)
        framing = (f"Content-Length: {length}" if length is not None
                   else "Transfer-Encoding: chunked")
        self.s.sendall((f"POST /v1/families/{who['family']['id']}/messages HTTP/1.1\r\n"
                        f"Host: t\r\nAuthorization: Bearer {who['token']}\r\n{framing}\r\n"
                        "Expect: 100-continue\r\n\r\n").encode())
        self.reader = Reader(self.s)
        while b"\r\n\r\n" not in self.reader.buf and self.reader._fill():
            pass
        self.refused = None
        if not self.reader.buf.startswith(b"HTTP/1.1 100 "):
            self.refused = self.reader.response()
            self.s.close()
        else:
            self.reader.buf = self.reader.buf.split(b"\r\n\r\n", 1)[1]

    def send(self, data):
        self.s.sendall(data)

    def chunk(self, data):
        self.s.sendall(b"%x\r\n" % len(data) + data + b"\r\n")

    def response(self):
        try:
            return self.reader.response()
        finally:
            self.s.close()

    def until_answered(self, data, piece=1 << 15, pause=0.02):
        """Sends data in chunks, a pause between them, until an answer is there to read (the
        server refused the body in its middle): (the answer or None, the bytes sent)."""
        if self.refused:
            return self.refused, 0
        sent = 0
        while sent < len(data):
            if select.select([self.s], [], [], 0)[0]:
                break
            try:
                self.chunk(data[sent:sent + piece])
            except OSError:
                break  # a reset: the answer, if any, was not read in time
            sent += len(data[sent:sent + piece])
            time.sleep(pause)
        else:
            self.send(b"0\r\n\r\n")
        try:
            return self.response(), sent
        except OSError:
            return None, sent


def settled(srv, name, want, seconds=10):
    """The metric once it reads `want` (or the last reading after `seconds`)."""
    deadline = time.time() + seconds
    while True:
        got = metric(srv, name)
        if got == want or time.time() > deadline:
            return got
        time.sleep(0.05)


def transcode_reserved(binary):
    """Finding 5: a plain upload whose body had fully arrived was 503 busy and thrown away
    when relatives' clips had taken its family's share of transcodes meanwhile."""
    srv = Server(binary, "--threads", "2")
    try:
        grandpa = signup(srv, "孙家", "爷爷")
        aunt, uncle = (invite_and_pair(srv, grandpa, "caregiver", n) for n in ("姑姑", "叔叔"))
        slow = sine_wav(os.path.join(srv.tmp, "slow.wav"), 220.0, 30, rate=8000)
        long_clip = sine_wav(os.path.join(srv.tmp, "long.wav"), 300.0, 240, rate=8000)
        mine = PlainUpload(srv, grandpa, len(slow))
        mine.send(slow[:len(slow) // 2])  # his body trickles in
        answers = [None, None]

        def relative(i, who):
            up = PlainUpload(srv, who, len(long_clip), timeout=60)
            if up.refused:
                answers[i] = (up.refused.status, code_of(up.refused))
                return
            up.send(long_clip)
            r = up.response()
            answers[i] = (r.status if r else None, code_of(r))
        rel = [threading.Thread(target=relative, args=(i, w)) for i, w in enumerate((aunt, uncle))]
        for t in rel:
            t.start()
        deadline = time.time() + 20
        while time.time() < deadline and ((metric(srv, "jiayin_heavy_jobs_queued") or 0) +
                                          (metric(srv, "jiayin_heavy_jobs_reserved") or 0) < 2):
            time.sleep(0.05)
        mine.send(slow[len(slow) // 2:])  # his last byte, while the family's share is taken
        r = mine.response()
        for t in rel:
            t.join()
        ok(r and r.status == 201 and sorted(answers, key=str) == [(201, None), (503, "busy")],
           "--threads 2: grandpa's plain upload, whose gate passed before two relatives' clips, "
           "is stored when his last byte arrives (201); the second relative is 503 busy before "
           "its body", f"{r and (r.status, code_of(r))} {answers}")
        ok(settled(srv, "jiayin_heavy_jobs_queued", 0) == 0 and
           settled(srv, "jiayin_heavy_jobs_reserved", 0) == 0,
           "then no transcode is queued or reserved")

        # Each way a reserved transcode may end without its body gives it back.
        ways = []
        broken = PlainUpload(srv, grandpa)
        broken.send(b"zz\r\n")  # not a chunk size
        r = broken.response()
        ways.append(("broken framing", r and r.status, 400))
        gone = PlainUpload(srv, aunt, len(slow))
        gone.send(slow[:1000])
        gone.s.close()  # the phone lost its signal
        ways.append(("client gone", settled(srv, "jiayin_heavy_jobs_reserved", 0), 0))
        empty = PlainUpload(srv, grandpa)
        empty.send(b"0\r\n\r\n")
        r = empty.response()
        ways.append(("empty body", r and r.status, 422))
        revoked = PlainUpload(srv, uncle, len(slow))
        revoked.send(slow[:1000])
        d = request(srv, "DELETE", f"/v1/devices/{uncle['device']['id']}",
                    headers=bearer(grandpa["token"]))
        revoked.send(slow[1000:])
        r = revoked.response()
        ways.append(("phone revoked while its body arrived", (d.status, r and r.status),
                     (204, 401)))
        both = [PlainUpload(srv, grandpa, len(slow)) for _ in range(3)]
        third = both[2].refused
        for up in both[:2]:
            up.send(slow)
            up.response()
        ways.append(("the family's share full: refused before its body",
                     third and (third.status, code_of(third)), (503, "busy")))
        left = (settled(srv, "jiayin_heavy_jobs_reserved", 0),
                settled(srv, "jiayin_heavy_jobs_queued", 0))
        ok(all(got == want for _, got, want in ways) and left == (0, 0),
           "a reserved transcode is given back when the framing breaks (400), the client goes "
           "away, the body is empty (422), the phone is revoked meanwhile (401) or the share is "
           "full: none reserved or queued after", f"{ways} reserved, queued: {left}")
    finally:
        srv.stop()


def chunked_hold_grows(binary):
    """Finding 6: a chunked plain upload held all its family had left while it arrived (200 MiB
    with the defaults), so the rest of the family was 507 meanwhile."""
    srv = Server(binary)
    try:
        mom = signup(srv, "钱家", "妈妈")
        grandma = invite_and_pair(srv, mom, "caregiver", "奶奶")
        set_quota(srv, mom, 2 * MB)  # 2 MB of room: 128 MB of recordings on their way
        clip80 = sine_wav(os.path.join(srv.tmp, "80k.wav"), 500.0, 5, rate=8000)
        clip48 = sine_wav(os.path.join(srv.tmp, "48k.wav"), 600.0, 3, rate=8000)
        mums = PlainUpload(srv, mom)  # Transfer-Encoding: chunked, through nginx
        mums.chunk(clip80[:40000])
        tus = create(srv, grandma, 1 * MB, "grandma-1")
        plain = request(srv, "POST", f"/v1/families/{mom['family']['id']}/messages", clip48,
                        headers=bearer(grandma["token"]), timeout=60)
        mums.chunk(clip80[40000:])
        mums.send(b"0\r\n\r\n")
        r = mums.response()
        ok(tus.status == 201 and plain.status == 201 and r and r.status == 201,
           "2 MB of room: while Mum's 80 KB clip arrives chunked, grandma's resumable upload "
           "of 1 MB and her 48 KB clip are taken, and then Mum's",
           f"{tus.status} {code_of(tus)}, {plain.status} {code_of(plain)}, "
           f"{r and (r.status, code_of(r))}")
        request(srv, "DELETE", tus.header("Location"), headers=TUS + bearer(grandma["token"]))

        # Its hold grows as it arrives, while there is room for it.
        song = sine_wav(os.path.join(srv.tmp, "3m.wav"), 440.0, 190, rate=8000)  # 3 MB
        room = 128 * MB
        mums = PlainUpload(srv, mom)
        mums.chunk(song[:100000])
        big = create(srv, grandma, room - 5 * MB, "grandma-2")  # 5 MB left beside it
        for i in range(100000, len(song), 1 << 16):
            mums.chunk(song[i:i + (1 << 16)])
            time.sleep(0.02)
        mums.send(b"0\r\n\r\n")
        r = mums.response()
        ok(big.status == 201 and r and r.status == 201,
           "a 3 MB chunked clip holds a little at first (grandma's 123 MB beside it is 201), "
           "more as it arrives, and is stored", f"{big.status} {r and r.status}")

        # Not when the room it needs was taken meanwhile: cut, and its hold given back.
        request(srv, "DELETE", big.header("Location"), headers=TUS + bearer(grandma["token"]))
        stored = set_quota(srv, mom, 2 * MB)["usage_bytes"]
        set_quota(srv, mom, 2 * MB + stored)  # 2 MB of room again
        mums = PlainUpload(srv, mom)
        mums.chunk(song[:100000])
        most = create(srv, grandma, room - (1 << 20) - MB // 2, "grandma-3")
        r, sent = mums.until_answered(song[100000:])
        after = settled_create(srv, grandma, (1 << 20) + MB // 2, "grandma-4")
        ok(most.status == 201 and r and r.status == 507 and
           code_of(r) == "uploads_hold_room" and r.header("Retry-After") == "60" and
           sent < len(song) - 100000 and after.status == 201,
           "when the family's other uploads take the room a chunked body needs next, the phone "
           "reads 507 uploads_hold_room with Retry-After: 60 in the middle of its body, and "
           "its hold comes back",
           f"{most.status} {r and (r.status, code_of(r), r.header('Retry-After'))} "
           f"sent {sent} {after.status}")
        for up in (most, after):
            request(srv, "DELETE", up.header("Location"), headers=TUS + bearer(grandma["token"]))

        # Past what the family may have at all: why, as a declared length is told before.
        set_quota(srv, mom, stored + 10000)  # 10 kB of room: 640 kB of recordings
        mums = PlainUpload(srv, mom)
        r, sent = mums.until_answered(song)
        ok(r and r.status == 507 and code_of(r) == "quota_exceeded" and sent < len(song),
           "a chunked clip larger than all the family's room is 507 quota_exceeded in the "
           "middle of its body (not 413), and the phone reads it",
           f"{r and (r.status, code_of(r))} sent {sent}")
        few = create(srv, grandma, 400000, "grandma-5")
        mums = PlainUpload(srv, mom)
        r, sent = mums.until_answered(song)
        ok(few.status == 201 and r and r.status == 507 and code_of(r) == "uploads_hold_room",
           "and 507 uploads_hold_room when the family's other uploads hold part of that room",
           f"{few.status} {r and (r.status, code_of(r))} sent {sent}")
    finally:
        srv.stop()


def settled_create(srv, who, length, key, seconds=5):
    """A creation tried until it is not 507 (or `seconds` pass): room given back by a request
    that is ending."""
    deadline = time.time() + seconds
    while True:
        r = create(srv, who, length, key)
        if r.status != 507 or time.time() > deadline:
            return r
        time.sleep(0.1)


def never_started_expiry(binary):
    """Finding 4, without an idempotency_key: a creation whose answer was lost, or that was
    given up before its first byte, held its length for 24 h."""
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary, "--upload-start-expiry-s", "1", "--family-upload-bytes", str(50 * MB))
    try:
        mom = signup(srv, "周家", "妈妈")
        lost = create(srv, mom, 40 * MB)
        started = create(srv, mom, len(wav))
        p = patch(srv, mom, started.header("Location"), 0, wav[:1000])
        again = settled_create(srv, mom, 40 * MB, None)
        h = request(srv, "HEAD", started.header("Location"), headers=TUS + bearer(mom["token"]))
        gone = request(srv, "HEAD", lost.header("Location"), headers=TUS + bearer(mom["token"]))
        ok(lost.status == 201 and p.status == 204 and again.status == 201 and
           gone.status == 404 and h.status == 200 and h.header("Upload-Offset") == "1000",
           "--upload-start-expiry-s 1: an upload that received nothing goes within seconds and "
           "its 40 MB of the family's 50 come back; one that received 1000 bytes stays",
           f"{lost.status} {p.status} {again.status} {gone.status} {h.status}")
    finally:
        srv.stop()


def main():
    heavy_jobs_apart(sys.argv[1])
    exports_one_at_a_time(sys.argv[1])
    uploads_count(sys.argv[1])
    lost_creation_answers(sys.argv[1])
    transcode_reserved(sys.argv[1])
    chunked_hold_grows(sys.argv[1])
    never_started_expiry(sys.argv[1])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
