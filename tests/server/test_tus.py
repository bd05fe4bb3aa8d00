#!/usr/bin/env python3
"""test_tus.py — resumable uploads (tus 1.0.0 under /v1/uploads) end to end, over raw HTTP (TAP).

usage: test_tus.py JIAYIN_BINARY HOLD_PRELOAD

HOLD_PRELOAD: tests/tools/hold_preload.c, built, to order two requests without a sleep.

Starts the real jiayin on free loopback ports and checks what docs/api.md ("Resumable uploads
(tus 1.0)") promises: discovery, creation and its refusals, HEAD, PATCH in pieces (and
chunked), the version, offset, type and length checks, another family's device answered like
an unknown id, ids that are not ids, termination, the per-device cap, expiry and the sweep (at
start too), a PATCH the server still believes alive cut by the resuming HEAD, a second PATCH
refused while one receives, bad audio at completion, a full
mailbox (or disk) that the next HEAD finishes once there is room, without a transcode for each
HEAD before, idempotency keys shared with the plain
upload, and buffer memory given back by bodies that never finished. Connections cut inside a
PATCH body are test_tus_cuts.py's.
"""
import base64
import io
import json
import os
import random
import re
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from email.utils import parsedate_to_datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import Reader, Server, request, scratch_dir, unanswered, until  # noqa: E402
sys.dont_write_bytecode = True  # apiclient's helper is imported: no __pycache__ in the tree
from apiclient import metric  # noqa: E402
from tap import finish, ok, skip  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample.wav")
TUS = [("Tus-Resumable", "1.0.0")]
OCTETS = [("Content-Type", "application/offset+octet-stream")]


def bearer(token):
    return [("Authorization", f"Bearer {token}")]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def start(binary, *args):
    return Server(binary, "--signups-per-hour", "1000", *args)


def signup(srv, family="王家", member="妈妈"):
    r = request(srv, "POST", "/v1/families",
                json.dumps({"family_name": family, "member_name": member}).encode(),
                headers=[("Content-Type", "application/json")])
    assert r.status == 201, r.body
    return r.json()


def pair(srv, parent, role, name):
    fam = parent["family"]["id"]
    r = request(srv, "POST", f"/v1/families/{fam}/pairing-codes",
                json.dumps({"role": role, "member_name": name}).encode(),
                headers=[("Content-Type", "application/json")] + bearer(parent["token"]))
    assert r.status == 201, r.body
    p = request(srv, "POST", "/v1/pair", json.dumps({"code": r.json()["code"]}).encode(),
                headers=[("Content-Type", "application/json")])
    assert p.status == 201, p.body
    return p.json()


def create(srv, who, length, meta=None, headers=None):
    if meta is None:
        meta = f"family_id {b64(who['family']['id'])}"
    hdrs = TUS + bearer(who["token"]) + [("Upload-Length", str(length))]
    if meta != "":
        hdrs.append(("Upload-Metadata", meta))
    return request(srv, "POST", "/v1/uploads", headers=hdrs if headers is None else headers)


def new_upload(srv, who, length, meta=None):
    r = create(srv, who, length, meta)
    assert r.status == 201, (r.status, r.body)
    return r.header("Location")


def head(srv, who, url, extra=(), timeout=5.0):
    return request(srv, "HEAD", url, headers=TUS + bearer(who["token"]) + list(extra),
                   timeout=timeout)


def head_settled(srv, who, url, seconds=10):
    """HEAD until the upload is not locked (a cut PATCH is being made durable)."""
    deadline = time.time() + seconds
    while True:
        r = head(srv, who, url)
        if r.status != 423 or time.time() > deadline:
            return r
        time.sleep(0.05)


def patch(srv, who, url, offset, data, extra=(), timeout=60):
    return request(srv, "PATCH", url, data,
                   headers=TUS + bearer(who["token"]) + OCTETS +
                   [("Upload-Offset", str(offset))] + list(extra), timeout=timeout)


def patch_head(who, url, offset, length, extra=""):
    return (f"PATCH {url} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
            f"Authorization: Bearer {who['token']}\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def offset_of(r):
    v = r.header("Upload-Offset")
    return int(v) if v is not None and v.isdigit() else None


def files_of(srv):
    root = os.path.join(srv.data, "uploads")
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.join(os.path.relpath(d, root), f) for f in fs]
    return sorted(out)


def list_messages(srv, who):
    fam = who["family"]["id"]
    r = request(srv, "GET", f"/v1/families/{fam}/messages?since=0", headers=bearer(who["token"]))
    return r.json()["messages"]


def ffprobe_duration(data):
    with tempfile.NamedTemporaryFile(suffix=".ogg") as f:
        f.write(data)
        f.flush()
        p = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                            "format=duration:stream=codec_name", "-of", "json", f.name],
                           capture_output=True, text=True)
        if p.returncode != 0:
            return None, None
        j = json.loads(p.stdout)
        return j["streams"][0]["codec_name"], float(j["format"]["duration"])


