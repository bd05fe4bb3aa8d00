#!/usr/bin/env python3
"""test_tus_cuts.py — resumable uploads whose connection is cut inside a PATCH body (TAP).

usage: test_tus_cuts.py JIAYIN_BINARY

What a phone on a train meets: a PATCH cut (closed, or reset) mid-body keeps every byte that
reached the server, the next HEAD says so, the upload resumes from there into a message that
downloads and decodes, and the cut PATCHes are logged as 499. A HEAD sent right after the cut
never reports the offset from before the bytes the cut PATCH carried: while that PATCH still
waits for its caller to be checked, HEAD answers 423 as while it works; PATCHes with someone
else's token hold no HEAD back; a PATCH still receiving past its upload's expiry is cut by the
HEAD, not lost to a 404. Uploads whose family, member or phone went in a crash between
its transaction and their erasure are erased by the next sweep.
"""
import glob
import json
import os
import re
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # test_tus's helpers are imported: no __pycache__ in the tree
from serverlib import Reader, Server, add_kiosk, logged_id, request, until  # noqa: E402
from tap import finish, ok  # noqa: E402
from test_tus import (SAMPLE, bearer, code_of, ffprobe_duration, head, head_settled,  # noqa: E402
                      list_messages, metric, new_upload, offset_of, pair, patch,
                      patch_head, signup, start)