def code_of(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def protocol(binary, wav):
    srv = start(binary)
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]

        # discovery
        r = request(srv, "OPTIONS", "/v1/uploads")
        ok(r.status == 204 and r.header("Tus-Version") == "1.0.0" and
           r.header("Tus-Resumable") == "1.0.0" and
           set((r.header("Tus-Extension") or "").split(",")) ==
           {"creation", "termination", "expiration"} and
           r.header("Tus-Max-Size") == str(200 << 20),
           "OPTIONS: 204 with Tus-Version, Tus-Extension, Tus-Max-Size, no token needed",
           f"{r.status} {r.headers}")

        # the version
        for hdrs, what in ((bearer(mom["token"]) + [("Upload-Length", "10")], "missing"),
                           ([("Tus-Resumable", "0.2.2")] + bearer(mom["token"]) +
                            [("Upload-Length", "10")], "another")):
            r = request(srv, "POST", "/v1/uploads", headers=hdrs)
            ok(r.status == 412 and r.header("Tus-Version") == "1.0.0" and
               code_of(r) == "tus_version_unsupported",
               f"{what} Tus-Resumable: 412 with Tus-Version")

        # creation: who, and what
        r = create(srv, {"token": "x" * 43, "family": mom["family"]}, 100)
        ok(r.status == 401 and r.header("Tus-Resumable") == "1.0.0",
           "a bad token: 401, still with Tus-Resumable")
        r = request(srv, "POST", "/v1/uploads", headers=TUS + [
            ("Upload-Length", "10"), ("Upload-Metadata", f"family_id {b64(fam)}")])
        ok(r.status == 401 and r.header("WWW-Authenticate") == "Bearer", "no token: 401")
        r = request(srv, "POST", "/v1/uploads", headers=TUS + [("Upload-Length", "-1")])
        ok(r.status == 401, "no token is 401 before any complaint about the headers")
        for length, status, code in (("", 400, "invalid_upload_length"),
                                     ("-1", 400, "invalid_upload_length"),
                                     ("1e3", 400, "invalid_upload_length"),
                                     (" 12 3", 400, "invalid_upload_length"),
                                     ("99999999999999999999", 400, "invalid_upload_length"),
                                     (str((200 << 20) + 1), 413, "upload_too_large"),
                                     ("0", 422, "audio_truncated")):
            r = create(srv, mom, length)
            ok(r.status == status and code_of(r) == code,
               f"Upload-Length {length!r}: {status} {code}", f"{r.status} {r.body!r}")
        r = create(srv, mom, 0, headers=TUS + bearer(mom["token"]) +
                   [("Upload-Defer-Length", "1"), ("Upload-Metadata", f"family_id {b64(fam)}")])
        ok(r.status == 400 and code_of(r) == "invalid_upload_length",
           "Upload-Defer-Length (not offered): 400")
        r = create(srv, mom, 100, headers=TUS + bearer(mom["token"]) +
                   [("Upload-Length", "100"), ("Upload-Length", "100"),
                    ("Upload-Metadata", f"family_id {b64(fam)}")])
        ok(r.status == 400 and code_of(r) == "invalid_upload_length",
           "Upload-Length twice: 400 invalid_upload_length", f"{r.status} {r.body!r}")
        other = signup(srv, "李家", "爸爸")
        for meta, status, code, what in (
                ("", 400, "invalid_upload_metadata", "no metadata"),
                (f"to {b64(mom['member']['id'])}", 400, "invalid_upload_metadata",
                 "no family_id"),
                ("family_id !!!notbase64", 400, "invalid_upload_metadata", "not base64"),
                (f"family_id {b64(fam)},family_id {b64(fam)}", 400, "invalid_upload_metadata",
                 "family_id twice"),
                (f"family_id {b64('../../etc')}", 400, "invalid_upload_metadata",
                 "a family_id that is not an id"),
                (f"family_id {b64(other['family']['id'])}", 404, "not_found",
                 "another family's id"),
                (f"family_id {b64(fam)},to {b64('nobody')}", 400, "invalid_recipient",
                 "a to that is not an id"),
                (f"family_id {b64(fam)},to {b64(other['member']['id'])}", 400,
                 "invalid_recipient", "a recipient from another family"),
                (f"family_id {b64(fam)},idempotency_key {b64('a' + chr(1))}", 400,
                 "invalid_idempotency_key", "an idempotency key with a control byte"),
                (f"family_id {b64(fam)},idempotency_key {b64('rec-1' + chr(0))}", 400,
                 "invalid_idempotency_key", "an idempotency key with a NUL byte"),
                (f"family_id {b64(fam)},idempotency_key {b64('k' * 129)}", 400,
                 "invalid_idempotency_key", "an idempotency key of 129 bytes"),
                (f"family_id {b64(fam)},idempotency_key {b64('k' * 300)}", 400,
                 "invalid_idempotency_key", "an idempotency key of 300 bytes"),
                (f"family_id {b64(fam)},to {b64('m' * 300)}", 400,
                 "invalid_upload_metadata", "a to of 300 bytes")):
            r = create(srv, mom, 100, meta)
            ok(r.status == status and code_of(r) == code, f"creation with {what}: {status}",
               f"{r.status} {r.body!r}")
        ok(files_of(srv) == [], "refused creations leave nothing on disk", str(files_of(srv)))
        # HTTP's list syntax allows a tab as well as a space around the commas: `to` after
        # ",\t" is still the recipient, not a key "\tto" ignored (a message for one member
        # would have gone to the whole family)
        r = create(srv, mom, 1000, f"family_id {b64(fam)},\tto {b64(mom['member']['id'])}")
        g = request(srv, "GET", r.header("Location") or "/v1/uploads/none",
                    headers=bearer(mom["token"]))
        gj = g.json().get("upload", {}) if g.status == 200 else {}
        ok(r.status == 201 and gj.get("to") == mom["member"]["id"],
           "creation with a tab after a comma: `to` is read", f"{r.status} {g.body!r}")
        if r.status == 201:
            request(srv, "DELETE", r.header("Location"), headers=TUS + bearer(mom["token"]))

        t0 = time.time()
        r = create(srv, mom, len(wav),
                   f"filename {b64('录音.wav')},family_id {b64(fam)},flag,"
                   f"idempotency_key {b64('rec-1')}")
        loc = r.header("Location") or ""
        exp = r.header("Upload-Expires")
        ok(r.status == 201 and re.fullmatch(r"/v1/uploads/[0-9a-z]{26}", loc) and exp and
           abs(parsedate_to_datetime(exp).timestamp() - (t0 + 3600)) < 5 and
           r.header("Tus-Resumable") == "1.0.0",
           "creation: 201 with Location and Upload-Expires an hour ahead, as nothing arrived "
           "yet (other metadata ignored)", f"{r.status} {r.headers}")
        uid = loc.rsplit("/", 1)[-1]
        h = head(srv, mom, loc)
        ok(h.status == 200 and offset_of(h) == 0 and h.header("Upload-Length") == str(len(wav))
           and h.header("Cache-Control") == "no-store" and h.header("Upload-Expires"),
           "HEAD: offset 0, the length, Cache-Control: no-store")
        # tus: a HEAD MUST carry the metadata given at creation; the keys the server keeps,
        # in base64 as sent (the client's filename is not kept)
        echoed = dict(p.strip().split(" ", 1) for p in (h.header("Upload-Metadata") or
                                                         "").split(",") if " " in p)
        ok(echoed == {"family_id": b64(fam), "idempotency_key": b64("rec-1")},
           "HEAD: Upload-Metadata echoes family_id and idempotency_key",
           repr(h.header("Upload-Metadata")))

        # PATCH's checks, each leaving the offset where it was
        r = patch(srv, mom, loc, 0, b"x" * 10, extra=[("Tus-Resumable", "2.0.0")])
        ok(r.status == 412 and code_of(r) == "tus_version_unsupported" and
           r.header("Tus-Version") == "1.0.0",
           "PATCH with two Tus-Resumable headers: 412 tus_version_unsupported, with Tus-Version",
           f"{r.status} {r.body!r}")
        r = request(srv, "PATCH", loc, b"x" * 10, headers=bearer(mom["token"]) + OCTETS +
                    [("Upload-Offset", "0")])
        ok(r.status == 412 and r.header("Tus-Version") == "1.0.0", "PATCH without the version: 412")
        r = request(srv, "PATCH", loc, b"x" * 10, headers=TUS + OCTETS + [("Upload-Offset", "x")])
        ok(r.status == 401, "PATCH without a token: 401 before the bad Upload-Offset")
        r = request(srv, "PATCH", loc, b"x" * 10, headers=TUS + bearer(mom["token"]) +
                    [("Content-Type", "application/octet-stream"), ("Upload-Offset", "0")])
        ok(r.status == 415 and code_of(r) == "unsupported_media_type",
           "PATCH with another Content-Type: 415")
        for off in ("", "-5", "0x10", "1 0", "18446744073709551616"):
            r = patch(srv, mom, loc, off, b"x" * 10)
            ok(r.status == 400 and code_of(r) == "invalid_upload_offset",
               f"Upload-Offset {off!r}: 400")
        r = patch(srv, mom, loc, 5, wav[5:100])
        ok(r.status == 409 and code_of(r) == "offset_mismatch" and
           r.header("Tus-Resumable") == "1.0.0", "the wrong offset: 409 offset_mismatch")
        r = patch(srv, mom, loc, 0, wav + b"more")
        ok(r.status == 413 and code_of(r) == "beyond_upload_length",
           "a body past Upload-Length: 413 before a byte is read")
        s = srv.connect()
        s.sendall(patch_head(mom, loc, 7, 1000, "Expect: 100-continue\r\n"))
        raw = b""  # the first answer's head as sent: Reader passes over a 100 Continue
        while b"\r\n\r\n" not in raw:
            d = s.recv(65536)
            if not d:
                break
            raw += d
        rd = Reader(s)
        rd.buf = raw
        rr = rd.response()
        s.close()
        ok(raw.startswith(b"HTTP/1.1 409 ") and rr is not None and rr.status == 409 and
           code_of(rr) == "offset_mismatch",
           "Expect: 100-continue with the wrong offset: 409, no 100 Continue, no body sent",
           raw[:60])
        ok(offset_of(head(srv, mom, loc)) == 0, "refused PATCHes wrote nothing")

        # PATCH in pieces: plain, chunked, and 100-continue
        r1 = patch(srv, mom, loc, 0, wav[:100000])
        ok(r1.status == 204 and offset_of(r1) == 100000 and r1.header("Upload-Expires") and
           abs(parsedate_to_datetime(r1.header("Upload-Expires")).timestamp() -
               (time.time() + 86400)) < 5 and r1.header("Tus-Resumable") == "1.0.0",
           "PATCH 0..100000: 204 with the new offset, and Upload-Expires a day ahead")
        s = srv.connect()
        body = wav[100000:250000]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c)
                          for c in (body[i:i + 7000] for i in range(0, len(body), 7000)))
        s.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
                  f"Authorization: Bearer {mom['token']}\r\n"
                  "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 100000\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n")
        rr = Reader(s).response()
        ok(rr and rr.status == 204 and offset_of(rr) == 250000, "a chunked PATCH: 204")
        # the same connection goes on: keep-alive after a claimed body
        s.sendall(f"HEAD {loc} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
                  f"Authorization: Bearer {mom['token']}\r\n\r\n".encode())
        rr = Reader(s).response(head_request=True)
        s.close()
        ok(rr and rr.status == 200 and offset_of(rr) == 250000,
           "and the connection carries the next request")
        s = srv.connect()
        s.sendall(patch_head(mom, loc, 250000, 50000, "Expect: 100-continue\r\n"))
        cont = s.recv(100)
        s.sendall(wav[250000:300000])
        rr = Reader(s).response()
        s.close()
        ok(cont.startswith(b"HTTP/1.1 100 Continue") and rr and rr.status == 204 and
           offset_of(rr) == 300000, "Expect: 100-continue: 100, then the body, then 204")

        # someone else: 404 like an unknown id
        unknown = "/v1/uploads/" + "0" * 26
        for method in ("HEAD", "GET", "PATCH", "DELETE"):
            hdrs = TUS + bearer(other["token"])
            body = b""
            if method == "PATCH":
                hdrs += OCTETS + [("Upload-Offset", "300000")]
                body = b"x"
            a = request(srv, method, loc, body, headers=hdrs)
            b = request(srv, method, unknown, body, headers=hdrs)
            ok(a.status == 404 and b.status == 404 and a.body == b.body,
               f"{method} by another family's device: 404 exactly like an unknown id")
        dad = pair(srv, mom, "parent", "爸爸")
        ok(head(srv, dad, loc).status == 404,
           "another device of the same family does not see it either")
        for bad in ("/v1/uploads/" + "A" * 26, "/v1/uploads/" + "0" * 27, "/v1/uploads/..",
                    "/v1/uploads/%2e%2e%2fsecret", "/v1/uploads/../../etc/passwd",
                    f"/v1/uploads/{uid}/x", f"/v1/uploads/{uid[:-1]}"):
            r = head(srv, mom, bad)
            ok(r.status == 404,
               f"HEAD {bad}: 404 as an unknown id, nothing more", f"{r.status} {r.headers}")
        # the token first, as everywhere: a bad one is 401 whatever the id, then a bad id 404
        for method in ("HEAD", "GET", "PATCH", "DELETE"):
            for bad in ("/v1/uploads/short", "/v1/uploads/" + "A" * 26):
                extra = OCTETS + [("Upload-Offset", "0")] if method == "PATCH" else []
                body = b"x" if method == "PATCH" else b""
                r = request(srv, method, bad, body, headers=TUS + bearer("nope") + extra)
                g = request(srv, method, bad, body, headers=TUS + bearer(mom["token"]) + extra)
                ok(r.status == 401 and r.header("WWW-Authenticate") == "Bearer" and
                   g.status == 404,
                   f"{method} {bad} with a bad token: 401 with WWW-Authenticate, before the "
                   f"malformed id's 404", f"{r.status} {r.header('WWW-Authenticate')} {g.status}")
        ok(offset_of(head(srv, mom, loc)) == 300000, "the upload is untouched by all that")

        # the rest: the message, exactly like the plain upload
        r = patch(srv, mom, loc, 300000, wav[300000:])
        mid = r.header("Jiayin-Message-Id")
        ok(r.status == 204 and offset_of(r) == len(wav) and mid and
           re.fullmatch(r"[0-9a-z]{26}", mid),
           "the last PATCH: 204 once the message is stored, with Jiayin-Message-Id",
           f"{r.status} {r.body!r}")
        msgs = list_messages(srv, mom)
        ok([m["id"] for m in msgs] == [mid] and msgs[0]["sender"] == mom["member"]["id"] and
           msgs[0]["to"] is None and msgs[0]["duration_ms"] > 10000,
           "the message is listed, from the uploader, to everyone")
        h = head(srv, mom, loc)
        ok(h.status == 200 and offset_of(h) == len(wav) and
           h.header("Jiayin-Message-Id") == mid,
           "a HEAD after completion names the message (for a client that lost the answer)")
        g = request(srv, "GET", loc, headers=bearer(mom["token"]))
        gj = g.json().get("upload", {}) if g.status == 200 else {}
        ok(gj.get("message_id") == mid and gj.get("offset") == len(wav) and
           gj.get("family_id") == fam, "GET shows the same as JSON")
        r = patch(srv, mom, loc, len(wav), b"")
        ok(r.status == 204 and r.header("Jiayin-Message-Id") == mid,
           "the final PATCH sent again (an empty one): 204 with the same message")
        ok(not any(f.endswith(".part") for f in files_of(srv)),
           "the finished upload's bytes are gone from data/uploads")
        # the same idempotency key through the plain upload: the same message
        p = request(srv, "POST", f"/v1/families/{fam}/messages", wav,
                    headers=bearer(mom["token"]) + [("Idempotency-Key", "rec-1")], timeout=60)
        ok(p.status == 200 and p.json()["message"]["id"] == mid,
           "the upload's idempotency_key is the plain upload's Idempotency-Key")
        # and the other way round: a plain upload first, then tus with its key
        p = request(srv, "POST", f"/v1/families/{fam}/messages", wav,
                    headers=bearer(mom["token"]) + [("Idempotency-Key", "rec-2")], timeout=60)
        r = create(srv, mom, len(wav), f"family_id {b64(fam)},idempotency_key {b64('rec-2')}")
        ok(p.status == 201 and r.status == 201 and offset_of(r) == len(wav) and
           r.header("Jiayin-Message-Id") == p.json()["message"]["id"] and
           len(list_messages(srv, mom)) == 2,
           "a key the plain upload used: its message at creation, whole, no second")

        # to one member, from a child
        kid = pair(srv, mom, "child", "小明")
        loc3 = new_upload(srv, kid, len(wav), f"family_id {b64(fam)},to {b64(mom['member']['id'])}")
        r = patch(srv, kid, loc3, 0, wav)
        m3 = [m for m in list_messages(srv, mom) if m["id"] == r.header("Jiayin-Message-Id")]
        ok(r.status == 204 and m3 and m3[0]["to"] == mom["member"]["id"] and
           m3[0]["sender"] == kid["member"]["id"], "metadata `to`: the message is to that member")

        # termination
        loc4 = new_upload(srv, mom, len(wav))
        patch(srv, mom, loc4, 0, wav[:1000])
        before = files_of(srv)
        r = request(srv, "DELETE", loc4, headers=bearer(mom["token"]))
        ok(r.status == 412, "DELETE without the version: 412")
        r = request(srv, "DELETE", loc4, headers=TUS + bearer(other["token"]))
        ok(r.status == 404, "another family cannot terminate it")
        r = request(srv, "DELETE", loc4, headers=TUS + bearer(mom["token"]))
        id4 = loc4.rsplit("/", 1)[-1]
        ok(r.status == 204 and any(id4 in f for f in before) and
           not any(id4 in f for f in files_of(srv)), "DELETE: 204 and its files are gone")
        ok(head(srv, mom, loc4).status == 404 and
           patch(srv, mom, loc4, 1000, b"x").status == 404 and
           request(srv, "DELETE", loc4, headers=TUS + bearer(mom["token"])).status == 404,
           "after termination: 404 for HEAD, PATCH and DELETE")

        # bad audio at completion: the codec's answer, nothing stored, the upload gone
        n_before = len(list_messages(srv, mom))
        junk = b"RIFF....WAVEjunk" * 1000
        loc5 = new_upload(srv, mom, len(junk))
        patch(srv, mom, loc5, 0, junk[:5000])
        r = patch(srv, mom, loc5, 5000, junk[5000:])
        ok(r.status == 422 and (code_of(r) or "").startswith("audio_") and
           r.header("Tus-Resumable") == "1.0.0",
           f"bad audio at completion: 422 {code_of(r)}, as the plain upload")
        ok(len(list_messages(srv, mom)) == n_before and head(srv, mom, loc5).status == 404 and
           not any(loc5.rsplit("/", 1)[-1] in f for f in files_of(srv)),
           "nothing stored, and the refused upload is gone")
        short = wav[:300]
        loc6 = new_upload(srv, mom, len(short))
        r = patch(srv, mom, loc6, 0, short)
        ok(r.status == 422, "a truncated WAV at completion: 422")
        # every tus answer says Tus-Resumable, errors included
        r = head(srv, mom, unknown)
        ok(r.header("Tus-Resumable") == "1.0.0", "a 404 says Tus-Resumable too")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit (no leaks under ASan)", srv.log_text()[-3000:])


def cap_while_receiving(binary, wav):
    """An upload whose expiry passes while a PATCH is still receiving it holds its place: the
    PATCH's end renews it. It was left out of the count, so the device got one more."""
    srv = start(binary, "--upload-expiry-s", "2", "--uploads-per-device", "1")
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        s = srv.connect()
        s.sendall(patch_head(mom, loc, 0, len(wav)) + wav[:20000])
        time.sleep(3)  # past the upload's expiry, the PATCH still receiving
        r = create(srv, mom, len(wav))
        ra = int(r.header("Retry-After") or 0)
        ok(r.status == 429 and code_of(r) == "too_many_uploads" and 1 <= ra <= 60,
           "uploads-per-device 1: an upload past its expiry while a PATCH receives it still "
           "counts (429 too_many_uploads, Retry-After within a minute)",
           f"{r.status} Retry-After {r.header('Retry-After')} {r.body[:200]!r}")
        s.sendall(wav[20000:])
        s.settimeout(30)
        answer = s.recv(4096)
        s.close()
        ok(answer.startswith(b"HTTP/1.1 204"), "and that PATCH ends the upload as a message",
           answer[:200])
        ok(create(srv, mom, len(wav)).status == 201, "which frees its place")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit", srv.log_text()[-2000:])


def limits(binary, wav):
    srv = start(binary, "--upload-expiry-s", "2", "--uploads-per-device", "2",
                "--buffer-memory", "1048576")
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]
        t0 = time.time()
        r = create(srv, mom, len(wav))
        exp = r.header("Upload-Expires")
        ok(r.status == 201 and abs(parsedate_to_datetime(exp).timestamp() - (t0 + 2)) < 1.5,
           "upload-expiry-s 2: Upload-Expires two seconds ahead")
        loc = r.header("Location")
        loc2 = new_upload(srv, mom, len(wav))
        r = create(srv, mom, len(wav))
        ok(r.status == 429 and code_of(r) == "too_many_uploads" and
           r.header("Retry-After") in ("1", "2"),
           "uploads-per-device 2: the third unfinished upload is 429 too_many_uploads, "
           "Retry-After when the first of them expires (two seconds)",
           f"{r.status} {r.header('Retry-After')}")
        dad = pair(srv, mom, "parent", "爸爸")
        ok(create(srv, dad, len(wav)).status == 201, "another device has its own cap")
        request(srv, "DELETE", loc2, headers=TUS + bearer(mom["token"]))
        ok(create(srv, mom, len(wav)).status == 201, "a terminated upload frees its place")
        patch(srv, mom, loc, 0, wav[:1000])
        ok(len(files_of(srv)) >= 4, "the uploads are on disk", str(files_of(srv)))
        time.sleep(3)
        ok(head(srv, mom, loc).status == 404, "two seconds after its last change: 404")
        empty = patch(srv, mom, loc, 1000, b"", extra=[("Content-Length", "0")])
        more = patch(srv, mom, loc, 1000, wav[1000:2000])
        ok(empty.status == more.status == 404 and code_of(empty) == code_of(more) == "not_found",
           "and a PATCH then: 404 not_found, with no bytes as with some (tus: 404 or 410)",
           f"{empty.status} {code_of(empty)}, {more.status} {code_of(more)}")
        deadline = time.time() + 10  # the sweep runs every second
        while time.time() < deadline and os.listdir(os.path.join(srv.data, "uploads")):
            time.sleep(0.2)
        ok(files_of(srv) == [] and os.listdir(os.path.join(srv.data, "uploads")) == [],
           "and the sweep removed the files and the device directories", str(files_of(srv)))

        # bodies that never finished give their buffer back (1 MiB: four at a time)
        for i in range(6):
            loc = new_upload(srv, mom, len(wav))
            s = srv.connect()
            s.sendall(patch_head(mom, loc, 0, len(wav)) + wav[:1000])
            time.sleep(0.1)
            s.close()
            head_settled(srv, mom, loc)
            s = srv.connect()
            s.sendall(f"POST /v1/families/{fam}/messages HTTP/1.1\r\nHost: t\r\n"
                      f"Authorization: Bearer {mom['token']}\r\n"
                      f"Content-Length: {len(wav)}\r\n\r\n".encode() + wav[:1000])
            time.sleep(0.1)
            s.close()
            request(srv, "DELETE", loc, headers=TUS + bearer(mom["token"]))
        until(lambda: metric(srv, "jiayin_buffer_bytes") == 0)  # the last ones given back
        r = request(srv, "POST", f"/v1/families/{fam}/messages", wav,
                    headers=bearer(mom["token"]), timeout=60)
        loc = new_upload(srv, mom, len(wav))
        p = patch(srv, mom, loc, 0, wav)
        ok(r.status == 201 and p.status == 204,
           "after 12 bodies cut short, uploads still get buffers (no 503 busy)",
           f"{r.status} {p.status} {r.body!r}")
        data = srv.data
    finally:
        srv.stop()

    # at start: expired uploads and a crash's leftovers are swept
    srv = start(binary, "--upload-expiry-s", "2")
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        patch(srv, mom, loc, 0, wav[:500])
    finally:
        srv.stop()
    data = srv.data
    devdir = os.path.join(data, "uploads", mom["device"]["id"])
    for name in ("0" * 26 + ".part", "1" * 26 + ".info.tmp"):
        with open(os.path.join(devdir, name), "wb") as f:
            f.write(b"leftover")
    fresh = "2" * 26 + ".part"
    with open(os.path.join(devdir, fresh), "wb") as f:
        f.write(b"a .part alone")
    time.sleep(2.5)
    srv = Server(binary, "--upload-expiry-s", "2", data=data)
    try:
        deadline = time.time() + 5
        while time.time() < deadline and (files_of(srv) or
                                          "leftovers removed" not in srv.log_text()):
            time.sleep(0.1)
        ok(files_of(srv) == [] and "leftovers removed" in srv.log_text(),
           "at start the sweep removes expired uploads and a crash's leftovers",
           str(files_of(srv)))
    finally:
        srv.stop()


def full_mailbox(binary, wav):
    srv = start(binary)
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]
        loc = new_upload(srv, mom, len(wav))  # while there is room (a full family opens none)
        r = request(srv, "PATCH", f"/v1/families/{fam}",
                    json.dumps({"quota_bytes": 1}).encode(),
                    headers=[("Content-Type", "application/json")] + bearer(mom["token"]))
        ok(r.status == 200, "a parent sets the family's quota to 1 byte", f"{r.status} {r.body!r}")
        r = patch(srv, mom, loc, 0, wav)
        ok(r.status == 507 and code_of(r) == "quota_exceeded",
           "the whole upload into a full mailbox: 507 quota_exceeded, as the plain upload")
        h = head(srv, mom, loc)
        ok(h.status == 507 and list_messages(srv, mom) == [],
           "HEAD tries again (still full): 507, nothing stored")
        request(srv, "PATCH", f"/v1/families/{fam}",
                json.dumps({"quota_bytes": 1 << 30}).encode(),
                headers=[("Content-Type", "application/json")] + bearer(mom["token"]))
        h = head(srv, mom, loc)
        msgs = list_messages(srv, mom)
        ok(h.status == 200 and offset_of(h) == len(wav) and h.header("Jiayin-Message-Id") and
           [m["id"] for m in msgs] == [h.header("Jiayin-Message-Id")],
           "with room again, the next HEAD makes the message and names it")
        h2 = head(srv, mom, loc)
        ok(h2.header("Jiayin-Message-Id") == h.header("Jiayin-Message-Id") and
           len(list_messages(srv, mom)) == 1, "once, not twice")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit")