def interrupted(binary, wav):
    srv = start(binary)
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]
        loc = new_upload(srv, mom, len(wav))
        # a connection cut in the middle of a PATCH body: the bytes that came are kept
        s = srv.connect()
        s.sendall(patch_head(mom, loc, 0, len(wav)) + wav[:123457])
        until(lambda: (metric(srv, "jiayin_upload_buffer_bytes") or 0) > 0)  # it receives
        s.close()
        h = head_settled(srv, mom, loc)
        ok(h.status == 200 and offset_of(h) == 123457,
           "a PATCH cut mid-body: HEAD reports every byte that arrived (123457)",
           f"{h.status} {h.headers}")
        # a cut of more than the 256 KiB stage, with a reset instead of a close
        s = srv.connect()
        s.sendall(patch_head(mom, loc, 123457, len(wav) - 123457) + wav[123457:400000])
        time.sleep(0.3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
        h = head_settled(srv, mom, loc)
        got = offset_of(h)
        ok(h.status == 200 and got is not None and 123457 <= got <= 400000,
           f"a PATCH reset mid-body: what arrived is kept ({got} of 400000 sent)")
        # resume from the server's offset: the message, and its audio decodes
        r = patch(srv, mom, loc, got, wav[got:])
        mid = r.header("Jiayin-Message-Id")
        ok(r.status == 204 and mid, "the resumed PATCH completes the upload")
        # the two cut PATCHes are in the log, as 499 (the review: no line, no count); the
        # resumed PATCH's line awaited too, so that a third before it would be seen
        log = srv.wait_log(lambda text: text.count('"status":499') >= 2 and
                           logged_id(r) in text)
        cut = [json.loads(line) for line in log.splitlines() if '"status":499' in line]
        ok([(e["method"], e["route"]) for e in cut] == [("PATCH", "uploads.patch")] * 2,
           f"the cut PATCHes are logged as 499 ({[e.get('route') for e in cut]})")
        a = request(srv, "GET", f"/v1/families/{fam}/messages/{mid}/audio",
                    headers=bearer(mom["token"]), timeout=30)
        codec, dur = ffprobe_duration(a.body) if a.status == 200 else (None, None)
        ok(a.status == 200 and a.body[:4] == b"OggS" and codec == "opus" and dur and
           abs(dur - 13.745) < 0.2, f"its audio downloads and decodes: {codec}, {dur} s")
        plain = request(srv, "POST", f"/v1/families/{fam}/messages", wav,
                        headers=bearer(mom["token"]), timeout=60).json()["message"]
        tus = [m for m in list_messages(srv, mom) if m["id"] == mid][0]
        ok(tus["duration_ms"] == plain["duration_ms"] and tus["bytes"] == plain["bytes"] and
           tus["waveform"] == plain["waveform"],
           "the resumed upload's message is the plain upload's, byte for byte in size and "
           "waveform")

        # a chunked body that goes past Upload-Length: 413, what fitted is kept
        loc3 = new_upload(srv, mom, len(wav))
        patch(srv, mom, loc3, 0, wav[:400000])
        body = wav[400000:] + b"EXTRA" * 100
        s = srv.connect()
        s.sendall(f"PATCH {loc3} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
                  f"Authorization: Bearer {mom['token']}\r\n"
                  "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 400000\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode() +
                  b"".join(b"%x\r\n%s\r\n" % (len(c), c)
                           for c in (body[i:i + 7000] for i in range(0, len(body), 7000))) +
                  b"0\r\n\r\n")
        rr = Reader(s).response()
        s.close()
        h = head_settled(srv, mom, loc3)
        kept = offset_of(h)
        ok(rr and rr.status == 413 and rr.header("Tus-Resumable") == "1.0.0" and
           kept is not None and 400000 <= kept < len(wav),
           f"a chunked PATCH past Upload-Length: 413, the chunks within it kept ({kept})")
        r = patch(srv, mom, loc3, kept, wav[kept:])
        ok(r.status == 204 and r.header("Jiayin-Message-Id"), "and the rest completes it")

        # the signal drops: the server still believes the PATCH alive; the client resumes
        loc2 = new_upload(srv, mom, len(wav))
        zombie = srv.connect()
        zombie.sendall(patch_head(mom, loc2, 0, len(wav)) + wav[:50000])
        until(lambda: (metric(srv, "jiayin_upload_buffer_bytes") or 0) > 0)  # it receives
        second = patch(srv, mom, loc2, 0, wav)
        ok(second.status == 423 and second.reason == "Locked" and
           code_of(second) == "upload_locked" and second.header("Retry-After"),
           "a second PATCH while one receives: 423 Locked, not mixed in", second.reason)
        h = head(srv, mom, loc2)
        ok(h.status == 423, "the resuming HEAD: 423 while the old PATCH is cut")
        zombie.settimeout(5)
        try:  # closed: the end of the stream, or a reset (a read that times out: still open)
            gone = zombie.recv(100) == b""
        except ConnectionResetError:
            gone = True
        except socket.timeout:
            gone = False
        zombie.close()
        h = head_settled(srv, mom, loc2)
        ok(gone and h.status == 200 and offset_of(h) == 50000,
           "the old connection is closed and its 50000 bytes are kept")
        r = patch(srv, mom, loc2, 50000, wav[50000:])
        ok(r.status == 204 and r.header("Jiayin-Message-Id"), "and the resume completes")

        # /metrics counts the 423s above by their code, and a 412 (a PATCH without
        # Tus-Resumable) and a 416 (a range past the audio's end) by theirs, where all three
        # were lumped into "4xx"
        old = request(srv, "PATCH", loc2, b"x", headers=bearer(mom["token"]) +
                      [("Content-Type", "application/offset+octet-stream"),
                       ("Upload-Offset", "0")])
        past = request(srv, "GET", f"/v1/families/{fam}/messages/{mid}/audio",
                       headers=bearer(mom["token"]) + [("Range", "bytes=99999999-")])
        m = request(srv, "GET", "/metrics").body.decode()

        def counted(route, status):
            line = re.search(r'^jiayin_http_requests_total\{route="%s",status="%s"\} (\d+)$'
                             % (route, status), m, re.M)
            return int(line.group(1)) if line else 0
        ok(old.status == 412 and past.status == 416 and
           counted("uploads.patch", 423) >= 1 and counted("uploads.head", 423) >= 1 and
           counted("uploads.patch", 412) == 1 and counted("messages.audio", 416) == 1,
           "/metrics counts 412, 416 and 423 by their codes",
           f"{old.status} {past.status}\n" +
           "\n".join(ln for ln in m.splitlines() if "requests_total" in ln))
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit", srv.log_text()[-3000:])

    # a PATCH that stalls: 408 once the body idle time is over, its bytes kept
    srv = start(binary, "--body-idle-ms", "500")
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        s = srv.connect()
        s.sendall(patch_head(mom, loc, 0, len(wav)) + wav[:7777])
        rr = Reader(s).response()
        s.close()
        h = head_settled(srv, mom, loc)
        ok(rr and rr.status == 408 and rr.header("Tus-Resumable") == "1.0.0" and
           h.status == 200 and offset_of(h) == 7777,
           "a stalled PATCH: 408 (after its bytes are durable), then HEAD says 7777")
    finally:
        srv.stop()


def head_right_after_cut(binary, wav):
    """Cut PATCHes, each followed at once by a HEAD: the HEAD must count the cut PATCH's bytes
    (found when CI was busy: the HEAD's job finished before the PATCH's, found no lock and
    answered the old offset; a client resuming from it collides with the bytes landing)."""
    srv = start(binary)
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        off, stale, rounds = 0, [], 60
        for i in range(rounds):
            s = srv.connect()
            s.sendall(patch_head(mom, loc, off, len(wav) - off) + wav[off:off + 2000])
            s.close()
            got = offset_of(head_settled(srv, mom, loc))
            if got != off + 2000:
                stale.append((i, off + 2000, got))
            off = got if got is not None else off
        ok(not stale, f"{rounds} PATCHes cut after 2000 bytes, each followed at once by a HEAD: "
                      f"every HEAD counts the cut bytes (stale: {stale[:5]})")
        # Someone else's PATCHes of the upload (a made-up token), however many, do not hold
        # the owner's HEAD back (the review: waiting PATCHes were counted by upload alone).
        stranger = {"token": "x" * 43}
        locked = 0
        for _ in range(10):
            socks = [srv.connect() for _ in range(8)]
            try:
                for sock in socks:
                    sock.sendall(patch_head(stranger, loc, off, len(wav) - off) + b"\0" * 100)
                locked += sum(head(srv, mom, loc).status == 423 for _ in range(4))
            finally:
                for sock in socks:
                    sock.close()
        ok(locked == 0, f"80 PATCHes with a made-up token beside 40 HEADs of the owner: no "
                        f"HEAD is 423 ({locked})")
    finally:
        srv.stop()


def expiry_while_receiving(binary, wav):
    """A first PATCH that takes longer than the upload had left (upload-start-expiry-s: a
    whole WAV over 2G) and whose signal drops without a FIN: the resuming HEAD was 404, as for
    an expired upload, while the PATCH still held every byte (the audit: the phone made a new
    upload and sent the recording again from its first byte). It is 423 and cuts the PATCH,
    whose bytes then count, and the next HEAD gives their offset."""
    srv = start(binary, "--upload-start-expiry-s", "2")
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        s = srv.connect()
        s.sendall(patch_head(mom, loc, 0, len(wav)))
        sent = 0
        while sent < 70000:  # 3.5 s at 20 KB/s: past the two seconds, nothing counted yet
            s.sendall(wav[sent:sent + 2000])
            sent += 2000
            time.sleep(0.1)
        g = request(srv, "GET", loc, headers=bearer(mom["token"]))
        for _ in range(5):  # GET ends nothing: the PATCH goes on receiving
            s.sendall(wav[sent:sent + 2000])
            sent += 2000
            time.sleep(0.1)
        h = head(srv, mom, loc)  # the signal dropped: no FIN, the server does not know
        settled = head_settled(srv, mom, loc)
        s.close()
        ok(g.status == 423 and code_of(g) == "upload_locked" and g.header("Retry-After") == "1",
           "GET past the expiry of an upload whose PATCH still receives: 423, as HEAD, not 404",
           f"{g.status} {g.body[:80]!r}")
        ok(h.status == 423 and settled.status == 200 and offset_of(settled) == sent,
           f"a HEAD past the expiry of an upload whose PATCH still receives: 423, then its "
           f"{sent} bytes (the GET before it cut nothing)",
           f"{h.status} {settled.status} {offset_of(settled)}")
        r = patch(srv, mom, loc, sent, wav[sent:])
        ok(r.status == 204 and r.header("Jiayin-Message-Id"), "and the resume completes it",
           f"{r.status} {r.body!r}")
    finally:
        srv.stop()


def owners_gone_across_a_crash(binary, wav):
    """Erasing a family, or removing a member, erases its unfinished uploads right after its
    transaction; a crash between the two left them on the disk for a whole expiry (the review:
    a day's worth of a family's voices that nobody could reach or erase). The sweep at start
    (and every 10 minutes) now erases the uploads whose family was erased, whose member was
    removed, whose phone was revoked or whose child was unpaired from the kiosk, and keeps
    everyone else's, a kiosk child's still paired included, and those of a family the
    directory lost without recording its erasure (a directory restored wrong). The crash is made here by
    committing what the server's transactions commit, with the server stopped."""
    srv = start(binary)
    gone, kept = {}, {}
    try:
        fams = {name: signup(srv, name, "妈妈") for name in ("王家", "李家", "张家", "赵家", "孙家")}
        kid = pair(srv, fams["李家"], "child", "小明")
        phone2 = pair(srv, fams["张家"], "caregiver", "奶奶")
        zhao = fams["赵家"]
        fam = zhao["family"]["id"]
        ktok = add_kiosk(srv.data)

        def kiosk_child(name):
            r = request(srv, "POST", f"/v1/families/{fam}/members",
                        json.dumps({"member_name": name, "role": "child"}).encode(),
                        headers=[("Content-Type", "application/json")] + bearer(zhao["token"]))
            code = request(srv, "POST", "/v1/kiosk/pairing-codes", headers=bearer(ktok))
            link = request(srv, "POST", f"/v1/families/{fam}/kiosk-links", json.dumps(
                {"code": code.json()["code"], "member_id": r.json()["member"]["id"],
                 "pin": [1, 2, 3, 4]}).encode(),
                headers=[("Content-Type", "application/json")] + bearer(zhao["token"]))
            return link.json()["link"]["id"]

        def kiosk_login(link_id):
            r = request(srv, "POST", "/v1/kiosk/sessions",
                        json.dumps({"child": link_id, "pin": [1, 2, 3, 4]}).encode(),
                        headers=[("Content-Type", "application/json")] + bearer(ktok))
            return {"token": r.json()["token"], "family": {"id": fam}}
        hong, gang = kiosk_child("小红"), kiosk_child("小刚")
        for key, who in (("erased family", fams["王家"]), ("removed member", kid),
                         ("revoked phone", phone2), ("still there", zhao),
                         ("its family's other member", fams["李家"]),
                         ("a kiosk child still paired", hong),
                         ("a kiosk child unpaired", gang),
                         ("a family the directory lost", fams["孙家"])):
            if isinstance(who, str):
                who = kiosk_login(who)
            url = new_upload(srv, who, len(wav))
            r = patch(srv, who, url, 0, wav[:50000])
            assert offset_of(r) == 50000, (r.status, r.body)
            (kept if key in ("still there", "its family's other member",
                             "a kiosk child still paired", "a family the directory lost")
             else gone)[key] = (who, url)
        unpaired = request(srv, "DELETE", f"/v1/families/{fam}/kiosk-links/{gang}",
                           headers=bearer(zhao["token"]))
        assert unpaired.status == 204, unpaired.body
    finally:
        srv.stop()
    db = sqlite3.connect(os.path.join(srv.data, "directory.db"))
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("DELETE FROM families WHERE id = ?", (fams["王家"]["family"]["id"],))
    db.execute("INSERT INTO erased_families VALUES (?, 1)", (fams["王家"]["family"]["id"],))
    # 孙家's rows are gone with no record of an erasure: a directory that lost it (an older
    # one restored): its recordings wait for their expiry, as its mailbox waits in quarantine/
    db.execute("DELETE FROM families WHERE id = ?", (fams["孙家"]["family"]["id"],))
    db.execute("UPDATE members SET removed_ms = 1 WHERE id = ?", (kid["member"]["id"],))
    db.execute("UPDATE devices SET revoked_ms = 1 WHERE member_id = ?", (kid["member"]["id"],))
    db.execute("UPDATE devices SET revoked_ms = 1 WHERE id = ?", (phone2["device"]["id"],))
    db.commit()
    db.close()

    def parts():
        return {os.path.basename(p)[:-len(".part")] for p in glob.glob(
            os.path.join(srv.data, "uploads", "*", "*.part"))}
    ids = {k: url.rsplit("/", 1)[-1] for k, (_, url) in {**gone, **kept}.items()}
    before = parts()
    srv = Server(binary, data=srv.data)
    try:
        deadline = time.time() + 10
        while time.time() < deadline and any(ids[k] in parts() for k in gone):
            time.sleep(0.1)
        after = parts()
        ok(all(ids[k] in before for k in ids) and not any(ids[k] in after for k in gone),
           "at start, the unfinished uploads of an erased family, a removed member, a revoked "
           "phone and a child unpaired from the kiosk are erased",
           str({k: ids[k] in after for k in ids}))
        hong_now = request(srv, "POST", "/v1/kiosk/sessions",
                           json.dumps({"child": hong, "pin": [1, 2, 3, 4]}).encode(),
                           headers=[("Content-Type", "application/json")] + bearer(ktok))
        kept["a kiosk child still paired"] = ({"token": hong_now.json()["token"]},
                                              kept["a kiosk child still paired"][1])
        lost = kept.pop("a family the directory lost")
        ok(lost[1].rsplit("/", 1)[-1] in after,
           "the unfinished upload of a family the directory lost without erasing it stays")
        heads = {k: offset_of(head(srv, w, url)) for k, (w, url) in kept.items()}
        ok(heads == {k: 50000 for k in kept},
           "everyone else's stay (a kiosk child's still paired too), and resume where they "
           "were", str(heads))
    finally:
        srv.stop()

def main():
    binary = sys.argv[1]
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    interrupted(binary, wav)
    head_right_after_cut(binary, wav)
    expiry_while_receiving(binary, wav)
    owners_gone_across_a_crash(binary, wav)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