def silent_wav(seconds):
    """Digital silence, 16 kHz mono: the codec reads it all, then refuses it (audio_silent)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(seconds * 32000))
    return out.getvalue()


def transcodes_counted(binary, wav):
    """jiayin_transcodes_total and jiayin_transcode_seconds_total, which an operator sizes the
    machine by, count every transcode the server runs, and jiayin_transcodes_not_stored_total
    those that stored no message. Only a plain upload whose message was stored was counted (the
    review): a recording refused after its transcode (422 audio_silent, 507 quota_exceeded)
    spent its CPU uncounted, on either upload path."""
    srv = start(binary)
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]

        def plain(data):
            return request(srv, "POST", f"/v1/families/{fam}/messages", data,
                           headers=bearer(mom["token"]), timeout=60)

        def counts():
            return (metric(srv, "jiayin_transcodes_total"),
                    metric(srv, "jiayin_transcodes_not_stored_total"),
                    metric(srv, "jiayin_transcode_seconds_total") or 0)

        quiet = silent_wav(20)
        loc = new_upload(srv, mom, len(wav))
        done = patch(srv, mom, loc, 0, wav)
        stored = plain(wav)
        after_stored = counts()
        silent = plain(quiet)
        loc = new_upload(srv, mom, len(quiet))
        tus_silent = patch(srv, mom, loc, 0, quiet)
        loc = new_upload(srv, mom, len(wav))  # while there is room (a full family opens none)
        # Room for the plain upload's WAV to arrive beside the upload's (64 times the room),
        # not for its message (46 KB of Opus)
        used = request(srv, "GET", f"/v1/families/{fam}",
                       headers=bearer(mom["token"])).json()["family"]["usage_bytes"]
        set_quota(srv, mom, used + len(wav) // 20)
        full = plain(wav)
        tus_full = patch(srv, mom, loc, 0, wav)
        after = counts()
        answers = [done.status, stored.status, silent.status, code_of(silent),
                   tus_silent.status, code_of(tus_silent), full.status, code_of(full),
                   tus_full.status, code_of(tus_full)]
        ok(answers == [204, 201, 422, "audio_silent", 422, "audio_silent", 507,
                       "quota_exceeded", 507, "quota_exceeded"] and
           after_stored[:2] == (2, 0) and after[:2] == (6, 4) and after[2] > after_stored[2],
           "every transcode is counted in /metrics, a resumable upload's finish too: 2 stored, "
           "then 4 more whose recordings were refused after it (silent, a full mailbox), "
           "counted as transcodes that stored nothing, their time added",
           f"{answers}; (transcodes, not stored, seconds) {after_stored} then {after}")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit")


def cpu_seconds(srv):
    """The CPU time the server has spent so far, all its threads (user and system)."""
    with open(f"/proc/{srv.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def costs(srv, act):
    """act()'s answer and the server's CPU seconds while it was answered."""
    before = cpu_seconds(srv)
    r = act()
    return r, cpu_seconds(srv) - before


def set_quota(srv, who, quota):
    r = request(srv, "PATCH", f"/v1/families/{who['family']['id']}",
                json.dumps({"quota_bytes": quota}).encode(),
                headers=[("Content-Type", "application/json")] + bearer(who["token"]))
    assert r.status == 200, (r.status, r.body)


def refused_waits_for_room(binary):
    """A whole upload whose message the full mailbox refused (507 quota_exceeded) is not
    transcoded again by each HEAD or PATCH of a phone retrying, until the room it needs is there
    (review finding: each one spent the whole transcode, 12 s of CPU for a 15-minute WAV in a
    release build, to answer the same 507; the app retries every few seconds). Measured as the
    server's CPU time: a retry costs less than a quarter of the first finish (a few ms here
    against two seconds), and once the quota leaves room the next HEAD makes the message."""
    srv = start(binary)
    try:
        mom = signup(srv)
        clip = noise_wav(120)  # about 285 KB once stored
        loc = new_upload(srv, mom, len(clip))
        set_quota(srv, mom, 1)
        first, spent = costs(srv, lambda: patch(srv, mom, loc, 0, clip, timeout=120))
        ok(first.status == 507 and code_of(first) == "quota_exceeded" and spent > 0.2,
           "the whole upload into a full mailbox: 507 quota_exceeded after its transcode",
           f"{first.status} {first.body[:80]!r} {spent:.2f} s of CPU")
        retries = [costs(srv, lambda: head(srv, mom, loc, timeout=120)) for _ in range(3)]
        retries.append(costs(srv, lambda: patch(srv, mom, loc, len(clip), b"")))
        set_quota(srv, mom, 50000)  # more room, but less than the message needs
        retries.append(costs(srv, lambda: head(srv, mom, loc, timeout=120)))
        codes = [r.status for r, _ in retries]
        cheap = [round(c, 3) for _, c in retries]
        ok(codes == [507] * 5 and code_of(retries[3][0]) == "quota_exceeded" and
           all(c < spent / 4 for c in cheap) and list_messages(srv, mom) == [],
           "while the mailbox lacks the room, each HEAD or empty PATCH is the same 507 without "
           "transcoding again (a quota raised too little too)",
           f"{codes}, CPU {cheap} s against {spent:.2f} s")
        set_quota(srv, mom, 1 << 30)
        h, again = costs(srv, lambda: head(srv, mom, loc, timeout=120))
        ok(h.status == 200 and offset_of(h) == len(clip) and h.header("Jiayin-Message-Id") and
           [m["id"] for m in list_messages(srv, mom)] == [h.header("Jiayin-Message-Id")],
           "with room again, the next HEAD makes the message", f"{h.status} {again:.2f} s")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit")


def refused_waits_for_disk(binary):
    """The same for a server whose disk is full (507 storage_full from the mailbox): HEADs are
    answered so without a transcode each until the disk has room for the message again. Nor
    does each count in jiayin_storage_errors_total, "storage calls that failed": storage is
    not asked again (the review: every HEAD of the phone retrying counted one more, a hundred
    in the five minutes a refusal is kept, for the one write that failed)."""
    mnt = tempfile.mkdtemp(prefix="jiayin-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt],
                      capture_output=True).returncode != 0:
        os.rmdir(mnt)
        skip("a refused finish waits for the disk to have room", "mounting a tmpfs needs root")
        return
    srv = None
    filler = os.path.join(mnt, "filler")
    try:
        # the health check only at the start: its storage_unhealthy would count one more
        srv = Server(binary, "--upload-disk-reserve", "0", "--health-interval-ms", "3600000",
                     data=os.path.join(mnt, "data"))
        mom = signup(srv)
        clip = noise_wav(60)
        loc = new_upload(srv, mom, len(clip))
        r = patch(srv, mom, loc, 0, clip[:-1000])
        sv = os.statvfs(mnt)
        with open(filler, "wb") as f:  # the disk full but for the upload's last bytes
            f.write(b"\0" * (sv.f_bavail * sv.f_frsize - (32 << 10)))
        first, spent = costs(srv, lambda: patch(srv, mom, loc, len(clip) - 1000, clip[-1000:],
                                                timeout=60))
        ok(r.status == 204 and first.status == 507 and code_of(first) == "storage_full" and
           spent > 0.1, "the whole upload onto a full disk: 507 storage_full after its transcode",
           f"{r.status} {first.status} {first.body[:80]!r} {spent:.2f} s")
        errors = [metric(srv, "jiayin_storage_errors_total")]
        retries = []
        for _ in range(3):
            retries.append(costs(srv, lambda: head(srv, mom, loc, timeout=120)))
            errors.append(metric(srv, "jiayin_storage_errors_total"))
        codes = [r.status for r, _ in retries]
        cheap = [round(c, 3) for _, c in retries]
        ok(codes == [507] * 3 and all(c < spent / 4 for c in cheap),
           "while the disk is full, each HEAD is the same 507 without transcoding again",
           f"{codes}, CPU {cheap} s against {spent:.2f} s")
        ok(errors[0] and errors[0] >= 1 and errors == errors[:1] * 4,
           "the failed write counts in jiayin_storage_errors_total; the HEADs answered from "
           "its refusal count nothing more", f"after the finish and each HEAD: {errors}")
        os.unlink(filler)
        h = head(srv, mom, loc, timeout=120)
        ok(h.status == 200 and h.header("Jiayin-Message-Id") and
           len(list_messages(srv, mom)) == 1,
           "with room on the disk again, the next HEAD makes the message", f"{h.status}")
    finally:
        if srv:
            srv.stop()
        subprocess.run(["umount", mnt], capture_output=True)
        os.rmdir(mnt)


def noise_wav(seconds):
    """Quiet white noise, 16 kHz mono: Opus spends its full rate on it (about 19 kb/s)."""
    rnd = random.Random(seconds)
    frames = bytes(b for _ in range(seconds * 16000)
                   for b in struct.pack("<h", rnd.randint(-3000, 3000)))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(frames)
    return out.getvalue()


def default_quota(binary):
    """A family stored without a quota (quota_bytes 0, from before quotas) gets the server's
    family-quota on both upload paths: the resumable one skipped it (review finding)."""
    srv = start(binary, "--family-quota", str(1 << 20))
    mom = signup(srv)
    fam = mom["family"]["id"]
    srv.stop()
    with sqlite3.connect(os.path.join(srv.data, "directory.db")) as db:
        db.execute("UPDATE families SET quota_bytes = 0 WHERE id = ?", (fam,))
    srv = Server(binary, "--signups-per-hour", "1000", "--family-quota", str(1 << 20),
                 data=srv.data)
    try:
        big = request(srv, "POST", f"/v1/families/{fam}/messages", noise_wav(420),
                      headers=bearer(mom["token"]), timeout=120)
        minute = noise_wav(60)
        loc = new_upload(srv, mom, len(minute))
        r = patch(srv, mom, loc, 0, minute, timeout=120)
        plain = request(srv, "POST", f"/v1/families/{fam}/messages", minute,
                        headers=bearer(mom["token"]), timeout=120)
        ok(big.status == 201 and big.json()["message"]["bytes"] < 1 << 20 and
           r.status == 507 and code_of(r) == "quota_exceeded" and plain.status == 507 and
           len(list_messages(srv, mom)) == 1,
           "a family without a stored quota: 7 minutes fit in the default 1 MiB, one more "
           "minute is 507 quota_exceeded by either path",
           f"{big.status} {r.status} {r.body[:100]!r} {plain.status}")
    finally:
        srv.stop()


def bounded_finish(binary, wav):
    """A whole upload's transcode waits its turn in the bounded queue of transcodes like a
    plain upload's (review finding: twelve PATCHes finishing at once ran twelve transcodes past
    --max-queued-jobs; at --threads 1 a family now has one queued); refused, it is 503 and the
    bytes stay for the next HEAD."""
    srv = start(binary, "--max-queued-jobs", "2", "--threads", "1", "--uploads-per-device", "12")
    try:
        mom = signup(srv)
        locs = [new_upload(srv, mom, len(wav)) for _ in range(12)]
        socks = []
        for loc in locs:
            s = srv.connect()
            s.settimeout(60)
            s.sendall(patch_head(mom, loc, 0, len(wav)) + wav[:-1])
            socks.append(s)
            time.sleep(0.3)  # its lock and claim (a bounded job) before the next one's
        time.sleep(0.5)  # every body but its last byte is in
        for s in socks:
            s.sendall(wav[-1:])
        answers = [Reader(s).response() for s in socks]
        for s in socks:
            s.close()
        codes = [a.status if a else None for a in answers]
        busy_ok = all(a.header("Retry-After") for a in answers if a and a.status == 503)
        ids = set()
        for loc in locs:
            deadline = time.time() + 20
            while time.time() < deadline:
                h = head(srv, mom, loc)
                if h.status == 200 and h.header("Jiayin-Message-Id"):
                    ids.add(h.header("Jiayin-Message-Id"))
                    break
                time.sleep(0.2)
        ok(set(codes) <= {204, 503} and codes.count(503) >= 1 and busy_ok and
           len(ids) == 12 and len(list_messages(srv, mom)) == 12,
           "12 uploads finishing at once with 2 job places: the transcodes past them are 503 "
           "with Retry-After, and the next HEAD makes each message, once", f"{codes}")
    finally:
        srv.stop()


def lock_after_auth(binary, wav):
    """Only the upload's own caller takes its lock (review finding: the lock was taken before
    the token was checked, so a request with a bad token, or another device's, and a known id
    held it for a job and the owner's retry meanwhile got 423). One pool thread, busy with a
    long transcode, keeps those requests' jobs waiting: the owner's HEAD queued behind them."""
    srv = start(binary, "--threads", "1")
    try:
        mom = signup(srv)
        other = signup(srv, "李家", "爸爸")
        loc = new_upload(srv, mom, len(wav))
        ok(patch(srv, mom, loc, 0, wav[:1000]).status == 204, "an upload with 1000 bytes")
        long = noise_wav(240)
        up = srv.connect()
        up.settimeout(120)
        up.sendall((f"POST /v1/families/{mom['family']['id']}/messages HTTP/1.1\r\nHost: t\r\n"
                    f"Authorization: Bearer {mom['token']}\r\n"
                    f"Content-Length: {len(long)}\r\n\r\n").encode() + long)
        # the body is in: its transcode holds the only thread
        held = until(lambda: metric(srv, "jiayin_heavy_jobs_queued") == 1, timeout=20)
        held = bool(held) and unanswered(up)
        results, queued = {}, []
        for n, (who, token) in enumerate((("a bad token", "nope"),
                                          ("another family's device", other["token"]),
                                          ("the owner", mom["token"]))):
            s = srv.connect()
            s.settimeout(120)
            s.sendall((f"HEAD {loc} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
                       f"Authorization: Bearer {token}\r\n\r\n").encode())
            results[who] = s
            # queued in this order
            queued.append(until(lambda: (metric(srv, "jiayin_jobs_queued") or 0) > n))
        # all three wait behind the transcode, unanswered: else they were not in its queue
        behind = all(queued) and unanswered(up) and all(map(unanswered, results.values()))
        answers = {who: Reader(s).response(head_request=True) for who, s in results.items()}
        for s in results.values():
            s.close()
        sent = Reader(up).response()
        up.close()
        got = {who: a.status if a else None for who, a in answers.items()}
        ok(held and behind and sent and sent.status == 201 and
           got == {"a bad token": 401, "another family's device": 404, "the owner": 200} and
           offset_of(answers["the owner"]) == 1000,
           "HEADs with a bad token and another device's token hold no lock: the owner's HEAD "
           "queued behind them is 200 at its offset, not 423",
           f"{got} {sent and sent.status}, the transcode held the thread: {held}, the HEADs "
           f"queued {queued} behind it: {behind}")
    finally:
        srv.stop()


def full_disk(binary):
    """A PATCH that fills the disk keeps what it can: the record needs a block the body took,
    so the body's last 64 KiB are given back and the rest counted (review finding: the offset
    stayed at 0 and the client started over, on a disk still full of its bytes)."""
    mnt = tempfile.mkdtemp(prefix="jiayin-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt],
                      capture_output=True).returncode != 0:
        os.rmdir(mnt)
        skip("a PATCH that fills the disk keeps all but its last 64 KiB",
             "mounting a small tmpfs needs root")
        return
    srv = None
    try:
        # The disk fills anyway (something else filled it): no reserve keeps the upload out.
        srv = Server(binary, "--upload-disk-reserve", "0", data=os.path.join(mnt, "data"))
        mom = signup(srv)
        length = 10 << 20
        loc = new_upload(srv, mom, length)
        body = random.Random(7).randbytes(length)
        r = patch(srv, mom, loc, 0, body, timeout=60)
        h = head_settled(srv, mom, loc)
        off = offset_of(h)
        part = [os.path.join(srv.data, "uploads", f) for f in files_of(srv)
                if f.endswith(".part")]
        size = os.path.getsize(part[0]) if len(part) == 1 else -1
        with open(part[0], "rb") as f:
            same = f.read(off or 0) == body[:off or 0]
        ok(r.status == 507 and code_of(r) == "storage_full" and off and off > 4 << 20 and
           size == off and same,
           "a PATCH that fills the disk: 507 storage_full, and HEAD counts the bytes that fit "
           "but the last 64 KiB (they are on disk, byte for byte)",
           f"{r.status} {r.body[:80]!r} offset {off}, .part {size}")
    finally:
        if srv:
            srv.stop()
        subprocess.run(["umount", mnt], capture_output=True)
        os.rmdir(mnt)


def review_fixes(binary, wav):
    """What a review found: expired uploads held the device's places; a request pipelined
    after a PATCH met the lock of the PATCH before it."""
    srv = start(binary, "--uploads-per-device", "1")
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        r = create(srv, mom, len(wav))
        ok(r.status == 429 and r.header("Retry-After") in ("3599", "3600"),
           "one place, taken: 429 until it expires, an hour after its creation as it received "
           "nothing (Retry-After)", f"{r.status} {r.header('Retry-After')}")
        patch(srv, mom, loc, 0, wav[:1000])
        r = create(srv, mom, len(wav))
        ok(r.status == 429 and r.header("Retry-After") in ("86399", "86400"),
           "and a day after its bytes once it has some", f"{r.status} {r.header('Retry-After')}")
        # Age the record past its expiry (the sweep, every 10 minutes here, has not run).
        upload_id = loc.rsplit("/", 1)[1]
        info = [os.path.join(srv.data, "uploads", f) for f in files_of(srv)
                if f.endswith(upload_id + ".info")][0]
        with open(info) as f:
            rec = json.load(f)
        rec["updated_ms"] -= 2 * 86400 * 1000
        with open(info, "w") as f:
            json.dump(rec, f)
        r = create(srv, mom, len(wav))
        ok(head(srv, mom, loc).status == 404 and r.status == 201,
           "an expired upload (404 to its device) no longer holds the device's place",
           f"{r.status}")
        loc2 = r.header("Location")
        s = srv.connect()
        s.sendall(patch_head(mom, loc2, 0, 1000) + wav[:1000] +
                  (f"HEAD {loc2} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
                   f"Authorization: Bearer {mom['token']}\r\n\r\n").encode())
        rd = Reader(s)
        first = rd.response()
        second = rd.response(head_request=True)
        s.close()
        ok(first.status == 204 and second.status == 200 and offset_of(second) == 1000,
           "a HEAD pipelined after a PATCH finds the upload free: 204, then 200 at 1000",
           f"{first.status} {second.status}")
        other = signup(srv, "李家", "爸爸")
        theirs = new_upload(srv, other, len(wav))
        patch(srv, other, theirs, 0, wav[:500])
        before = files_of(srv)
        d = request(srv, "DELETE", f"/v1/families/{mom['family']['id']}",
                    headers=bearer(mom["token"]))
        after = files_of(srv)
        ok(d.status == 204 and len(before) > 2 and after and
           all(f.startswith(other["device"]["id"]) for f in after) and
           not os.path.exists(os.path.join(srv.data, "uploads", mom["device"]["id"])),
           "erasing a family erases its phones' unfinished recordings too, and no one else's",
           f"{before} -> {after}")
    finally:
        srv.stop()


def give_up_bytes(devdir, upload_id):
    """The state srv_upload_stored leaves when a full disk kept its record from naming the
    message: the record not a message's, the .part emptied."""
    with open(os.path.join(devdir, upload_id + ".info")) as f:
        rec = json.load(f)
    rec["message_id"] = ""
    with open(os.path.join(devdir, upload_id + ".info"), "w") as f:
        json.dump(rec, f)
    open(os.path.join(devdir, upload_id + ".part"), "wb").close()


def bytes_given_up(binary, wav):
    """An upload became a message but the disk was full and its record could not say so: its
    .part is cut to nothing and its hold given back (test_uploads_disk.c). What is left, a
    record of a whole upload without a message beside an empty .part, made here by hand, is
    finished again by the next HEAD or PATCH through the message's key, without its bytes:
    the same message, never a second one, and it holds no room, after a restart too (before,
    the restart held its length again)."""
    args = ("--family-upload-bytes", "1048576")
    srv = start(binary, *args)
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        first = patch(srv, mom, loc, 0, wav)
        msg = first.header("Jiayin-Message-Id")
    finally:
        srv.stop()
    upload_id = loc.rsplit("/", 1)[1]
    devdir = os.path.join(srv.data, "uploads", mom["device"]["id"])

    give_up_bytes(devdir, upload_id)
    srv = Server(binary, "--signups-per-hour", "1000", *args, data=srv.data)
    try:
        room = create(srv, mom, 700000)
        ok(first.status == 204 and msg and room.status == 201,
           "after a restart, an upload whose bytes were given up holds no room",
           f"{first.status} {room.status} {room.body[:80]!r}")
        h = head(srv, mom, loc)
        ok(h.status == 200 and h.header("Jiayin-Message-Id") == msg and
           offset_of(h) == len(wav) and [m["id"] for m in list_messages(srv, mom)] == [msg],
           "the next HEAD finishes it by its key: the same message, once",
           f"{h.status} {h.header('Jiayin-Message-Id')} {msg}")
        ok(not os.path.exists(os.path.join(devdir, upload_id + ".part")),
           "and its record names the message now: the .part is gone")
        give_up_bytes(devdir, upload_id)
        p = patch(srv, mom, loc, len(wav), b"")
        ok(p.status == 204 and p.header("Jiayin-Message-Id") == msg and
           len(list_messages(srv, mom)) == 1,
           "so does an empty PATCH at its end", f"{p.status} {p.body[:80]!r}")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit")


def given_up_then_restored(binary, wav):
    """An upload whose bytes were given up (its message stored, its record not saying so:
    bytes_given_up) and whose message is gone since, the family's mailbox restored from a copy
    taken before it: a HEAD or an empty PATCH at its end has no key to find and no bytes to
    read. It is gone, 404, as an expired upload, and the app sends the recording again; not a
    422 telling the phone its recording is not audio (before, the empty .part was transcoded
    and the upload removed as bad audio)."""
    srv = start(binary)
    try:
        mom = signup(srv)
    finally:
        srv.stop()
    fam = os.path.join(srv.data, "families", mom["family"]["id"] + ".db")
    with open(fam, "rb") as f:
        before = f.read()
    devdir = os.path.join(srv.data, "uploads", mom["device"]["id"])
    for how in ("HEAD", "PATCH"):
        srv = Server(binary, "--signups-per-hour", "1000", data=srv.data)
        try:
            loc = new_upload(srv, mom, len(wav))
            first = patch(srv, mom, loc, 0, wav)
        finally:
            srv.stop()
        upload_id = loc.rsplit("/", 1)[1]
        give_up_bytes(devdir, upload_id)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(fam + suffix):
                os.unlink(fam + suffix)
        with open(fam, "wb") as f:
            f.write(before)
        srv = Server(binary, "--signups-per-hour", "1000", data=srv.data)
        try:
            if how == "HEAD":
                r = head(srv, mom, loc)
            else:
                r = patch(srv, mom, loc, len(wav), b"")
            ok(first.status == 204 and r.status == 404 and list_messages(srv, mom) == [],
               f"a {how} of an upload whose bytes were given up and whose message was "
               "restored away: 404, nothing stored", f"{r.status} {r.body[:80]!r}")
            ok(not os.path.exists(os.path.join(devdir, upload_id + ".info")),
               "and the upload is gone")
            again = new_upload(srv, mom, len(wav))
            p = patch(srv, mom, again, 0, wav)
            ok(p.status == 204 and len(list_messages(srv, mom)) == 1,
               "sent again, it is one message", f"{p.status}")
        finally:
            rc = srv.stop()
        ok(rc == 0, "clean exit")


def key_made_message(binary, wav):
    """A creation whose idempotency_key became a message already: the phone sends nothing
    again. Before, once the upload that made the message was gone (swept after its expiry, or
    its Location lost by the app) or finished, the creation was a new upload at offset 0: the
    phone sent the whole recording again over metered data, and only its end found the same
    message (and it took a place of the device's and room of the family's meanwhile); and
    when the message was for a member who had left since, the creation was 400
    invalid_recipient, though the message exists. Now it is an upload already whole that
    names the message, as the plain upload's retry gives it."""
    srv = start(binary, "--uploads-per-device", "1")
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]
        meta = f"family_id {b64(fam)},idempotency_key {b64('rec-1')}"
        loc = new_upload(srv, mom, len(wav), meta)
        first = patch(srv, mom, loc, 0, wav)
        mid = first.header("Jiayin-Message-Id")
        gone = request(srv, "DELETE", loc, headers=TUS + bearer(mom["token"]))
        # the device's one place is taken by another recording on its way
        busy = new_upload(srv, mom, len(wav))
        ok(first.status == 204 and mid and gone.status == 204 and
           create(srv, mom, len(wav)).status == 429,
           "a recording made a message under rec-1, its upload gone; the device's one place "
           "taken by another upload")
        r = create(srv, mom, len(wav), meta)
        loc2 = r.header("Location") or ""
        ok(r.status == 201 and re.fullmatch(r"/v1/uploads/[0-9a-z]{26}", loc2) and
           offset_of(r) == len(wav) and r.header("Jiayin-Message-Id") == mid,
           "its creation again: 201, Upload-Offset = Upload-Length and Jiayin-Message-Id at "
           "once (no place needed, nothing to send)",
           f"{r.status} {code_of(r)} {r.header('Upload-Offset')} {r.header('Location')}")
        h = head(srv, mom, loc2)
        ok(h.status == 200 and offset_of(h) == len(wav) and
           h.header("Upload-Length") == str(len(wav)) and h.header("Jiayin-Message-Id") == mid,
           "HEAD: whole, naming the message", f"{h.status} {h.headers}")
        g = request(srv, "GET", loc2, headers=bearer(mom["token"]))
        gj = g.json().get("upload", {}) if g.status == 200 else {}
        ok(gj.get("message_id") == mid and gj.get("offset") == len(wav) == gj.get("length"),
           "GET: the same as JSON", f"{g.status} {g.body[:200]!r}")
        z = patch(srv, mom, loc2, 0, wav[:1000])
        e = patch(srv, mom, loc2, len(wav), b"")
        ok(z.status == 409 and code_of(z) == "offset_mismatch" and e.status == 204 and
           e.header("Jiayin-Message-Id") == mid,
           "a PATCH from 0 (tus-js-client's) is 409, an empty one at the end 204 with the "
           "message", f"{z.status} {e.status}")
        ok([m["id"] for m in list_messages(srv, mom)] == [mid] and
           not any(f.endswith(loc2.rsplit("/", 1)[-1] + ".part") for f in files_of(srv)),
           "one message, and no .part for the answer")
        again = [create(srv, mom, len(wav), meta) for _ in range(3)]
        ok([a.status for a in again] == [201] * 3 and
           {a.header("Location") for a in again} == {loc2} and
           len(files_of(srv)) == 3,
           "created again and again: the same upload, one record",
           f"{[(a.status, a.header('Location')) for a in again]} {files_of(srv)}")
        other_len = create(srv, mom, len(wav) + 1000, meta)
        ok(other_len.status == 201 and offset_of(other_len) == len(wav) + 1000 and
           other_len.header("Jiayin-Message-Id") == mid,
           "another Upload-Length: the key's message all the same, as the plain upload's key "
           "reused with another body", f"{other_len.status} {other_len.headers}")
        # the finished upload's record still there: it is the answer
        request(srv, "DELETE", busy, headers=TUS + bearer(mom["token"]))
        loc3 = new_upload(srv, mom, len(wav), f"family_id {b64(fam)},idempotency_key "
                          f"{b64('rec-3')}")
        m3 = patch(srv, mom, loc3, 0, wav).header("Jiayin-Message-Id")
        r = create(srv, mom, len(wav), f"family_id {b64(fam)},idempotency_key {b64('rec-3')}")
        ok(m3 and r.status == 201 and r.header("Location") == loc3 and
           r.header("Jiayin-Message-Id") == m3,
           "the upload that made the message, still kept: it is the answer",
           f"{r.status} {r.header('Location')} {loc3}")
        # an unfinished upload of a key that a plain upload made a message meanwhile
        loc4 = new_upload(srv, mom, len(wav), f"family_id {b64(fam)},idempotency_key "
                          f"{b64('rec-4')}")
        patch(srv, mom, loc4, 0, wav[:5000])
        p = request(srv, "POST", f"/v1/families/{fam}/messages", wav,
                    headers=bearer(mom["token"]) + [("Idempotency-Key", "rec-4")], timeout=60)
        r = create(srv, mom, len(wav), f"family_id {b64(fam)},idempotency_key {b64('rec-4')}")
        id4 = loc4.rsplit("/", 1)[1]
        ok(p.status == 201 and r.status == 201 and
           r.header("Jiayin-Message-Id") == p.json()["message"]["id"] and
           head(srv, mom, loc4).status == 404 and not any(id4 in f for f in files_of(srv)),
           "an unfinished upload of a key that became a message meanwhile: the answer is the "
           "message, and the unfinished one is removed", f"{p.status} {r.status}")
        # deleted since: the key still gives it
        d = request(srv, "DELETE", f"/v1/families/{fam}/messages/{mid}",
                    headers=bearer(mom["token"]))
        r = create(srv, mom, len(wav), meta)
        ok(d.status == 204 and r.status == 201 and r.header("Jiayin-Message-Id") == mid and
           offset_of(r) == len(wav), "a message deleted since: its key still gives it")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit (no leaks under ASan)", srv.log_text()[-3000:])


def arm(hold_dir, n, count=0):
    """hold_preload.c: the statement of text n started after `count` more is held."""
    tmp = os.path.join(hold_dir, f".arm{n}")
    with open(tmp, "w") as f:
        f.write(str(count))
    os.rename(tmp, os.path.join(hold_dir, f"arm{n}"))


def recreated_while_finishing(binary, preload, wav):
    """The app creates its upload again (same idempotency_key) while the server finishes it,
    the creation's look at the key coming before the message is stored, and its look for the
    device's upload of the key after the finish removed its bytes: the creation found neither
    and was a new upload at offset 0 (review finding), so the phone sent the whole recording
    again over metered data, to be told at its end of the message stored meanwhile. Now the
    key is looked at again once a creation made a new upload: 201 with the finished upload's
    Location, Upload-Offset at its length and the message's id. Ordered without a sleep by
    tests/tools/hold_preload.c: the finish held at its message's insert (inside the mailbox's
    transaction), the creation held at its read of the family (after its look at the key)
    until the finish has answered."""
    hold = scratch_dir("jiayin-hold-")
    env = {"LD_PRELOAD": preload, "JIAYIN_HOLD_DIR": hold,
           "JIAYIN_HOLD_SQL": "INSERT INTO messages (|FROM families WHERE id = ?",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    srv = Server(binary, "--signups-per-hour", "1000", env=env)
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]
        meta = f"family_id {b64(fam)},idempotency_key {b64('story-1')}"
        loc = new_upload(srv, mom, len(wav), meta)
        half = len(wav) // 2
        first = patch(srv, mom, loc, 0, wav[:half])
        arm(hold, 0)  # the finish's insert of the message
        last = srv.connect()
        last.settimeout(60)
        last.sendall(patch_head(mom, loc, half, len(wav) - half) + wav[half:])
        in_insert = until(lambda: os.path.exists(os.path.join(hold, "held0")), timeout=60)
        arm(hold, 1)  # the creation's read of the family, after its look at the key
        again = {}
        creating = threading.Thread(
            target=lambda: again.setdefault("r", create_slowly(srv, mom, len(wav), meta)))
        creating.start()
        in_create = until(lambda: os.path.exists(os.path.join(hold, "held1")), timeout=30)
        os.unlink(os.path.join(hold, "arm0"))  # the message is stored, the upload finished
        finished = Reader(last).response()
        last.close()
        os.unlink(os.path.join(hold, "arm1"))
        creating.join()
        r = again.get("r")
        mid = finished.header("Jiayin-Message-Id") if finished else None
        ok(first.status == 204 and in_insert and in_create and finished and
           finished.status == 204 and mid and r and r.status == 201 and
           r.header("Location") == loc and offset_of(r) == len(wav) and
           r.header("Jiayin-Message-Id") == mid,
           "created again while its last PATCH stored the message: 201 with its Location, "
           "Upload-Offset at its length and the message's id, not a new upload at 0",
           f"held {in_insert} {in_create}, {finished and finished.status} {mid}, "
           f"{r and r.status} {r and r.header('Location')} {loc} {r and offset_of(r)} "
           f"{r and r.header('Jiayin-Message-Id')}")
        h = head(srv, mom, loc)
        ok(h.status == 200 and h.header("Jiayin-Message-Id") == mid and
           [m["id"] for m in list_messages(srv, mom)] == [mid] and
           [f for f in files_of(srv) if f.endswith(".part")] == [],
           "one message, and nothing left to send", f"{h.status} {files_of(srv)}")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit (no leaks under ASan)", srv.log_text()[-3000:])


def plain_retry_while_finishing(binary, preload, wav):
    """The app's resumable upload of a recording is being made a message (its last PATCH in
    its transcode, the phone's read timeout run out) and the same phone sends the recording
    again as a plain upload under the same key (docs/api.md: the two share keys). Only plain
    copies were looked for: with Expect: 100-continue the retry was told 100 Continue and sent
    the whole recording again over metered data; without it its body, whole, was transcoded a
    second time for storage to find the key. Now a finish in flight is looked for as a plain
    copy is: 503 upload_in_progress before the body, and a retry whose body is in waits for
    the finish and is answered 200 with its message (one transcode); its connection, kept
    alive, serves the next request. Ordered by tests/tools/hold_preload.c: the finish held,
    its key looked up and its recording transcoded, at its caller's check after the transcode
    (its phone's token looked up the third time: the PATCH's, the finish's before and after
    its transcode) while the retries come."""
    hold = scratch_dir("jiayin-hold-")
    env = {"LD_PRELOAD": preload, "JIAYIN_HOLD_DIR": hold,
           "JIAYIN_HOLD_SQL": "d.token_hash = ? AND d.revoked_ms",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    srv = Server(binary, "--signups-per-hour", "1000", env=env)
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]
        meta = f"family_id {b64(fam)},idempotency_key {b64('story-1')}"
        loc = new_upload(srv, mom, len(wav), meta)
        arm(hold, 0, 2)  # the finish held once its recording is transcoded
        last = srv.connect()
        last.settimeout(60)
        last.sendall(patch_head(mom, loc, 0, len(wav)) + wav)
        in_insert = until(lambda: os.path.exists(os.path.join(hold, "held0")), timeout=60)

        def plain_head(expect):
            return (f"POST /v1/families/{fam}/messages HTTP/1.1\r\nHost: t\r\n"
                    f"Authorization: Bearer {mom['token']}\r\nIdempotency-Key: story-1\r\n"
                    + ("Expect: 100-continue\r\n" if expect else "") +
                    f"Content-Length: {len(wav)}\r\n\r\n").encode()
        # with Expect: answered before its body
        e = srv.connect()
        e.settimeout(10)
        e.sendall(plain_head(True))
        got = b""
        try:
            while b"\r\n\r\n" not in got:
                d = e.recv(65536)
                if not d:
                    break
                got += d
        except (socket.timeout, TimeoutError):
            pass
        e.close()
        first_line = got.split(b"\r\n", 1)[0].decode("latin-1")
        ok(in_insert and first_line.startswith("HTTP/1.1 503") and
           b"upload_in_progress" in got,
           "a plain retry with Expect: 100-continue while the resumable upload of its key is "
           "being made a message: 503 upload_in_progress before its body, not 100 Continue",
           f"held {in_insert}; {got[:300]!r}")

        # without Expect: its body is read, and it waits for the finish
        answers = {}
        r = srv.connect(timeout=60)

        def send_plain():
            r.sendall(plain_head(False) + wav)
            rd = Reader(r)
            answers["retry"] = rd.response()
            r.sendall(b"GET /v1/me HTTP/1.1\r\nHost: t\r\n"
                      + f"Authorization: Bearer {mom['token']}\r\n\r\n".encode())
            answers["next"] = rd.response()
        t = threading.Thread(target=send_plain)
        t.start()
        waited = until(lambda: metric(srv, "jiayin_upload_retries_waiting") == 1 or
                       not t.is_alive(), timeout=30) and t.is_alive()
        os.unlink(os.path.join(hold, "arm0"))  # the message is stored, the upload finished
        finished = Reader(last).response()
        last.close()
        t.join(60)
        r.close()
        mid = finished.header("Jiayin-Message-Id") if finished else None
        b, n = answers.get("retry"), answers.get("next")
        bid = b.json().get("message", {}).get("id") if b and b.status == 200 else None
        ok(waited and finished and finished.status == 204 and mid and b and b.status == 200
           and bid == mid and metric(srv, "jiayin_transcodes_total") == 1,
           "a plain retry without Expect while the resumable upload of its key is being made "
           "a message waits for it: the PATCH 204, the retry 200 with the same message, one "
           "transcode",
           f"waited {waited}; {finished and finished.status} {mid}; {b and b.status} {bid}; "
           f"transcodes {metric(srv, 'jiayin_transcodes_total')}")
        ok(n and n.status == 200 and metric(srv, "jiayin_upload_retries_waiting") == 0 and
           [m["id"] for m in list_messages(srv, mom)] == [mid],
           "its connection serves the next request (GET /v1/me 200); one message, nothing "
           "left waiting", f"{n and n.status}; {list_messages(srv, mom)}")
    finally:
        if os.path.exists(os.path.join(hold, "arm0")):
            os.unlink(os.path.join(hold, "arm0"))
        rc = srv.stop()
    ok(rc == 0, "clean exit (no leaks under ASan)", srv.log_text()[-3000:])


def resumable_while_plain_in_flight(binary, preload, wav):
    """The phone's plain upload under a key is being transcoded (its answer late) and the same
    phone goes on with a resumable upload of the key (docs/api.md: the two share keys). Only the
    other way round was looked for (plain_retry_while_finishing): a creation of the key was a
    new upload at offset 0, so the phone sent the whole recording again over metered data, and
    a finish (the last PATCH) transcoded it a second time for storage to find the key. Now both
    are told 503 upload_in_progress with Retry-After; the creation sent again finds the message,
    the upload left whole finishes with it at its next HEAD; one transcode per recording.
    Ordered by tests/tools/hold_preload.c: the plain copy held once its recording is
    transcoded, at its caller's check after the transcode (its phone's token looked up the third
    time: its gate's, the checks before and after its transcode)."""
    hold = scratch_dir("jiayin-hold-")
    env = {"LD_PRELOAD": preload, "JIAYIN_HOLD_DIR": hold,
           "JIAYIN_HOLD_SQL": "d.token_hash = ? AND d.revoked_ms",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    srv = Server(binary, "--signups-per-hour", "1000", env=env)
    answers = {}

    def plain(key):
        """The plain upload of key, held in its transcode job once transcoded; its thread and
        whether it was held."""
        def send():
            s = srv.connect(timeout=60)
            s.sendall((f"POST /v1/families/{fam}/messages HTTP/1.1\r\nHost: t\r\n"
                       f"Authorization: Bearer {mom['token']}\r\nIdempotency-Key: {key}\r\n"
                       f"Content-Length: {len(wav)}\r\nConnection: close\r\n\r\n").encode()
                      + wav)
            answers[key] = Reader(s).response()
            s.close()
        arm(hold, 0, 2)
        t = threading.Thread(target=send)
        t.start()
        return t, until(lambda: os.path.exists(os.path.join(hold, "held0")), timeout=60)

    def release(t):
        os.unlink(os.path.join(hold, "arm0"))
        os.unlink(os.path.join(hold, "held0"))
        t.join(60)

    def message_id(r):
        return r.json().get("message", {}).get("id") if r and r.status in (200, 201) else None
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]

        # the creation of the key while the plain copy is transcoded
        meta1 = f"family_id {b64(fam)},idempotency_key {b64('story-1')}"
        t, held = plain("story-1")
        c = create(srv, mom, len(wav), meta1)
        release(t)
        p1 = answers.get("story-1")
        ok(held and c.status == 503 and b"upload_in_progress" in c.body and
           c.header("Retry-After") and p1 and p1.status == 201,
           "a resumable upload created under the key of the same phone's plain upload being "
           "transcoded: 503 upload_in_progress with Retry-After, not a new upload at offset 0",
           f"held {held}; {c.status} {c.header('Upload-Offset')} {c.body[:200]!r}; "
           f"{p1 and p1.status}")
        again = create(srv, mom, len(wav), meta1)
        ok(again.status == 201 and offset_of(again) == len(wav) and message_id(p1) and
           again.header("Jiayin-Message-Id") == message_id(p1),
           "created again once it is stored: the upload whole, with the plain copy's message",
           f"{again.status} {again.header('Upload-Offset')} "
           f"{again.header('Jiayin-Message-Id')} {message_id(p1)}")

        # the finish (the last PATCH) of the key while the plain copy is transcoded
        loc = new_upload(srv, mom, len(wav),
                         f"family_id {b64(fam)},idempotency_key {b64('story-2')}")
        t, held = plain("story-2")
        last = patch(srv, mom, loc, 0, wav)
        release(t)
        p2 = answers.get("story-2")
        ok(held and last.status == 503 and b"upload_in_progress" in last.body and
           last.header("Retry-After") and p2 and p2.status == 201,
           "the last PATCH of a resumable upload under the key of the same phone's plain "
           "upload being transcoded: 503 upload_in_progress with Retry-After, no second "
           "transcode", f"held {held}; {last.status} {last.body[:200]!r}; {p2 and p2.status}")
        h = head(srv, mom, loc)
        ok(h.status == 200 and offset_of(h) == len(wav) and message_id(p2) and
           h.header("Jiayin-Message-Id") == message_id(p2),
           "its next HEAD finishes it with the plain copy's message",
           f"{h.status} {h.header('Upload-Offset')} {h.header('Jiayin-Message-Id')} "
           f"{message_id(p2)}")
        ids = sorted(m["id"] for m in list_messages(srv, mom))
        ok(metric(srv, "jiayin_transcodes_total") == 2 and
           ids == sorted([message_id(p1), message_id(p2)]),
           "one transcode and one message per recording (jiayin_transcodes_total 2)",
           f"transcodes {metric(srv, 'jiayin_transcodes_total')}; {ids}")
    finally:
        if os.path.exists(os.path.join(hold, "arm0")):
            os.unlink(os.path.join(hold, "arm0"))
        rc = srv.stop()
    ok(rc == 0, "clean exit (no leaks under ASan)", srv.log_text()[-3000:])


def create_slowly(srv, who, length, meta):
    """create() that waits as long as the test holds it."""
    hdrs = TUS + bearer(who["token"]) + [("Upload-Length", str(length)),
                                         ("Upload-Metadata", meta)]
    return request(srv, "POST", "/v1/uploads", headers=hdrs, timeout=60)


def key_made_message_for_one_who_left(binary, wav):
    """A creation whose idempotency_key became a message for a member who has left the family
    since: the key is looked up before the recipient, as the plain upload's retry does, and
    gives the message (before, it was 400 invalid_recipient: the app told its parent the
    recording was refused, though it was stored)."""
    srv = start(binary)
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]
        grandpa = request(srv, "POST", f"/v1/families/{fam}/members",
                          json.dumps({"member_name": "爷爷", "role": "caregiver"}).encode(),
                          headers=[("Content-Type", "application/json")] +
                          bearer(mom["token"])).json()["member"]
        gmeta = (f"family_id {b64(fam)},to {b64(grandpa['id'])},"
                 f"idempotency_key {b64('for-grandpa')}")
        loc5 = new_upload(srv, mom, len(wav), gmeta)
        m5 = patch(srv, mom, loc5, 0, wav).header("Jiayin-Message-Id")
        request(srv, "DELETE", loc5, headers=TUS + bearer(mom["token"]))  # swept, or lost
        left = request(srv, "DELETE", f"/v1/families/{fam}/members/{grandpa['id']}",
                       headers=bearer(mom["token"]))
        r = create(srv, mom, len(wav), gmeta)
        g = request(srv, "GET", r.header("Location") or loc5, headers=bearer(mom["token"]))
        ok(m5 and left.status == 204 and r.status == 201 and
           r.header("Jiayin-Message-Id") == m5 and offset_of(r) == len(wav) and
           g.status == 200 and g.json()["upload"]["to"] == grandpa["id"],
           "for a member who left since: 201 with the message, not 400 invalid_recipient",
           f"{left.status} {r.status} {code_of(r)}")
        fresh = create(srv, mom, len(wav), f"family_id {b64(fam)},to {b64(grandpa['id'])},"
                       f"idempotency_key {b64('new-one')}")
        ok(fresh.status == 400 and code_of(fresh) == "invalid_recipient",
           "a new recording for the member who left: 400 invalid_recipient as before")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit (no leaks under ASan)", srv.log_text()[-3000:])


def key_is_the_members(binary, wav):
    """A key that became a message is the sender's own, in its family: another member's equal
    key, or another family's, is a new upload at 0, and shows nothing of that message."""
    srv = start(binary)
    try:
        mom = signup(srv)
        fam = mom["family"]["id"]
        meta = f"family_id {b64(fam)},idempotency_key {b64('rec-1')}"
        mid = patch(srv, mom, new_upload(srv, mom, len(wav), meta), 0,
                    wav).header("Jiayin-Message-Id")
        # the key is the member's, in the family: anyone else's equal key is a new upload
        dad = pair(srv, mom, "parent", "爸爸")
        other = signup(srv, "李家", "爸爸")
        r_dad = create(srv, dad, len(wav), meta)
        r_other = create(srv, other, len(wav),
                         f"family_id {b64(other['family']['id'])},idempotency_key {b64('rec-1')}")
        ok(mid and r_dad.status == 201 and offset_of(r_dad) == 0 and
           r_dad.header("Jiayin-Message-Id") is None and r_other.status == 201 and
           offset_of(r_other) == 0 and r_other.header("Jiayin-Message-Id") is None,
           "another member's equal key, or another family's: a new upload at 0, nothing of "
           "mom's message", f"{r_dad.status} {r_dad.headers} {r_other.status}")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit (no leaks under ASan)", srv.log_text()[-3000:])


def retry_after_while_receiving(binary, wav):
    """429 too_many_uploads while the device's upload is receiving: its Retry-After said when
    that upload expires (an hour on, as it had received nothing yet), though its PATCH renews it
    and, as it does here, finishes it within seconds: the app waited an hour for a place that
    was free at once, or, retrying sooner, heard a new value."""
    srv = start(binary, "--uploads-per-device", "1")
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        s = srv.connect()
        s.sendall(patch_head(mom, loc, 0, len(wav)) + wav[:1000])
        # receiving once its body is claimed (a stage of upload buffer held); asked before, its
        # place was told as its expiry (3600) in 3 of 4 tries here
        until(lambda: (metric(srv, "jiayin_upload_buffer_bytes") or 0) > 0)
        r = create(srv, mom, len(wav))
        ra = r.header("Retry-After")
        ok(r.status == 429 and code_of(r) == "too_many_uploads" and ra in ("59", "60"),
           "one place, its upload receiving: 429 with Retry-After a minute (it may finish any "
           "moment), not its expiry an hour on", f"{r.status} {ra}")
        s.sendall(wav[1000:])
        p = Reader(s).response()
        s.close()
        r = create(srv, mom, len(wav))
        ok(p.status == 204 and r.status == 201,
           "its PATCH finished: the place is free at once", f"{p.status} {r.status}")
    finally:
        srv.stop()


def method_override(binary, wav):
    """tus core: where only GET and POST pass (an old WebView, a carrier's proxy), POST with
    X-HTTP-Method-Override is the method it names; it was 405, so such a phone could never
    send a recording."""
    srv = start(binary)
    try:
        mom = signup(srv)
        loc = new_upload(srv, mom, len(wav))
        over = [("X-HTTP-Method-Override", "PATCH")]
        r = request(srv, "POST", loc, wav[:5000], headers=TUS + bearer(mom["token"]) + OCTETS +
                    [("Upload-Offset", "0")] + over)
        ok(r.status == 204 and offset_of(r) == 5000,
           "POST with X-HTTP-Method-Override: PATCH appends", f"{r.status} {r.body!r}")
        r = request(srv, "POST", loc, wav[5000:], headers=TUS + bearer(mom["token"]) + OCTETS +
                    [("Upload-Offset", "5000")] + over)
        h = head(srv, mom, loc)
        ok(r.status == 204 and offset_of(r) == len(wav) and h.header("Jiayin-Message-Id") and
           len(list_messages(srv, mom)) == 1,
           "and its last chunk makes the message", f"{r.status} {r.body!r}")
        loc2 = new_upload(srv, mom, len(wav))
        for hdrs, what in (([], "no X-HTTP-Method-Override"),
                           ([("X-HTTP-Method-Override", "GET")], "GET"),
                           ([("X-HTTP-Method-Override", "patch")], "a lower-case patch"),
                           (over + over, "two of them")):
            r = request(srv, "POST", loc2, b"x" * 10, headers=TUS + bearer(mom["token"]) +
                        OCTETS + [("Upload-Offset", "0")] + hdrs)
            ok(r.status == 400 and code_of(r) == "invalid_method_override" and
               r.header("Tus-Resumable") == "1.0.0",
               f"POST on an upload with {what}: 400 invalid_method_override",
               f"{r.status} {r.body!r}")
        r = request(srv, "POST", loc2, b"x" * 10, headers=bearer(mom["token"]) + OCTETS +
                    [("Upload-Offset", "0")] + over)
        ok(r.status == 412, "an overridden PATCH without Tus-Resumable: 412", str(r.status))
        ok(offset_of(head(srv, mom, loc2)) == 0, "the refused POSTs wrote nothing")
        r = request(srv, "POST", loc2, headers=TUS + bearer(mom["token"]) +
                    [("X-HTTP-Method-Override", "DELETE")])
        ok(r.status == 204 and head(srv, mom, loc2).status == 404,
           "POST with X-HTTP-Method-Override: DELETE terminates", f"{r.status} {r.body!r}")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit (no leaks under ASan)", srv.log_text()[-3000:])


def main():
    binary = sys.argv[1]
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    protocol(binary, wav)
    limits(binary, wav)
    cap_while_receiving(binary, wav)
    full_mailbox(binary, wav)
    transcodes_counted(binary, wav)
    refused_waits_for_room(binary)
    refused_waits_for_disk(binary)
    review_fixes(binary, wav)
    default_quota(binary)
    bounded_finish(binary, wav)
    lock_after_auth(binary, wav)
    full_disk(binary)
    bytes_given_up(binary, wav)
    given_up_then_restored(binary, wav)
    key_made_message_for_one_who_left(binary, wav)
    key_is_the_members(binary, wav)
    key_made_message(binary, wav)
    recreated_while_finishing(binary, sys.argv[2], wav)
    plain_retry_while_finishing(binary, sys.argv[2], wav)
    resumable_while_plain_in_flight(binary, sys.argv[2], wav)
    retry_after_while_receiving(binary, wav)
    method_override(binary, wav)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
