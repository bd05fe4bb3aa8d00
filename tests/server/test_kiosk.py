#!/usr/bin/env python3
"""test_kiosk.py — school kiosks end to end (TAP).

usage: test_kiosk.py JIAYIN_BINARY JIAYINCTL_BINARY [EIO_PRELOAD]

An administrator registers a school and its kiosk with jiayinctl; the kiosk shows a code; a
parent pairs a child (a member without a phone) to it with a 4-picture PIN; the child logs in
on the kiosk with their picture and pictures, hears the family's messages and replies; wrong
PINs lock the login; the session ends when idle, when the next child logs in, or when asked;
the kiosk's own token never sees a family. Every step as docs/api.md promises. And the
pairing locks that phones and kiosks share hold for codes sent all at once; pairing a child
again ends its session; a family lists all its links; a wrong kiosk code costs no PIN hash;
a member removed from the family takes the PINs it chose with it; a story whose session ends
while it arrives, or waits its turn, is stored; a lock set by a clock since set back is over;
any login tried on a tablet ends the session open on it, and a child's login ends theirs on
other tablets; codes made by a clock since set back do not hold the kiosk's live codes; a
kiosk's wrong PINs are bounded all its tablets together, across a restart; a revoked tablet's
unused codes go with it; a pairing that fails makes no link and leaves its code unused; a
logout tapped twice is 204, never 404; a lock's end is shown as the second it is over by; a
login that fails starts no session and ends none of the child's; a new PIN that fails leaves
the old one; a login that fails counts no attempt; a session is in use while its story
arrives, however slowly.
"""
import base64
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # test_members' helper is imported: no __pycache__
from serverlib import (Reader, Server, audit_count, damm, each_read_failing,  # noqa: E402
                       each_read_verdict, pairing_code, request, scratch_dir, unanswered,
                       until)
from apiclient import metric  # noqa: E402
from tap import finish, ok, skip  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample.wav")


def call(srv, method, path, token=None, obj=None, raw=None, timeout=30):
    hdrs = [("Authorization", f"Bearer {token}")] if token else []
    body = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
    if obj is not None or raw is not None:
        hdrs.append(("Content-Type", "application/json"))
    return request(srv, method, path, body, headers=hdrs, timeout=timeout)


def ctl(jiayinctl, data, *args):
    p = subprocess.run([jiayinctl, "--data", data, "--json", *args], capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"jiayinctl {' '.join(args)}: {p.returncode} {p.stderr}")
    return json.loads(p.stdout)


def find(obj, key):
    """The first value of `key` anywhere in a JSON object (jiayinctl's shapes may nest)."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find(v, key)
            if r is not None:
                return r
    if isinstance(obj, list):
        for v in obj:
            r = find(v, key)
            if r is not None:
                return r
    return None


def plain_upload_head(fam, token, length):
    """The head of a plain upload into fam by token (POST .../messages, Connection: close) of
    a body of `length` bytes."""
    return (f"POST /v1/families/{fam}/messages HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n"
            "Connection: close\r\n\r\n")


def send_slowly(srv, head, body, pieces, seconds, midway=None, timeout=120):
    """On a new connection, head, then body in `pieces` pieces over `seconds` (midway() after
    the first half of them): the answer."""
    sock = srv.connect(timeout)
    try:
        sock.sendall(head.encode())
        step = -(-len(body) // pieces)
        for i in range(pieces):
            sock.sendall(body[i * step:(i + 1) * step])
            time.sleep(seconds / pieces)
            if midway and i == pieces // 2 - 1:
                midway()
        return Reader(sock).response()
    finally:
        sock.close()


def new_upload(srv, token, fam, length):
    """A resumable upload of `length` bytes into fam, created by token: its URL, and the tus
    headers that speak for token."""
    tus = [("Authorization", f"Bearer {token}"), ("Tus-Resumable", "1.0.0")]
    meta = "family_id " + base64.b64encode(fam.encode()).decode()
    loc = request(srv, "POST", "/v1/uploads", headers=tus + [
        ("Upload-Length", str(length)), ("Upload-Metadata", meta)]).header("Location")
    return loc, tus


def kiosk_uploads(binary, jiayinctl, wav):
    """Two families' children record on one kiosk: each child has its own places for
    unfinished uploads, and erasing one family erases its child's, not the other's."""
    srv = Server(binary, "--uploads-per-device", "2")
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        children = []
        for fname, child in (("王家", "小明"), ("李家", "小红")):
            parent = call(srv, "POST", "/v1/families", obj={"family_name": fname,
                                                            "member_name": "妈妈"}).json()
            fam = parent["family"]["id"]
            kid = call(srv, "POST", f"/v1/families/{fam}/members", parent["token"],
                       {"member_name": child, "role": "child"}).json()["member"]
            code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
            link = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", parent["token"],
                        {"code": code, "member_id": kid["id"], "pin": [1, 2, 3, 4]}
                        ).json()["link"]
            children.append((parent, fam, link))

        def login(i):
            return call(srv, "POST", "/v1/kiosk/sessions", ktok,
                        {"child": children[i][2]["id"], "pin": [1, 2, 3, 4]}).json()["token"]

        def create(token, fam, key=None):
            meta = "family_id " + base64.b64encode(fam.encode()).decode()
            if key:
                meta += ",idempotency_key " + base64.b64encode(key.encode()).decode()
            return request(srv, "POST", "/v1/uploads",
                           headers=[("Tus-Resumable", "1.0.0"),
                                    ("Authorization", f"Bearer {token}"),
                                    ("Upload-Length", str(len(wav))),
                                    ("Upload-Metadata", meta)])

        def part_files():
            root = os.path.join(srv.data, "uploads")
            return sorted(f for _, _, fs in os.walk(root) for f in fs if f.endswith(".part"))
        a = login(0)
        made = [create(a, children[0][1]) for _ in range(3)]
        loc = made[0].header("Location")
        p = request(srv, "PATCH", loc, wav[:50000],
                    headers=[("Tus-Resumable", "1.0.0"), ("Authorization", f"Bearer {a}"),
                             ("Content-Type", "application/offset+octet-stream"),
                             ("Upload-Offset", "0")])
        b = login(1)
        theirs = create(b, children[1][1])
        ok([r.status for r in made] == [201, 201, 429] and p.status == 204 and
           theirs.status == 201,
           "on a kiosk each child has its own places (2 here): the first child's third "
           "upload is 429, the next child's first is 201",
           f"{[r.status for r in made]} {p.status} {theirs.status}")
        # The next child at the tablet (another family's) finds nothing of the first's upload,
        # though both are the kiosk's device: 404 to every method, as an unknown id, and the
        # upload is as it was when the first child comes back.
        tus = [("Tus-Resumable", "1.0.0"), ("Authorization", f"Bearer {b}")]
        tries = [request(srv, "GET", loc, headers=tus).status,
                 request(srv, "HEAD", loc, headers=tus).status,
                 request(srv, "PATCH", loc, wav[50000:60000],
                         headers=tus + [("Content-Type", "application/offset+octet-stream"),
                                        ("Upload-Offset", "50000")]).status,
                 request(srv, "DELETE", loc, headers=tus).status]
        back = request(srv, "HEAD", loc, headers=[("Tus-Resumable", "1.0.0"),
                                                  ("Authorization", f"Bearer {login(0)}")])
        ok(tries == [404] * 4 and back.status == 200 and
           back.header("Upload-Offset") == "50000",
           "the next child (another family's) at the tablet: the first child's upload is 404 "
           "to GET, HEAD, PATCH and DELETE, and is the first child's again, untouched",
           f"{tries} {back.status} {back.header('Upload-Offset')}")
        b = login(1)  # back at the tablet (the first child's return ended its session)
        ids_b = theirs.header("Location").rsplit("/", 1)[1]
        before = part_files()
        d = call(srv, "DELETE", f"/v1/families/{children[0][1]}", children[0][0]["token"])
        after = part_files()
        ok(d.status == 204 and len(before) == 3 and after == [ids_b + ".part"],
           "erasing a family erases its child's unfinished recordings on the kiosk, and only "
           "those", f"{before} -> {after}")
        # The child's creation sent again, its answer lost: in the same session, and in the
        # next one (the tablet's page reloaded), it is the same upload, in one place of two.
        story = [create(b, children[1][1], "xiaohong-story"),
                 create(b, children[1][1], "xiaohong-story"),
                 create(login(1), children[1][1], "xiaohong-story")]
        ok([r.status for r in story] == [201] * 3 and
           len({r.header("Location") for r in story}) == 1 and len(part_files()) == 2,
           "a child's creation sent again with its idempotency_key, in the same kiosk session "
           "or the next, is the same upload (no 429 at 2 places)",
           f"{[(r.status, r.header('Location')) for r in story]} {part_files()}")
    finally:
        srv.stop()


def answer_to_wait(srv, fam, token, change, wait=20):
    """A long-poll of token waiting (wait seconds) when change() is done: change()'s result,
    the long-poll's status, and the seconds it waited in all. A long-poll answered before the
    change began says so in its status: its answer is not the change's."""
    seq = call(srv, "GET", f"/v1/families/{fam}/messages", token).json()["seq"]
    got = {}

    def poll():
        t0 = time.time()
        got["r"] = call(srv, "GET", f"/v1/families/{fam}/messages?since={seq}&wait={wait}",
                        token, timeout=wait + 10)
        got["s"] = time.time() - t0
    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    waiting = th.is_alive()
    done = change()
    th.join(wait + 15)
    r = got.get("r")
    status = r.status if r else None
    return done, status if waiting else f"{status} before the change", round(got.get("s", 99), 1)


def burst(srv, reqs):
    """Requests sent at once, each on its own connection, before any answer is read, so they
    are all in flight together: (method, path, token, obj) each, obj None for no body. The
    answers, in order."""
    socks = []
    try:
        for method, path, token, obj in reqs:
            body = json.dumps(obj).encode() if obj is not None else b""
            head = (f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                    f"Content-Length: {len(body)}\r\n")
            if obj is not None:
                head += "Content-Type: application/json\r\n"
            if token:
                head += f"Authorization: Bearer {token}\r\n"
            socks.append((srv.connect(60), head.encode() + b"\r\n" + body))
        for sock, data in socks:
            sock.sendall(data)
        return [Reader(sock).response() for sock, _ in socks]
    finally:
        for sock, _ in socks:
            sock.close()


def errcode(r):
    return r.json()["error"]["code"] if r is not None and r.status >= 400 else None


def tally(answers):
    """{(status, error code): how many}"""
    out = {}
    for r in answers:
        k = (r.status if r is not None else None, errcode(r))
        out[k] = out.get(k, 0) + 1
    return out


def pairing_locks(binary, jiayinctl):
    """Every try at a pairing code counts before it is checked, so tries sent at once cannot
    pass the locks (review finding: 300 wrong codes at once from one address got 64 answers
    400 and no 429; 40 kiosk codes at once, 40 answers 400); a right code is given back."""
    wrong = [pairing_code(i) for i in range(40)]

    def new_family(srv):
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        return mom, mom["family"]["id"]

    def phone_code(srv, mom, fam):
        return call(srv, "POST", f"/v1/families/{fam}/pairing-codes", mom["token"],
                    {"role": "child", "member_name": "小明"}).json()["code"]

    def kiosk_setup(srv):
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        mom, fam = new_family(srv)
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": "小明", "role": "child"}).json()["member"]
        return ktok, mom, fam, kid

    def kiosk_link(srv, mom, fam, kid, code):
        return call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                    {"code": code, "member_id": kid["id"], "pin": [1, 2, 3, 4]})

    # one after the other: wrong codes within the limit, then the right one pairs and is not
    # counted (one more wrong code is still answered), then the lock
    srv = Server(binary, "--pair-failures", "5")
    try:
        mom, fam = new_family(srv)
        code = phone_code(srv, mom, fam)
        first = [call(srv, "POST", "/v1/pair", obj={"code": c}).status for c in wrong[:4]]
        right = call(srv, "POST", "/v1/pair", obj={"code": code})
        after = [call(srv, "POST", "/v1/pair", obj={"code": c}) for c in wrong[4:6]]
        ok(first == [400] * 4 and right.status == 201 and after[0].status == 400 and
           after[1].status == 429 and errcode(after[1]) == "pairing_locked",
           "phones: 4 wrong codes (of 5 allowed), the right one pairs (201) and does not "
           "count, the 5th wrong one is 400, the 6th 429 pairing_locked",
           f"{first} {right.status} {[r.status for r in after]}")
    finally:
        srv.stop()
    for flags, what in ((("--pair-failures", "5"), "from one address"),
                        (("--pair-failures", "1000", "--pair-failures-all", "5"),
                         "from everywhere (pair-failures-all)")):
        srv = Server(binary, "--max-queued-jobs", "256", *flags)
        try:
            mom, fam = new_family(srv)
            code = phone_code(srv, mom, fam)
            got = tally(burst(srv, [("POST", "/v1/pair", None, {"code": c}) for c in wrong]))
            ok(got.get((400, "invalid_pairing_code"), 0) <= 5 and
               got.get((400, "invalid_pairing_code"), 0) + got.get((429, "pairing_locked"), 0)
               == 40, f"phones: 40 wrong codes at once, a limit of 5 {what}: at most 5 "
               f"answered 400, the rest 429 pairing_locked", str(got))
            r = call(srv, "POST", "/v1/pair", obj={"code": code})
            ok(r.status == 429, "and then even the right code waits (429)", r.body[:200])
        finally:
            srv.stop()

    # the same for kiosk codes
    srv = Server(binary, "--pair-failures", "5")
    try:
        ktok, mom, fam, kid = kiosk_setup(srv)
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
        first = [kiosk_link(srv, mom, fam, kid, c).status for c in wrong[:4]]
        right = kiosk_link(srv, mom, fam, kid, code)
        after = [kiosk_link(srv, mom, fam, kid, c) for c in wrong[4:6]]
        ok(first == [400] * 4 and right.status == 201 and after[0].status == 400 and
           after[1].status == 429 and errcode(after[1]) == "pairing_locked",
           "kiosks: 4 wrong codes, the right one links (201) and does not count, the 5th "
           "wrong one is 400, the 6th 429", f"{first} {right.status} "
           f"{[r.status for r in after]}")
    finally:
        srv.stop()
    srv = Server(binary, "--pair-failures", "5", "--max-queued-jobs", "256")
    try:
        ktok, mom, fam, kid = kiosk_setup(srv)
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
        path = f"/v1/families/{fam}/kiosk-links"
        got = tally(burst(srv, [("POST", path, mom["token"],
                                 {"code": c, "member_id": kid["id"], "pin": [1, 2, 3, 4]})
                                for c in wrong]))
        ok(got.get((400, "invalid_pairing_code"), 0) <= 5 and
           got.get((400, "invalid_pairing_code"), 0) + got.get((429, "pairing_locked"), 0)
           == 40, "kiosks: 40 wrong codes at once: at most 5 answered 400, the rest 429",
           str(got))
        ok(kiosk_link(srv, mom, fam, kid, code).status == 429,
           "and then even the right kiosk code waits (429)")
    finally:
        srv.stop()


def links_and_pins(binary, jiayinctl):
    """Pairing a child to the same kiosk again is a new PIN: it ends the open session (review
    finding: it kept it); a family lists all its links, past 64 (review finding: the list
    stopped at 64); a wrong kiosk code is answered before the PIN is hashed (review finding:
    each cost Argon2's 19 MiB and ~40 ms)."""
    # 29 PIN changes in the family: past what a family sets, its bound raised
    srv = Server(binary, "--pair-failures", "20", "--pin-sets-per-hour", "100")
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktoks = [find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, name), "token")
                 for name in ("一楼", "二楼")]
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        links = f"/v1/families/{fam}/kiosk-links"

        def add_child(name):
            return call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                        {"member_name": name, "role": "child"}).json()["member"]

        def link(ktok, kid, pin):
            code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
            return call(srv, "POST", links, mom["token"],
                        {"code": code, "member_id": kid["id"], "pin": pin})

        def login(ktok, link_id, pin):
            return call(srv, "POST", "/v1/kiosk/sessions", ktok, {"child": link_id, "pin": pin})

        kid = add_child("小明")
        first = link(ktoks[0], kid, [1, 2, 3, 4]).json()["link"]
        sess = login(ktoks[0], first["id"], [1, 2, 3, 4]).json()["token"]
        again = link(ktoks[0], kid, [5, 6, 7, 8])
        old_pin = login(ktoks[0], first["id"], [1, 2, 3, 4])
        ok(again.status == 201 and again.json()["link"]["id"] == first["id"] and
           call(srv, "GET", "/v1/me", sess).status == 401 and old_pin.status == 403 and
           errcode(old_pin) == "wrong_pin",
           "pairing the child to the kiosk again (a new PIN) logs out whoever was in with the "
           "old one, whose pictures open nothing", f"{again.status} {old_pin.status}")
        new_pin = login(ktoks[0], first["id"], [5, 6, 7, 8])
        ok(new_pin.status == 201 and
           call(srv, "GET", "/v1/me", new_pin.json()["token"]).status == 200,
           "the new pictures open a session")

        # a login racing a PIN change: a session opened with the old PIN never outlives the
        # change (review finding: one that started after the change's commit kept it); sent
        # at once, the two cross in about half of the tries
        pins, stale, opened = [[5, 6, 7, 8], [8, 7, 6, 5]], [], 0
        for i in range(24):
            old, new = pins[i % 2], pins[(i + 1) % 2]
            lg, put = burst(srv, [("POST", "/v1/kiosk/sessions", ktoks[0],
                                   {"child": first["id"], "pin": old}),
                                  ("PUT", f"{links}/{first['id']}/pin", mom["token"],
                                   {"pin": new})])
            if lg.status == 201:
                opened += 1
                if call(srv, "GET", "/v1/me", lg.json()["token"]).status != 401:
                    stale.append(i)
            elif lg.status != 403 or put.status != 200:
                stale.append((i, lg.status, put.status))
        ok(not stale, "a login racing a PIN change: no session opened with the old PIN "
           "outlives the change", f"{opened} of 24 logins opened; these kept theirs: {stale}")

        # 33 children on 2 kiosks: 66 links, all in the family's list
        made = [first["id"], link(ktoks[1], kid, [1, 1, 1, 1]).json()["link"]["id"]]
        for i in range(32):
            child = add_child(f"孩子{i}")
            for ktok in ktoks:
                r = link(ktok, child, [i % 12, 0, 0, 0])
                made.append(r.json()["link"]["id"] if r.status == 201 else r.status)
        listed = call(srv, "GET", links, mom["token"])
        ids = [x["id"] for x in listed.json()["links"]] if listed.status == 200 else []
        ok(len(made) == 66 and sorted(ids) == sorted(made),
           "a family with 66 kiosk links lists all 66", f"{len(ids)} listed of {len(made)}")

        # A boarding school's kiosk with 1,100 children (rows as pairing makes them, written
        # straight into the directory: 1,100 pairings would hash 1,100 PINs): its first screen
        # shows every one of them (it stopped at 1,000 without a word, by name, so the children
        # whose names sort last could never find themselves on it).
        kiosk_id = call(srv, "GET", "/v1/kiosk/children", ktoks[1]).json()["kiosk"]["id"]
        alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
        now_ms = int(time.time() * 1000)
        many = []
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10)
        with db:
            for i in range(1100):
                member, link_id = (f"{i:04d}" + alphabet[k] * 22 for k in (10, 11))
                db.execute("INSERT INTO members (id, family_id, name, role, created_ms) "
                           "VALUES (?, ?, ?, 'child', ?)", (member, fam, f"寄宿生{i:04d}", now_ms))
                db.execute("INSERT INTO kiosk_links (id, kiosk_id, member_id, pin_hash, "
                           "created_ms) VALUES (?, ?, ?, ?, ?)",
                           (link_id, kiosk_id, member, "x", now_ms))
                many.append(link_id)
        db.close()
        screen = call(srv, "GET", "/v1/kiosk/children", ktoks[1])
        shown = {c["id"] for c in screen.json()["children"]} if screen.status == 200 else set()
        ok(set(many) <= shown and len(shown) == 1100 + 33,
           "a kiosk with 1,133 children shows all of them on its first screen",
           f"{screen.status}: {len(shown)} shown, {len(set(many) - shown)} of 1,100 missing")

        # a wrong code costs a lookup; a new PIN (as a right code) costs Argon2
        def took(fn):
            t = time.monotonic()
            fn()
            return time.monotonic() - t

        def median(xs):
            return sorted(xs)[len(xs) // 2]
        wrong = median([took(lambda: call(srv, "POST", links, mom["token"],
                                          {"code": pairing_code(i), "member_id": kid["id"],
                                           "pin": [1, 2, 3, 4]})) for i in range(5)])
        hashed = median([took(lambda: call(srv, "PUT", f"{links}/{first['id']}/pin",
                                           mom["token"], {"pin": [5, 6, 7, 8]}))
                         for _ in range(5)])
        ok(wrong < hashed / 2, "a wrong kiosk code is answered before any PIN is hashed: "
           "median under half of a PIN change's", f"{wrong * 1000:.1f} ms against "
           f"{hashed * 1000:.1f} ms")
    finally:
        srv.stop()


def kiosk_family(srv, jiayinctl):
    """A kiosk, a family and two of its children paired to it with the PIN 1 2 3 4: the
    mother, the family's id, the links, and a login (a link: its session's token)."""
    school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
    ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
    mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                 "member_name": "妈妈"}).json()
    fam = mom["family"]["id"]
    links = []
    for name in ("小明", "小刚"):
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": name, "role": "child"}).json()["member"]
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
        links.append(call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                          {"code": code, "member_id": kid["id"], "pin": [1, 2, 3, 4]}
                          ).json()["link"])

    def login(link):
        return call(srv, "POST", "/v1/kiosk/sessions", ktok,
                    {"child": link["id"], "pin": [1, 2, 3, 4]}).json()["token"]
    return mom, fam, links, login


def recording_outlives_session(binary, jiayinctl):
    """A child sends a long story from the school tablet and the next child logs in while it
    is transcoded: the first child's session ends, its recording is stored all the same
    (review finding: the sender's check after the transcode wanted the session still open,
    and the story was lost with 401 to a child already gone from the tablet)."""
    from test_members import during_transcode, long_wav
    wav = long_wav(180)
    srv = Server(binary)
    try:
        mom, fam, links, login = kiosk_family(srv, jiayinctl)
        first = login(links[0])
        up, second, during = during_transcode(srv, fam, first, wav, lambda: login(links[1]))
        msgs = call(srv, "GET", f"/v1/families/{fam}/messages", mom["token"]).json()["messages"]
        ok(during and second and call(srv, "GET", "/v1/me", first).status == 401 and
           up.status == 201 and [m["sender"] for m in msgs] == [links[0]["member_id"]],
           "the next child logs in while the first child's story is transcoded: the first "
           "session is over, and the story is stored (201)",
           f"{'' if during else 'logged in after the transcode: '}{up.status} "
           f"{up.body[:150]!r}")
        # But a child unpaired from the kiosk meanwhile (its PIN was seen): nothing is stored.
        up, d, during = during_transcode(srv, fam, second, wav, lambda: call(
            srv, "DELETE", f"/v1/families/{fam}/kiosk-links/{links[1]['id']}", mom["token"]))
        msgs = call(srv, "GET", f"/v1/families/{fam}/messages", mom["token"]).json()["messages"]
        ok(during and d.status == 204 and up.status == 401 and len(msgs) == 1,
           "a child unpaired from the kiosk while its story is transcoded: 401, nothing stored "
           "(the review: stored all the same)", f"{'' if during else 'unpaired after: '}"
           f"{d.status} {up.status} {len(msgs)}")
    finally:
        srv.stop()


def story_outlives_its_body(binary, jiayinctl, wav):
    """A child's story is stored when its session ends while the body is still on its way
    (the next child logs in on the tablet, or a slow link takes longer than kiosk-idle-s), and
    a resumable upload's when it ends while the finished upload waits its turn to be
    transcoded (review finding: the sender was authenticated again by its session's token
    when the transcode began, and the story was lost with 401, as docs/api.md says it is not)."""
    from test_members import long_wav

    def slow_upload(srv, fam, token, seconds, midway=None):
        """The recording in ten pieces over `seconds`, midway() after the fifth."""
        return send_slowly(srv, plain_upload_head(fam, token, len(wav)), wav, 10, seconds,
                           midway)

    srv = Server(binary, "--kiosk-idle-s", "10")
    try:
        mom, fam, links, login = kiosk_family(srv, jiayinctl)
        first = login(links[0])
        up = slow_upload(srv, fam, first, 1.0, lambda: login(links[1]))
        ok(up and up.status == 201 and call(srv, "GET", "/v1/me", first).status == 401 and
           up.json()["message"]["sender"] == links[0]["member_id"],
           "the next child logs in while the first child's story is still arriving: the "
           "first session is over, and the story is stored (201)",
           f"{up and up.status} {up and up.body[:150]!r}")
        second = login(links[1])
        up = slow_upload(srv, fam, second, 12.0)
        ok(up and up.status == 201 and up.json()["message"]["sender"] == links[1]["member_id"],
           "a story whose body takes longer than kiosk-idle-s (a slow link) is stored (201)",
           f"{up and up.status} {up and up.body[:150]!r}")
    finally:
        srv.stop()

    # One heavy job at a time (threads 2): the finished upload waits for mom's long one.
    srv = Server(binary, "--threads", "2")
    try:
        mom, fam, links, login = kiosk_family(srv, jiayinctl)
        first = login(links[0])
        loc, tus = new_upload(srv, first, fam, len(wav))
        long_one = long_wav(180)
        busy = srv.connect(120)
        patch = srv.connect(120)
        try:
            busy.sendall(plain_upload_head(fam, mom["token"], len(long_one)).encode() +
                         long_one)
            running = until(lambda: metric(srv, "jiayin_heavy_jobs_queued") == 1,
                            timeout=20) and unanswered(busy)  # it runs
            patch.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {first}"
                           "\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                           "Content-Type: application/offset+octet-stream\r\n"
                           f"Content-Length: {len(wav)}\r\nConnection: close\r\n\r\n")
                          .encode() + wav)
            # its body is in and its transcode waits its turn behind mom's
            waits = until(lambda: metric(srv, "jiayin_heavy_jobs_queued") == 2,
                          timeout=20) and unanswered(patch) and unanswered(busy)
            login(links[1])
            done, waited = Reader(patch).response(), Reader(busy).response()
        finally:
            busy.close()
            patch.close()
        msgs = call(srv, "GET", f"/v1/families/{fam}/messages", mom["token"]).json()["messages"]
        ok(running and waits and done and done.status == 204 and
           done.header("Jiayin-Message-Id") and waited and waited.status == 201 and
           sorted(m["sender"] for m in msgs) == sorted([mom["member"]["id"],
                                                        links[0]["member_id"]]),
           "the next child logs in while the first child's finished resumable upload waits "
           "its turn: it becomes a message all the same (204 with its id)",
           ("" if running else "mom's upload did not hold the thread; ") +
           ("" if waits else "the finished upload was not waiting at the login; ") +
           f"{done and done.status} {done and done.body[:150]!r} {waited and waited.status}")
    finally:
        srv.stop()


def session_in_use_while_its_story_arrives(binary, jiayinctl, wav):
    """A child's session is in use while its story is on its way, not only when the request
    arrived: over a school's slow link, a resumable upload's PATCH or a plain upload whose body
    takes longer than kiosk-idle-s keeps the session (the long-poll parked meanwhile hears the
    story, not 401; the token works right after: resuming with HEAD, GET /v1/me), and the
    session goes idle kiosk-idle-s after the upload's end. Before, it went idle under the upload
    (review finding): its long-poll heard 401 at kiosk-idle-s, the tablet went back to the
    login screen, and a resumable upload could not be resumed without logging in again."""
    def parked(fam, token):
        """A long-poll of token (wait 40 s) parked now: a dict that gets its answer and time."""
        seq = call(srv, "GET", f"/v1/families/{fam}/messages", token).json()["seq"]
        got = {}

        def poll():
            got["r"] = call(srv, "GET", f"/v1/families/{fam}/messages?since={seq}&wait=40",
                            token, timeout=60)
            got["t"] = time.time()
        got["thread"] = threading.Thread(target=poll)
        got["thread"].start()
        time.sleep(0.5)
        return got

    def heard(got, sender):
        got["thread"].join(60)
        r = got.get("r")
        return (r is not None and r.status == 200 and
                [m["sender"] for m in r.json()["messages"]] == [sender])

    srv = Server(binary, "--kiosk-idle-s", "10")
    try:
        mom, fam, links, login = kiosk_family(srv, jiayinctl)
        # A resumable upload: half of it in a PATCH of 12 s, the rest after a HEAD.
        tok = login(links[1])
        loc, tus = new_upload(srv, tok, fam, len(wav))
        poll = parked(fam, tok)
        half = len(wav) // 2
        p1 = send_slowly(srv, f"PATCH {loc} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                         f"{tok}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                         "Content-Type: application/offset+octet-stream\r\n"
                         f"Content-Length: {half}\r\nConnection: close\r\n\r\n",
                         wav[:half], 12, 12, timeout=60)
        head = request(srv, "HEAD", loc, headers=tus)
        p2 = request(srv, "PATCH", loc, wav[half:], headers=tus + [
            ("Upload-Offset", str(half)),
            ("Content-Type", "application/offset+octet-stream")], timeout=60)
        ok(p1 and p1.status == 204 and head.status == 200 and
           head.header("Upload-Offset") == str(half) and p2.status == 204 and
           p2.header("Jiayin-Message-Id") and heard(poll, links[1]["member_id"]),
           "a child's PATCH taking longer than kiosk-idle-s keeps the session: its HEAD and "
           "last PATCH right after make the story (before: 401, logged out), and the long-poll "
           "parked meanwhile hears the story, not 401",
           f"PATCH {p1 and p1.status}, HEAD {head.status} {head.header('Upload-Offset')}, "
           f"PATCH {p2.status} {p2.body[:100]!r}, long-poll "
           f"{poll.get('r') and poll['r'].status} {poll.get('r') and poll['r'].body[:100]!r}")

        # A plain upload whose body takes 14 s.
        tok = login(links[0])
        poll = parked(fam, tok)
        up = send_slowly(srv, plain_upload_head(fam, tok, len(wav)), wav, 14, 14, timeout=60)
        ended = time.time()
        me = call(srv, "GET", "/v1/me", tok)
        ok(up and up.status == 201 and me.status == 200 and
           me.json()["member"]["id"] == links[0]["member_id"] and
           heard(poll, links[0]["member_id"]),
           "a child's story whose body takes longer than kiosk-idle-s keeps the session: the "
           "token works right after (GET /v1/me 200, before: 401), and the long-poll parked "
           "meanwhile hears the story, not 401",
           f"{up and up.status}, me {me.status}, long-poll "
           f"{poll.get('r') and poll['r'].status} {poll.get('r') and poll['r'].body[:100]!r}")
        # From the upload's end, the session goes idle as after any request; long-polls
        # (the app waiting by itself) keep it no longer.
        seq = poll["r"].json()["seq"] if poll.get("r") and poll["r"].status == 200 else 0
        r = call(srv, "GET", f"/v1/families/{fam}/messages?since={seq}&wait=40", tok,
                 timeout=60)
        took = round(time.time() - ended, 1)
        ok(r.status == 401 and 9.0 <= took <= 11.5,
           "then the session goes idle kiosk-idle-s after the upload's end: a long-poll hears "
           "401 then", f"{r.status} {took}s after the end")
    finally:
        srv.stop()


def pins_leave_with_their_chooser(binary, jiayinctl):
    """A member removed from the family takes the kiosk PINs it chose with it (review finding:
    an aunt removed from the family logged in as the child at the school kiosk with the PIN
    she had chosen, and heard every message the family sent after). The child stays on the
    kiosk, its login says a grown-up must choose new pictures, and a parent's new ones work;
    PINs others chose are untouched."""
    from test_api import invite_and_pair
    srv = Server(binary)
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        aunt = invite_and_pair(srv, mom, "caregiver", "姑姑")
        links = f"/v1/families/{fam}/kiosk-links"

        def link(by, name, pin):
            kid = call(srv, "POST", f"/v1/families/{fam}/members", by["token"],
                       {"member_name": name, "role": "child"}).json()["member"]
            code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
            return call(srv, "POST", links, by["token"],
                        {"code": code, "member_id": kid["id"], "pin": pin}).json()["link"]

        def login(link_id, pin):
            return call(srv, "POST", "/v1/kiosk/sessions", ktok, {"child": link_id, "pin": pin})
        ming = link(aunt, "小明", [9, 9, 9, 9])
        hong = link(mom, "小红", [1, 2, 3, 4])
        ok(ming["pin_set"] and ming["pin_set_by"] == aunt["member"]["id"] and
           hong["pin_set_by"] == mom["member"]["id"],
           "a link says who chose its PIN", json.dumps([ming, hong], ensure_ascii=False))
        inside = login(ming["id"], [9, 9, 9, 9]).json()["token"]
        rm = call(srv, "DELETE", f"/v1/families/{fam}/members/{aunt['member']['id']}",
                  mom["token"])
        again = login(ming["id"], [9, 9, 9, 9])
        guess = login(ming["id"], [0, 0, 0, 0])
        ok(rm.status == 204 and call(srv, "GET", "/v1/me", inside).status == 401 and
           again.status == 409 and errcode(again) == "pin_not_set" and guess.status == 409,
           "the aunt is removed: the session she opened as the child ends, and her pictures "
           "open nothing (409 pin_not_set, for any pictures)", f"{rm.status} {again.status} "
           f"{again.body[:160]!r}")
        screen = {c["name"]: c for c in call(srv, "GET", "/v1/kiosk/children", ktok)
                  .json()["children"]}
        listed = {x["member_name"]: x for x in call(srv, "GET", links, mom["token"])
                  .json()["links"]}
        ok(set(screen) == {"小明", "小红"} and not screen["小明"]["pin_set"] and
           screen["小红"]["pin_set"] and not listed["小明"]["pin_set"] and
           listed["小明"]["pin_set_by"] is None and listed["小红"]["pin_set"] and
           screen["小明"]["locked_until"] is None,
           "the child stays on the kiosk's screen, which shows its pictures are to be chosen "
           "again, as the family's list does", json.dumps(screen, ensure_ascii=False))
        red = login(hong["id"], [1, 2, 3, 4])
        ok(red.status == 201, "the PIN a parent chose still opens its child's session")
        put = call(srv, "PUT", f"{links}/{ming['id']}/pin", mom["token"], {"pin": [3, 3, 3, 3]})
        new, old = login(ming["id"], [3, 3, 3, 3]), login(ming["id"], [9, 9, 9, 9])
        ok(put.status == 200 and put.json()["link"]["pin_set"] and
           put.json()["link"]["pin_set_by"] == mom["member"]["id"] and new.status == 201 and
           old.status == 403 and errcode(old) == "wrong_pin",
           "a parent chooses new pictures: they open the child's session, the aunt's do not",
           f"{put.status} {new.status} {old.status}")
    finally:
        srv.stop()


def pin_sets_bounded(binary, jiayinctl):
    """New PINs are bounded per family (pin-sets-per-hour): each is an Argon2 hash of 19 MiB
    and tens of ms of a pool thread, and a grown-up's token could ask for them without end
    (only the job queue bounded them). One over the bound is 429 rate_limited with
    Retry-After, whichever of the family's links it is for; requests of no grown-up of the
    family (a bad token, another family's parent) use none of it up; another family has its
    own."""
    srv = Server(binary, "--pin-sets-per-hour", "2")
    try:
        mom, fam, links, _ = kiosk_family(srv, jiayinctl)
        dad, dfam, dlinks, _ = kiosk_family(srv, jiayinctl)

        def put(who, family, link, pin):
            return call(srv, "PUT", f"/v1/families/{family}/kiosk-links/{link['id']}/pin",
                        who, {"pin": pin})
        strangers = [put("not-a-token", fam, links[0], [9, 9, 9, 9]).status,
                     put(dad["token"], fam, links[0], [9, 9, 9, 9]).status]
        within = [put(mom["token"], fam, links[0], [5, 5, 5, 5]).status,
                  put(mom["token"], fam, links[1], [6, 6, 6, 6]).status]
        over = put(mom["token"], fam, links[0], [7, 7, 7, 7])
        wait = over.header("Retry-After") or ""
        ok(strangers == [401, 404] and within == [200, 200] and over.status == 429 and
           errcode(over) == "rate_limited" and wait.isdigit() and 3500 <= int(wait) <= 3600,
           "pin-sets-per-hour 2: two new PINs in the family are set, the third is 429 "
           "rate_limited with Retry-After (the hour's end); a bad token's and another "
           "family's parent's did not count",
           f"{strangers} {within} {over.status} {wait!r} {over.body[:160]!r}")
        # The family's hour is spent: that is no stranger's to learn. A bad token is 401 and
        # another family's parent 404 as before (a 429 told them the family exists, and that
        # its grown-ups were setting PINs).
        after = [put("not-a-token", fam, links[0], [9, 9, 9, 9]),
                 put(dad["token"], fam, links[0], [9, 9, 9, 9]),
                 put(dad["token"], fam, dlinks[0], [9, 9, 9, 9])]
        ok([r.status for r in after] == [401, 404, 404] and
           put(mom["token"], fam, links[1], [7, 7, 7, 7]).status == 429,
           "once the family's hour is spent, a bad token is still 401 and another family's "
           "parent still 404 on its links, its own grown-ups 429",
           f"{[(r.status, r.body[:80]) for r in after]}")
        ok(put(dad["token"], dfam, dlinks[0], [8, 8, 8, 8]).status == 200,
           "another family sets its own")
    finally:
        srv.stop()


def kiosk_wide_pin_lock(binary, jiayinctl):
    """A kiosk's wrong PINs count all its children together (pin-failures-kiosk an hour), not
    only each child's: a pupil at the tablet trying every child's pictures got each child's
    few tries afresh (review finding: 55 wrong PINs over 11 children in 0.8 s, the 12th
    child's login untouched), a few dozen a week times hundreds of children, enough to open
    another family's child some week. Once it is spent even right pictures wait (429
    pin_locked); another kiosk is not touched."""
    srv = Server(binary, "--pin-failures-kiosk", "8")
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        ktok2 = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "教室平板"), "token")
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]

        def link(kiosk, name, pin):
            kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                       {"member_name": name, "role": "child"}).json()["member"]
            code = call(srv, "POST", "/v1/kiosk/pairing-codes", kiosk).json()["code"]
            return call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                        {"code": code, "member_id": kid["id"], "pin": pin}).json()["link"]

        def login(kiosk, link_id, pin):
            return call(srv, "POST", "/v1/kiosk/sessions", kiosk, {"child": link_id, "pin": pin})
        kids = [link(ktok, f"孩{i}", [i, 1, 2, 3]) for i in range(5)]
        there = link(ktok2, "小红", [4, 4, 4, 4])
        tries = [login(ktok, k["id"], [11, 11, 11, g]) for k in kids[:4] for g in (0, 1)]
        wrong = [r.status for r in tries]
        right = login(ktok, kids[4]["id"], [4, 1, 2, 3])
        ok(wrong == [403] * 7 + [429] and right.status == 429 and
           errcode(right) == "pin_locked" and right.header("Retry-After"),
           "8 wrong PINs over 4 children lock the kiosk's logins, a 5th child's right "
           "pictures included (429 pin_locked with Retry-After)",
           f"{wrong} {right.status} {right.body[:120]!r}")
        # The 8th, which spends the hour, is answered as the lock it starts, as a child's own
        # last try is: it was 403 wrong_pin with attempts_left (the child's own, 3), the tablet
        # let the next child try, and that child met the lock unwarned.
        last = tries[-1]
        ok(errcode(last) == "pin_locked" and "attempts_left" not in last.body.decode() and
           (last.header("Retry-After") or "").isdigit() and
           3600 - 60 <= int(last.header("Retry-After")) <= 3600,
           "the wrong PIN that spends the kiosk's hour: 429 pin_locked, Retry-After the hour's "
           "end, no attempts_left", f"{last.status} {last.body[:120]!r} "
           f"{last.header('Retry-After')}")
        # Retry-After is when the hour that counted them is over (it said 900 whatever was
        # left of it: a child told to come back in 15 minutes met the lock again, up to 45
        # minutes more; one near its end waited 15 minutes for nothing)
        wait = right.header("Retry-After") or ""
        ok(wait.isdigit() and 3600 - 60 <= int(wait) <= 3600,
           "the kiosk's lock says to retry when its hour is over (about 3600 s here, just "
           "counted)", wait)
        other = login(ktok2, there["id"], [4, 4, 4, 4])
        ok(other.status == 201, "another kiosk's logins are not locked", f"{other.status}")
    finally:
        srv.stop()
    # sent at once: each is counted before its PIN is checked, as pairing codes are (checked
    # only before the job, 40 wrong PINs in flight together were all answered 403)
    srv = Server(binary, "--pin-failures-kiosk", "8", "--max-queued-jobs", "256")
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        kids = []
        for i in range(8):
            kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                       {"member_name": f"孩{i}", "role": "child"}).json()["member"]
            code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
            kids.append(call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                             {"code": code, "member_id": kid["id"],
                              "pin": [i, 1, 2, 3]}).json()["link"])
        got = tally(burst(srv, [("POST", "/v1/kiosk/sessions", ktok,
                                 {"child": k["id"], "pin": [11, 11, 11, g]})
                                for k in kids for g in range(5)]))
        ok(got.get((403, "wrong_pin"), 0) <= 7 and
           got.get((403, "wrong_pin"), 0) + got.get((429, "pin_locked"), 0) == 40,
           "40 wrong PINs over 8 children at once, pin-failures-kiosk 8: at most 7 answered "
           "403 wrong_pin (the 8th starts the lock), the rest 429 pin_locked", str(got))
        right = call(srv, "POST", "/v1/kiosk/sessions", ktok,
                     {"child": kids[0]["id"], "pin": [0, 1, 2, 3]})
        ok(right.status == 429, "and then even right pictures wait (429)", f"{right.status}")
    finally:
        srv.stop()


def lock_after_the_clock_set_back(binary, jiayinctl):
    """A child's lock set by a clock since set back (a wrong time put right: here an hour ahead,
    written as such) is over, not kept until the clock catches up with it: the kiosk's screen
    said an hour (a kiosk that greys a locked child's picture out never let them try), and the
    login was 429 pin_locked with Retry-After: 3600."""
    srv = Server(binary, "--pin-failures", "3", "--pin-lock-s", "2")
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": "小明", "role": "child"}).json()["member"]
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
        link = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                    {"code": code, "member_id": kid["id"], "pin": [1, 2, 3, 4]}).json()["link"]
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10)
        with db:
            db.execute("UPDATE kiosk_links SET failures = 3, locked_until_ms = ? WHERE id = ?",
                       (int((time.time() + 3600) * 1000), link["id"]))
        db.close()
        shown = call(srv, "GET", "/v1/kiosk/children", ktok).json()["children"][0]
        listed = call(srv, "GET", f"/v1/families/{fam}/kiosk-links",
                      mom["token"]).json()["links"][0]
        ok(shown["locked_until"] is None and listed["locked_until"] is None,
           "a lock an hour ahead of the clock (2 s long) is over: not on the kiosk's screen, "
           "nor in the family's links", f"{shown['locked_until']} {listed['locked_until']} "
           f"now {int(time.time())}")
        opened = call(srv, "POST", "/v1/kiosk/sessions", ktok,
                      {"child": link["id"], "pin": [1, 2, 3, 4]})
        ok(opened.status == 201, "the child's right pictures open at once",
           f"{opened.status} {opened.header('Retry-After')}")
    finally:
        srv.stop()


def woken(srv, fam, token, change, wait=20):
    """A long-poll of token waiting (wait seconds) when change() is done: change()'s result,
    the long-poll's status, and the seconds from the change's start to the long-poll's answer
    (the change included: a login checks its PIN first). A long-poll answered before the change
    began says so in its status (its answer, and a negative time, are not the change's)."""
    seq = call(srv, "GET", f"/v1/families/{fam}/messages", token).json()["seq"]
    got = {}

    def poll():
        got["r"] = call(srv, "GET", f"/v1/families/{fam}/messages?since={seq}&wait={wait}",
                        token, timeout=wait + 10)
        got["t"] = time.time()
    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    waiting = th.is_alive()
    t0 = time.time()
    done = change()
    th.join(wait + 15)
    r = got.get("r")
    status = r.status if r else None
    return (done, status if waiting else f"{status} before the change",
            round(got.get("t", t0 + 99) - t0, 2))


def a_kiosk_with_children(srv, jiayinctl, names):
    """A kiosk with two tablets (two device tokens), a family and its children paired to it,
    each with the pictures [i, i, i, i]: the kiosk's add output, its two tokens, the mother,
    the family's id and the links."""
    school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
    kiosk = ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板")
    ktok = find(kiosk, "token")
    kiosk_id = find(kiosk, "kiosk")["id"]
    ktok2 = find(ctl(jiayinctl, srv.data, "kiosk", "token", kiosk_id, "二号平板"), "token")
    mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                 "member_name": "妈妈"}).json()
    fam = mom["family"]["id"]
    links = []
    for i, name in enumerate(names):
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": name, "role": "child"}).json()["member"]
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
        links.append(call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                          {"code": code, "member_id": kid["id"], "pin": [i] * 4}
                          ).json()["link"])
    return kiosk, ktok, ktok2, mom, fam, links


def kiosk_lock_spans_its_tablets(binary, jiayinctl):
    """A kiosk's wrong PINs (pin-failures-kiosk an hour) are the kiosk's, all its tablets
    together: they were counted by the tablet's token, so a kiosk of N tablets had N times the
    tries (the review: tablet 2 answered 201 while tablet 1 was locked). Sent at once from both
    tablets they check no more; a tablet revoked since, and a restart, do not give them back;
    another kiosk is not touched."""
    srv = Server(binary, "--pin-failures-kiosk", "8")
    try:
        kiosk, ktok, ktok2, mom, fam, kids = a_kiosk_with_children(
            srv, jiayinctl, [f"孩{i}" for i in range(6)])
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "实验中学"), "id")
        ktok3 = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "图书馆"), "token")
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": "小红", "role": "child"}).json()["member"]
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok3).json()["code"]
        there = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                     {"code": code, "member_id": kid["id"], "pin": [7] * 4}).json()["link"]

        def login(token, link, pin):
            return call(srv, "POST", "/v1/kiosk/sessions", token,
                        {"child": link["id"], "pin": pin})
        wrong = [login(tok, k, [11, 11, 11, g]).status
                 for tok, pair in ((ktok, kids[0:2]), (ktok2, kids[2:4]))
                 for k in pair for g in (0, 1)]
        second, first = login(ktok2, kids[4], [4] * 4), login(ktok, kids[5], [5] * 4)
        wait = second.header("Retry-After") or ""
        ok(wrong == [403] * 7 + [429] and second.status == 429 and
           errcode(second) == "pin_locked" and
           first.status == 429 and errcode(first) == "pin_locked",
           "4 wrong PINs on each of a kiosk's two tablets, pin-failures-kiosk 8: the kiosk is "
           "locked on both, right pictures included (429 pin_locked)",
           f"{wrong} {second.status} {second.body[:100]!r} {first.status}")
        ok(wait.isdigit() and 3600 - 60 <= int(wait) <= 3600,
           "Retry-After: when the kiosk's hour is over (about 3600 s, just counted)", wait)
        other = login(ktok3, there, [7] * 4)
        ok(other.status == 201, "another kiosk's logins are not locked", f"{other.status}")
        # The kiosk's screen says so (its children's pictures looked open while every login
        # was 429), on each tablet; another kiosk's does not.
        screens = [call(srv, "GET", "/v1/kiosk/children", tok).json()["kiosk"].get(
            "locked_until", "absent") for tok in (ktok, ktok2, ktok3)]
        now = time.time()
        ok(all(isinstance(t, int) and now + 3600 - 60 <= t <= now + 3601 for t in screens[:2])
           and screens[2] is None,
           "the kiosk's screen, on both tablets, says when its lock ends (kiosk.locked_until); "
           "another kiosk's says null", f"{screens} now {int(now)}")
    finally:
        srv.stop()

    srv = Server(binary, "--pin-failures-kiosk", "8", "--pin-failures", "100",
                 "--max-queued-jobs", "256")
    try:
        kiosk, ktok, ktok2, mom, fam, kids = a_kiosk_with_children(
            srv, jiayinctl, [f"孩{i}" for i in range(8)])
        got = tally(burst(srv, [("POST", "/v1/kiosk/sessions", (ktok, ktok2)[g % 2],
                                 {"child": k["id"], "pin": [11, 11, 11, g]})
                                for k in kids for g in range(5)]))
        ok(got.get((403, "wrong_pin"), 0) == 7 and got.get((429, "pin_locked"), 0) == 33,
           "40 wrong PINs at once from a kiosk's two tablets, pin-failures-kiosk 8: 8 checked "
           "(7 answered 403 wrong_pin, the 8th the lock it starts), 32 refused (429 "
           "pin_locked)", str(got))
    finally:
        srv.stop()

    srv = Server(binary, "--pin-failures-kiosk", "8")
    try:
        kiosk, ktok, ktok2, mom, fam, kids = a_kiosk_with_children(
            srv, jiayinctl, [f"孩{i}" for i in range(4)])
        third = ctl(jiayinctl, srv.data, "kiosk", "token", find(kiosk, "kiosk")["id"], "三号平板")

        def login(token, k, pin):
            return call(srv, "POST", "/v1/kiosk/sessions", token, {"child": k["id"], "pin": pin})
        before = [login(find(third, "token"), kids[i % 4], [11] * 4).status for i in range(5)]
        ctl(jiayinctl, srv.data, "device", "revoke", find(third, "device")["id"])
        srv.stop()
        srv = Server(binary, "--pin-failures-kiosk", "8", data=srv.data)
        after = [login(ktok, kids[i % 4], [11] * 4).status for i in range(3)]
        right = login(ktok, kids[3], [3] * 4)
        ok(before == [403] * 5 and after == [403, 403, 429] and right.status == 429 and
           errcode(right) == "pin_locked",
           "5 wrong PINs on a tablet revoked since, then a restart: the kiosk's other tablet "
           "has 3 left of its hour, the third answered as the lock it starts, then 429 "
           "pin_locked",
           f"{before} {after} {right.status} {right.body[:100]!r}")
    finally:
        srv.stop()


def failed_login_ends_the_session(binary, jiayinctl):
    """A login tried on the tablet (it is at the login screen) ends the session open on it,
    whatever its outcome: a child who walked away without the home button left their session
    open, its long-poll listing their family, when the next child typed wrong pictures (or met
    a lock, or sent a malformed PIN, or a child not found): only a right PIN ended it, else
    kiosk-idle-s did. Its long-poll hears 401 at once. A locked attempt checks and counts no
    PIN all the same; a token that is not this tablet's ends nothing."""
    srv = Server(binary, "--pin-failures", "3", "--pin-lock-s", "60", "--pin-failures-kiosk", "6")
    try:
        kiosk, ktok, ktok2, mom, fam, (a, b, c) = a_kiosk_with_children(
            srv, jiayinctl, ("小明", "小刚", "小强"))
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10)

        def login(link, pin, token=ktok):
            return call(srv, "POST", "/v1/kiosk/sessions", token,
                        {"child": link["id"], "pin": pin})

        def open_a():
            return login(a, [0] * 4).json()["token"]

        def failures(link):
            return db.execute("SELECT failures FROM kiosk_links WHERE id = ?",
                              (link["id"],)).fetchone()[0]

        sa = open_a()
        r, status, took = woken(srv, fam, sa, lambda: login(b, [9] * 4))
        ok(r.status == 403 and errcode(r) == "wrong_pin" and status == 401 and took < 1.0 and
           call(srv, "GET", "/v1/me", sa).status == 401,
           "the next child's wrong pictures end the session open on the tablet: its long-poll "
           "answers 401 within a second, its token 401", f"{r.status} {status} {took}s")
        login(b, [9] * 4)
        locking = login(b, [9] * 4)  # the third wrong: the child's lock
        sa = open_a()
        before = failures(b)
        r, status, took = woken(srv, fam, sa, lambda: login(b, [1] * 4))
        ok(locking.status == 429 and r.status == 429 and errcode(r) == "pin_locked" and
           status == 401 and took < 1.0 and call(srv, "GET", "/v1/me", sa).status == 401 and
           failures(b) == before,
           "a locked child's attempt (429 pin_locked) ends it too, at once, and counts nothing",
           f"{locking.status} {r.status} {status} {took}s failures {before}->{failures(b)}")
        for what, bad, want in (("a malformed PIN", {"child": c["id"], "pin": "x"}, 400),
                                ("a child not found", {"child": "nonsense", "pin": [1] * 4},
                                 404)):
            sa = open_a()
            r, status, took = woken(srv, fam, sa, lambda: call(
                srv, "POST", "/v1/kiosk/sessions", ktok, bad))
            ok(r.status == want and status == 401 and took < 1.0 and
               call(srv, "GET", "/v1/me", sa).status == 401,
               f"{what} ({want}) ends it too, at once", f"{r.status} {status} {took}s")

        # Not this tablet: a bad token, a phone's, the session's own, the kiosk's other tablet
        sa = open_a()
        others = [(r.status, errcode(r)) for r in (
            call(srv, "POST", "/v1/kiosk/sessions", tok, {"child": c["id"], "pin": [9] * 4})
            for tok in ("not-a-token", mom["token"], sa, ktok2))]
        ok(others == [(401, "unauthorized"), (403, "forbidden"), (403, "forbidden"),
                      (403, "wrong_pin")] and call(srv, "GET", "/v1/me", sa).status == 200,
           "a login with a token that is not this tablet's (a bad one, a phone's, the "
           "session's, the kiosk's other tablet's) ends nothing", f"{others}")

        # The kiosk's wrong PINs spent (pin-failures-kiosk 6: b's 3 and c's on the other
        # tablet so far, c's lock not counted again): a login refused by it, 429, ends the
        # tablet's session all the same. No login opens one then: it is opened as a login would,
        # straight in the directory.
        spending = [login(link, [9] * 4).status for link in (c, c, a)]
        spent = login(a, [0] * 4)
        token = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        now_ms = int(time.time() * 1000)
        kdev = find(kiosk, "device_id") or find(find(kiosk, "device") or {}, "id")
        with db:
            db.execute("INSERT INTO kiosk_sessions (token_hash, device_id, link_id, created_ms, "
                       "last_used_ms) VALUES (?, ?, ?, ?, ?)",
                       (hashlib.sha256(token.encode()).digest(), kdev, a["id"], now_ms, now_ms))
        before = failures(a)
        r, status, took = woken(srv, fam, token, lambda: login(a, [0] * 4))
        ok(spending == [403, 429, 429] and spent.status == 429 and r.status == 429 and
           errcode(r) == "pin_locked" and
           r.header("Retry-After") and status == 401 and took < 1.0 and
           call(srv, "GET", "/v1/me", token).status == 401 and failures(a) == before,
           "the kiosk's wrong PINs spent (429 pin_locked): a login ends the tablet's session "
           "too, at once, and checks and counts no PIN",
           f"{spending} {spent.status} {r.status} {status} {took}s "
           f"failures {before}->{failures(a)}")
        db.close()
    finally:
        srv.stop()


def right_pin_meeting_503_counts_nothing(binary, jiayinctl):
    """A child with the right pictures whose login met a store that could not start the
    session (503; here a trigger refuses it, standing in for a busy or failing disk) is not
    counted a wrong PIN: the attempt, counted before the PIN was checked, is given back, the
    child's and the kiosk's. It stayed counted, so pin-failures such logins locked the child
    out (the review)."""
    srv = Server(binary, "--pin-failures", "3", "--pin-lock-s", "60", "--pin-failures-kiosk", "6")
    try:
        kiosk, ktok, ktok2, mom, fam, (a,) = a_kiosk_with_children(srv, jiayinctl, ("小明",))
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10,
                             isolation_level=None)
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON kiosk_sessions "
                   "BEGIN SELECT RAISE(ABORT, 'the disk failed'); END")

        def login():
            return call(srv, "POST", "/v1/kiosk/sessions", ktok,
                        {"child": a["id"], "pin": [0] * 4})

        failed = [login().status for _ in range(4)]
        counts = db.execute("SELECT l.failures, l.locked_until_ms, k.pin_failures FROM "
                            "kiosk_links l JOIN kiosks k ON k.id = l.kiosk_id WHERE l.id = ?",
                            (a["id"],)).fetchone()
        db.execute("DROP TRIGGER refuse")
        db.close()
        r = login()
        ok(failed == [503] * 4 and counts == (0, 0, 0) and r.status == 201,
           "four right-PIN logins that met 503 count nothing (no wrong PIN, no lock, the "
           "kiosk's hour untouched): the next is 201",
           f"{failed} failures/lock/kiosk {counts} then {r.status}")
    finally:
        srv.stop()


def child_at_one_tablet(binary, jiayinctl):
    """A child who logs in on a second tablet (of the same kiosk, or of another school's kiosk
    they are paired to) is no longer at the first: their session there ends, its long-poll
    hears 401 at once (it stayed open until idle, showing their family to whoever came to the
    first tablet). Another child's session on another tablet stays."""
    srv = Server(binary)
    try:
        kiosk, ktok, ktok2, mom, fam, (a, b) = a_kiosk_with_children(
            srv, jiayinctl, ("小明", "小刚"))
        school2 = find(ctl(jiayinctl, srv.data, "school", "add", "实验中学"), "id")
        ktok3 = find(ctl(jiayinctl, srv.data, "kiosk", "add", school2, "图书馆"), "token")
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok3).json()["code"]
        far = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                   {"code": code, "member_id": a["member_id"], "pin": [7] * 4}).json()["link"]

        def login(token, link, pin):
            return call(srv, "POST", "/v1/kiosk/sessions", token,
                        {"child": link["id"], "pin": pin})
        first = login(ktok, a, [0] * 4).json()["token"]
        r, status, took = woken(srv, fam, first, lambda: login(ktok2, a, [0] * 4))
        second = r.json().get("token") if r.status == 201 else None
        ok(r.status == 201 and status == 401 and took < 1.0 and
           call(srv, "GET", "/v1/me", first).status == 401 and
           call(srv, "GET", "/v1/me", second).status == 200,
           "the child logs in on the kiosk's other tablet: the first tablet's session is over, "
           "its long-poll answers 401 at once", f"{r.status} {status} {took}s")
        theirs = login(ktok, b, [1] * 4).json()["token"]
        r, status, took = woken(srv, fam, second, lambda: login(ktok3, far, [7] * 4))
        ok(r.status == 201 and status == 401 and took < 1.0 and
           call(srv, "GET", "/v1/me", second).status == 401 and
           call(srv, "GET", "/v1/me", r.json()["token"]).status == 200,
           "the child logs in at another school's kiosk: their session on the first kiosk's "
           "tablet is over, its long-poll answers 401 at once", f"{r.status} {status} {took}s")
        ok(call(srv, "GET", "/v1/me", theirs).status == 200,
           "another child's session on the first kiosk stays")
    finally:
        srv.stop()


def logout_tapped_twice(binary, jiayinctl):
    """The logout button tapped twice (its requests at once, each on its own connection) ends
    the session once and is answered 204, never 404: the second request, its token checked
    while the session was still open, found it ended by the first and was answered 404
    not_found, as if the child's session had never been (the app took it for an error). Once
    the session is over its token is 401, as any ended session's."""
    srv = Server(binary)
    try:
        mom, fam, links, login = kiosk_family(srv, jiayinctl)
        seen, alive = {}, []
        for _ in range(10):
            token = login(links[0])
            got = burst(srv, [("DELETE", "/v1/kiosk/session", token, None)] * 3)
            for r in got:
                k = (r.status, errcode(r)) if r is not None else None
                seen[k] = seen.get(k, 0) + 1
            alive.append(call(srv, "GET", "/v1/me", token).status)
        ok(set(seen) <= {(204, None), (401, "unauthorized")} and
           seen.get((204, None), 0) >= 10 and set(alive) == {401},
           "three logouts at once with the session's token, ten times: each 204 (or 401 once "
           "the session was over when it was checked), never 404; the session is over",
           f"{seen} then {alive}")
    finally:
        srv.stop()


def lock_ends_as_shown(binary, jiayinctl):
    """A lock's end on the kiosk's screen (a child's `locked_until`, the kiosk's) is a second
    by which it is over: it was rounded down, so a tablet that let a locked child try again at
    the time it showed had the right pictures refused, 429 pin_locked with Retry-After: 1 (the
    lock ends within the second after the one shown, as the same server's Retry-After said)."""
    srv = Server(binary, "--pin-failures", "2", "--pin-lock-s", "2", "--pin-failures-kiosk", "8")
    try:
        kiosk, ktok, ktok2, mom, fam, kids = a_kiosk_with_children(
            srv, jiayinctl, ("小明", "小刚", "小红", "小丽"))

        def login(link, pin):
            return call(srv, "POST", "/v1/kiosk/sessions", ktok, {"child": link["id"], "pin": pin})

        def shown():
            return call(srv, "GET", "/v1/kiosk/children", ktok).json()
        opened = []
        for i, kid in enumerate(kids[:3]):
            locking = [login(kid, [11, 11, 11, g]).status for g in (0, 1)]
            until = next(c["locked_until"] for c in shown()["children"] if c["id"] == kid["id"])
            listed = next(x["locked_until"] for x in call(
                srv, "GET", f"/v1/families/{fam}/kiosk-links", mom["token"]).json()["links"]
                if x["id"] == kid["id"])
            time.sleep(max(0.0, until - time.time()) + 0.01)  # the second shown, just begun
            r = login(kid, [i] * 4)
            opened.append((locking, until == listed, r.status, r.header("Retry-After")))
        ok(all(x[:3] == ([403, 429], True, 201) for x in opened),
           "a child locked by wrong pictures opens with the right ones at the time the kiosk's "
           "screen (and the family's links) said the lock ends", str(opened))
        locking = [login(kids[3], [11, 11, 11, g]).status for g in (0, 1)]
        until = shown()["kiosk"]["locked_until"]
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10)
        start, count = db.execute("SELECT pin_window_ms, pin_failures FROM kiosks WHERE id = ?",
                                  (kiosk["kiosk"]["id"],)).fetchone()
        db.close()
        end = start + 3600 * 1000
        ok(locking == [403, 429] and count == 8 and until == -(-end // 1000),
           "the kiosk's wrong PINs spent: its lock is shown as the second it is over by (its "
           "hour's end rounded up)", f"{locking} {count} shown {until} for an end at {end} ms")
    finally:
        srv.stop()


def kiosk_codes_bounded(binary, jiayinctl):
    """A kiosk's token asking for pairing codes in a loop (a tablet's app retrying, a token
    copied off a tablet) gets 10 alive at once, then 429 too_many_pairing_codes with
    Retry-After until the first expires, nothing stored: it made as many as it asked, each a
    directory write and one more code to guess. A used code frees its place; another kiosk is
    not affected."""
    srv = Server(binary, "--max-queued-jobs", "256")
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        other = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "图书馆"), "token")
        answers = burst(srv, [("POST", "/v1/kiosk/pairing-codes", ktok, None)] * 25)
        made = [r for r in answers if r.status == 201]
        refused = [r for r in answers if r.status == 429]
        retry = sorted({int(r.header("Retry-After") or 0) for r in refused})
        with sqlite3.connect(os.path.join(srv.data, "directory.db")) as c:
            rows = c.execute("SELECT count(*) FROM kiosk_codes").fetchone()[0]
        ok(len(made) == 10 and len(refused) == 15 and rows == 10 and
           all(errcode(r) == "too_many_pairing_codes" for r in refused) and
           retry and 590 <= retry[0] and retry[-1] <= 600,
           "a kiosk asking 25 codes at once gets 10; the others 429 too_many_pairing_codes "
           "with Retry-After until the first expires, and nothing stored for them",
           f"{len(made)} made, {len(refused)} refused, {rows} rows, Retry-After {retry}")
        ok(call(srv, "POST", "/v1/kiosk/pairing-codes", other).status == 201,
           "another kiosk still gets its code")
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": "小明", "role": "child"}).json()["member"]
        link = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                    {"code": made[0].json()["code"], "member_id": kid["id"], "pin": [1] * 4})
        again = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok)
        ok(link.status == 201 and again.status == 201 and
           call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).status == 429,
           "a code used frees its place: one more, and then 429 again",
           f"{link.status} {again.status}")
    finally:
        srv.stop()


def codes_go_with_their_tablet(binary, jiayinctl):
    """A kiosk tablet revoked (`jiayinctl device revoke`: a stolen tablet) takes the codes it
    showed and nobody used with it: they paired a child to the kiosk, and held the kiosk's 10
    live codes (429 too_many_pairing_codes on its other tablets), until they expired 10
    minutes on. The other tablet's code still works."""
    srv = Server(binary)
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        kiosk = ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板")
        ktok = find(kiosk, "token")
        ktok2 = find(ctl(jiayinctl, srv.data, "kiosk", "token", find(kiosk, "kiosk")["id"],
                         "二号平板"), "token")
        codes = [call(srv, "POST", "/v1/kiosk/pairing-codes", ktok) for _ in range(10)]
        full = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok2)
        ok(all(r.status == 201 for r in codes) and full.status == 429 and
           errcode(full) == "too_many_pairing_codes",
           "a tablet shows 10 codes: the kiosk's other tablet gets 429 too_many_pairing_codes",
           f"{[r.status for r in codes]} {full.status}")
        ctl(jiayinctl, srv.data, "device", "revoke", find(kiosk, "device")["id"])
        fresh = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok2)
        ok(fresh.status == 201,
           "the tablet revoked, its codes no longer count: the other tablet gets a code",
           f"{fresh.status} {fresh.body[:120]!r}")
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": "小明", "role": "child"}).json()["member"]
        link = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                    {"code": codes[0].json()["code"], "member_id": kid["id"], "pin": [1] * 4})
        ok(link.status == 400 and errcode(link) == "invalid_pairing_code",
           "and a code it showed no longer pairs a child (400 invalid_pairing_code)",
           f"{link.status} {link.body[:120]!r}")
        link = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                    {"code": fresh.json()["code"], "member_id": kid["id"], "pin": [1] * 4}) \
            if fresh.status == 201 else fresh
        ok(link.status == 201, "the other tablet's code pairs the child", f"{link.status}")
    finally:
        srv.stop()


def codes_after_the_clock_set_back(binary, jiayinctl):
    """A kiosk's codes made while the server's clock was ahead (an hour here, written as such:
    a wrong time put right since) do not count towards its 10 live codes: they kept it at 429
    too_many_pairing_codes with Retry-After: 4200, where a code lives 10 minutes, and no parent
    at the school could pair a child for 70 minutes. The codes still work until they expire."""
    srv = Server(binary)
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        ahead = [call(srv, "POST", "/v1/kiosk/pairing-codes", ktok) for _ in range(10)]
        with sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10) as db:
            db.execute("UPDATE kiosk_codes SET created_ms = created_ms + 3600000, "
                       "expires_ms = expires_ms + 3600000")
        db.close()
        now = [call(srv, "POST", "/v1/kiosk/pairing-codes", ktok) for _ in range(11)]
        wait = now[-1].header("Retry-After") or ""
        ok([r.status for r in ahead] == [201] * 10 and
           [r.status for r in now] == [201] * 10 + [429] and wait.isdigit() and
           590 <= int(wait) <= 600,
           "codes made by a clock an hour ahead, since set back, do not count: the kiosk gets "
           "its 10 codes, then 429 with Retry-After until the first of those expires (600 s)",
           f"{[r.status for r in now]} Retry-After {wait}")
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": "小明", "role": "child"}).json()["member"]
        link = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                    {"code": ahead[0].json()["code"], "member_id": kid["id"], "pin": [1] * 4})
        ok(link.status == 201, "a code made before the clock was set back still pairs",
           f"{link.status}")
    finally:
        srv.stop()


def link_whole_or_nothing(binary, jiayinctl, eio_preload):
    """A child paired to a kiosk is paired with what the parent is told, or not at all: the
    directory's page of schools failing to read, at each of its reads in turn, the pairing is
    answered 201 with a link the child logs in with, or 503 with the code unused and no link.
    The link the answer shows was read after it was stored: a read that failed answered 503
    and left the link made and the code spent (pairing again with it: 400, counted towards the
    pairing locks)."""
    if not eio_preload:
        skip("a kiosk link whose read fails leaves nothing behind",
             "no eio_preload library given")
        return
    srv = Server(binary)
    try:
        school_id = find(ctl(jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        ktok = find(ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板"), "token")
        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        kid = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                   {"member_name": "小明", "role": "child"}).json()["member"]
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
    finally:
        srv.stop()
    path = f"/v1/families/{fam}/kiosk-links"
    body = {"code": code, "member_id": kid["id"], "pin": [1, 2, 3, 4]}

    def paired(s, r):
        links = call(s, "GET", path, mom["token"]).json()["links"]
        if r.status == 201:
            link = r.json()["link"]
            login = call(s, "POST", "/v1/kiosk/sessions", ktok,
                         {"child": link["id"], "pin": [1, 2, 3, 4]})
            return (link["school"] == "希望小学" and [x["id"] for x in links] == [link["id"]] and
                    login.status == 201), f"201, {len(links)} link(s), login {login.status}"
        again = call(s, "POST", path, mom["token"], body)
        return (r.status == 503 and links == [] and again.status == 201,
                f"{r.status} {r.body[:120]!r}: {len(links)} link(s), the code again: "
                f"{again.status}")

    runs = each_read_failing(binary, srv.data, eio_preload, "schools",
                             lambda s: call(s, "POST", path, mom["token"], body), paired)
    verdict, seen = each_read_verdict(runs, 201)
    ok(verdict,
       "a child paired to a kiosk, the school's row failing to read at each read in turn: 201 "
       "and a link the child logs in with, or 503 and no link (the code links once the disk is "
       "well)", seen)


def login_whole_or_nothing(binary, jiayinctl, eio_preload):
    """A child's login at a kiosk starts the session it answers with, or none: the directory's
    page of families failing to read, at each of its reads in turn, the login with the right
    pictures is answered 201 with a token that works (the child's session on the other tablet
    over), or 503 with no session stored, the child's session on the other tablet going on and
    the attempt not counted (the child logs in once the disk is well). The member and family
    the answer names were read after the session was stored: a read that failed answered 503
    and left a session nobody had the token of, the child's other session ended."""
    if not eio_preload:
        skip("a kiosk login whose read fails leaves nothing behind",
             "no eio_preload library given")
        return
    srv = Server(binary)
    try:
        kiosk, ktok, ktok2, mom, fam, (a, b) = a_kiosk_with_children(
            srv, jiayinctl, ("小明", "小刚"))
        there = call(srv, "POST", "/v1/kiosk/sessions", ktok2,
                     {"child": a["id"], "pin": [0] * 4}).json()["token"]
        call(srv, "POST", "/v1/kiosk/sessions", ktok, {"child": b["id"], "pin": [1] * 4})
    finally:
        srv.stop()

    def login(s):
        return call(s, "POST", "/v1/kiosk/sessions", ktok, {"child": a["id"], "pin": [0] * 4})

    def on_disk(s):
        db = sqlite3.connect(f"file:{os.path.join(s.data, 'directory.db')}?mode=ro", uri=True)
        try:
            sessions = db.execute("SELECT count(*) FROM kiosk_sessions WHERE link_id = ?",
                                  (a["id"],)).fetchone()[0]
            counted = db.execute("SELECT l.failures, k.pin_failures FROM kiosk_links l JOIN "
                                 "kiosks k ON k.id = l.kiosk_id WHERE l.id = ?",
                                 (a["id"],)).fetchone()
        finally:
            db.close()
        return sessions, counted

    def started(s, r):
        sessions, counted = on_disk(s)
        elsewhere = call(s, "GET", "/v1/me", there).status
        if r.status == 201:
            got = r.json()
            me = call(s, "GET", "/v1/me", got["token"])
            return (me.status == 200 and me.json()["member"]["name"] == "小明" and
                    got["member"]["name"] == "小明" and got["family"]["name"] == "王家" and
                    elsewhere == 401 and sessions == 1 and counted == (0, 0)), (
                f"201, its token {me.status}, the other tablet's {elsewhere}, {sessions} "
                f"session(s), counted {counted}")
        again = login(s).status
        return (r.status == 503 and elsewhere == 200 and sessions == 1 and
                counted == (0, 0) and again == 201), (
            f"{r.status} {r.body[:100]!r}: the other tablet's session {elsewhere}, {sessions} "
            f"session(s) of the child, counted {counted}, logging in again: {again}")

    runs = each_read_failing(binary, srv.data, eio_preload, "families", login, started)
    verdict, seen = each_read_verdict(runs, 201)
    ok(verdict,
       "a child logging in at a kiosk, the family's row failing to read at each read in turn: "
       "201 and a token that works, or 503 with no session stored, the child's on the other "
       "tablet going on and nothing counted (the login works once the disk is well)", seen)


def session_through_a_full_disk(binary, jiayinctl, eio_preload):
    """A child's kiosk session goes on while the server's disk is full (or fails writes): its
    use is recorded as a phone's last-seen is, when the disk lets it. The record was part of
    every request of the session's, so with the disk full each was answered 507 storage_full:
    the child at the school's tablet could not hear, list or even see who they were (GET
    /v1/me), while the parents' phones heard everything. Once the disk has room again its
    use is recorded again (the session kept from going idle)."""
    if not eio_preload:
        skip("a kiosk session through a full disk", "no eio_preload library given")
        return
    tmp = scratch_dir("jiayin-full-")
    data, flag = os.path.join(tmp, "data"), os.path.join(tmp, "full")
    srv = Server(binary, "--kiosk-idle-s", "40", data=data,
                 env={"LD_PRELOAD": eio_preload, "JIAYIN_FULL_WHILE": flag,
                      "JIAYIN_FULL_DIR": os.path.realpath(data) + "/",
                      "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                      ":verify_asan_link_order=0"})
    try:
        kiosk, ktok, ktok2, mom, fam, (a,) = a_kiosk_with_children(srv, jiayinctl, ("小明",))
        tok = call(srv, "POST", "/v1/kiosk/sessions", ktok,
                   {"child": a["id"], "pin": [0] * 4}).json()["token"]
        db = sqlite3.connect(os.path.join(data, "directory.db"), timeout=10)

        def last_used():
            return db.execute("SELECT max(last_used_ms) FROM kiosk_sessions").fetchone()[0]
        before = last_used()
        # the family's mailbox open (a family first opened on a full disk cannot grow its
        # -shm: storage_full, for the parents too; docs/operations.md)
        call(srv, "GET", f"/v1/families/{fam}/messages?since=0", mom["token"])
        open(flag, "w").close()  # the disk is full from now on
        time.sleep(2.2)  # past the next record's time (every twentieth of 40 s)
        full = [call(srv, "GET", path, tok) for path in
                ("/v1/me", f"/v1/families/{fam}/messages?since=0")]
        parent = call(srv, "GET", f"/v1/families/{fam}/messages?since=0", mom["token"])
        ok([r.status for r in full] == [200, 200] and parent.status == 200 and
           full[0].json()["member"]["name"] == "小明" and last_used() == before,
           "the disk full: a child's kiosk session still answers 200 (its use not recorded), "
           "as a parent's phone does", f"{[(r.status, r.body[:80]) for r in full]} "
           f"{parent.status} last used {before} -> {last_used()}")
        os.unlink(flag)
        time.sleep(2.2)
        again = call(srv, "GET", "/v1/me", tok)
        ok(again.status == 200 and last_used() > before,
           "room again: the session's use is recorded again", f"{again.status} {before} "
           f"-> {last_used()}")
        db.close()
    finally:
        if os.path.exists(flag):
            os.unlink(flag)
        srv.stop()


def pin_whole_or_nothing(binary, jiayinctl, eio_preload):
    """A parent's new PIN for a child at a kiosk is set with what the parent is told, or not at
    all: the directory's page of schools failing to read, at each of its reads in turn, the
    change is answered 200 with the link, the new pictures open, the child's session with the
    old ones over and the change in the audit log, or 503 with the old pictures still the
    child's, their session open and nothing audited. The link the answer shows was read after
    the new PIN was stored: a read that failed answered 503 and left the PIN changed (the
    parent, told it failed, did not give the child the new pictures), the child logged out and
    no audit record."""
    if not eio_preload:
        skip("a new kiosk PIN whose read fails changes nothing", "no eio_preload library given")
        return
    srv = Server(binary)
    try:
        kiosk, ktok, ktok2, mom, fam, (a,) = a_kiosk_with_children(srv, jiayinctl, ("小明",))
        there = call(srv, "POST", "/v1/kiosk/sessions", ktok,
                     {"child": a["id"], "pin": [0] * 4}).json()["token"]
    finally:
        srv.stop()
    path = f"/v1/families/{fam}/kiosk-links/{a['id']}/pin"

    def audited(s):
        return audit_count(s.data, "kiosk.pin")

    def login(s, pin):
        return call(s, "POST", "/v1/kiosk/sessions", ktok2, {"child": a["id"], "pin": pin})

    def changed(s, r):
        records = audited(s)
        session = call(s, "GET", "/v1/me", there).status
        if r.status == 200:
            link = r.json()["link"]
            new, old = login(s, [5] * 4).status, login(s, [0] * 4).status
            return (link["id"] == a["id"] and link["school"] == "希望小学" and
                    link["pin_set_by"] == mom["member"]["id"] and session == 401 and
                    records == 1 and new == 201 and old == 403), (
                f"200, the session {session}, {records} audit record(s), the new pictures "
                f"{new}, the old {old}")
        old = login(s, [0] * 4).status
        again = call(s, "PUT", path, mom["token"], {"pin": [5] * 4}).status
        return (r.status == 503 and session == 200 and records == 0 and old == 201 and
                again == 200), (
            f"{r.status} {r.body[:100]!r}: the session {session}, {records} audit record(s), "
            f"the old pictures {old}, the new PIN again: {again}")

    runs = each_read_failing(binary, srv.data, eio_preload, "schools",
                             lambda s: call(s, "PUT", path, mom["token"], {"pin": [5] * 4}),
                             changed)
    verdict, seen = each_read_verdict(runs, 200)
    ok(verdict,
       "a parent's new PIN for a child at a kiosk, the school's row failing to read at each "
       "read in turn: 200, the new pictures open and the change audited, or 503 with the old "
       "pictures the child's, their session open and nothing audited", seen)


def attempt_whole_or_nothing(binary, jiayinctl, eio_preload):
    """A login's attempt is counted with what the tablet is told, or not at all: a child with
    four wrong tries behind them (pin-failures 5) types the right pictures while the
    directory's page of schools fails to read, at each of its reads in turn: 201 with a token
    that works, or 503 with nothing counted, the child not locked and the login working once
    the disk is well. The link the attempt's answer needs was read after the attempt was
    counted: a read that failed answered 503 and left the attempt counted, the child's fifth,
    so the right pictures, typed again, were 429 pin_locked for 15 minutes."""
    if not eio_preload:
        skip("a kiosk login attempt whose read fails counts nothing",
             "no eio_preload library given")
        return
    srv = Server(binary)
    try:
        kiosk, ktok, ktok2, mom, fam, (a,) = a_kiosk_with_children(srv, jiayinctl, ("小明",))
        wrong = [call(srv, "POST", "/v1/kiosk/sessions", ktok,
                      {"child": a["id"], "pin": [9] * 4}).status for _ in range(4)]
        assert wrong == [403] * 4, wrong
    finally:
        srv.stop()

    def login(s):
        return call(s, "POST", "/v1/kiosk/sessions", ktok, {"child": a["id"], "pin": [0] * 4})

    def counted(s):
        db = sqlite3.connect(f"file:{os.path.join(s.data, 'directory.db')}?mode=ro", uri=True)
        try:
            return db.execute("SELECT l.failures, l.locked_until_ms > 0, k.pin_failures FROM "
                              "kiosk_links l JOIN kiosks k ON k.id = l.kiosk_id WHERE l.id = ?",
                              (a["id"],)).fetchone()
        finally:
            db.close()

    def answered(s, r):
        now = counted(s)
        if r.status == 201:
            me = call(s, "GET", "/v1/me", r.json()["token"]).status
            return me == 200 and now == (0, 0, 4), f"201, its token {me}, counted {now}"
        again = login(s)
        return (r.status == 503 and now == (4, 0, 4) and again.status == 201), (
            f"{r.status} {r.body[:100]!r}: counted {now} (the child's, locked, the kiosk's), "
            f"the right pictures again: {again.status} {errcode(again)}")

    runs = each_read_failing(binary, srv.data, eio_preload, "schools", login, answered)
    verdict, seen = each_read_verdict(runs, 201)
    ok(verdict,
       "a child's right pictures after four wrong, the school's row failing to read at each "
       "read in turn: 201 and a token that works, or 503 with nothing counted and the child not "
       "locked (the right pictures open once the disk is well)", seen)


def main():
    binary, jiayinctl = sys.argv[1], sys.argv[2]
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary, "--kiosk-idle-s", "10", "--pin-failures", "3", "--pin-lock-s", "2")
    try:
        school = ctl(jiayinctl, srv.data, "school", "add", "希望小学")
        school_id = find(school, "id")
        kiosk = ctl(jiayinctl, srv.data, "kiosk", "add", school_id, "宿舍平板")
        ktok = find(kiosk, "token")
        ok(school_id and ktok, "jiayinctl registers a school and its kiosk, with a token",
           json.dumps(kiosk))

        mom = call(srv, "POST", "/v1/families", obj={"family_name": "王家",
                                                     "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        r = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                 {"member_name": "小明", "role": "child", "avatar": "cat"})
        kid = r.json().get("member", {}) if r.status == 201 else {}
        ok(r.status == 201 and kid.get("role") == "child" and kid.get("avatar") == "cat",
           "a parent adds a child who has no phone", r.body[:200])
        other = call(srv, "POST", "/v1/families", obj={"family_name": "李家",
                                                       "member_name": "爸爸"}).json()
        hong = call(srv, "POST", f"/v1/families/{other['family']['id']}/members",
                    other["token"], {"member_name": "小红", "role": "child"}).json()["member"]

        # the kiosk's own token sees no family
        ch = call(srv, "GET", "/v1/kiosk/children", ktok)
        ok(ch.status == 200 and ch.json()["children"] == [] and
           ch.json()["kiosk"]["name"] == "宿舍平板" and ch.json()["pin_pictures"] == 12,
           "a new kiosk has no children yet", ch.body[:200])
        ok(call(srv, "GET", "/v1/me", ktok).status == 401 and
           call(srv, "GET", f"/v1/families/{fam}/messages", ktok).status == 401,
           "the kiosk's token opens no family endpoint (401)")
        ok(call(srv, "GET", "/v1/kiosk/children", mom["token"]).status == 403 and
           call(srv, "POST", "/v1/kiosk/pairing-codes", mom["token"]).status == 403,
           "a phone's token opens no kiosk endpoint (403)")

        # pairing a child to the kiosk
        code = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok)
        c = code.json() if code.status == 201 else {}
        ok(code.status == 201 and re.fullmatch(r"\d{16}", c.get("code", "")) and
           damm(c["code"]) == 0 and c["expires_at"] > time.time() + 500,
           "the kiosk shows a 16-digit code, its last digit checking the others")
        links = f"/v1/families/{fam}/kiosk-links"
        typo = c["code"][:-1] + str((int(c["code"][-1]) + 1) % 10)
        bad = [({"code": pairing_code(0), "member_id": kid["id"], "pin": [1, 2, 3, 4]}, 400,
                "invalid_pairing_code", "a wrong code"),
               ({"code": typo, "member_id": kid["id"], "pin": [1, 2, 3, 4]}, 400,
                "mistyped_pairing_code", "a typo in the code"),
               ({"code": c["code"][:8], "member_id": kid["id"], "pin": [1, 2, 3, 4]}, 400,
                "invalid_pairing_code", "half a code"),
               ({"code": c["code"], "member_id": mom["member"]["id"], "pin": [1, 2, 3, 4]}, 400,
                "invalid_member", "a parent instead of a child"),
               ({"code": c["code"], "member_id": hong["id"], "pin": [1, 2, 3, 4]}, 400,
                "invalid_member", "another family's child"),
               ({"code": c["code"], "member_id": kid["id"], "pin": [1, 2, 3]}, 400,
                "invalid_pin", "three pictures"),
               ({"code": c["code"], "member_id": kid["id"], "pin": [1, 2, 3, 12]}, 400,
                "invalid_pin", "a picture out of range"),
               ({"code": c["code"], "member_id": kid["id"], "pin": "1234"}, 400,
                "invalid_pin", "a PIN as text")]
        for body, status, errcode, what in bad:
            r = call(srv, "POST", links, mom["token"], body)
            ok(r.status == status and r.json()["error"]["code"] == errcode,
               f"linking with {what}: {status} {errcode}", r.body[:200])
        r = call(srv, "POST", links, other["token"],
                 {"code": c["code"], "member_id": kid["id"], "pin": [1, 2, 3, 4]})
        ok(r.status == 404, "another family cannot link this family's child (404)")
        pin = [3, 7, 0, 11]
        k = c["code"]
        r = call(srv, "POST", links, mom["token"],
                 {"code": f"{k[:4]} {k[4:8]} {k[8:12]} {k[12:]}", "member_id": kid["id"],
                  "pin": pin})
        link = r.json().get("link", {}) if r.status == 201 else {}
        ok(r.status == 201 and link.get("member_id") == kid["id"] and
           link["kiosk"]["name"] == "宿舍平板" and link["school"] == "希望小学",
           "the parent links the child to the kiosk with the code (typed in groups of four) "
           "and a picture PIN", r.body)
        again = call(srv, "POST", links, mom["token"],
                     {"code": c["code"], "member_id": kid["id"], "pin": pin})
        ok(again.status == 400 and again.json()["error"]["code"] == "invalid_pairing_code",
           "the code works once")
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10)
        stored = db.execute("SELECT pin_hash FROM kiosk_links").fetchall()
        ok(len(stored) == 1 and stored[0][0].startswith("$argon2id$"),
           "the PIN is stored as Argon2id, nothing else")

        # the kiosk's first screen: pictures and names, nothing more
        ch = call(srv, "GET", "/v1/kiosk/children", ktok).json()
        ok(ch["children"] == [{"id": link["id"], "name": "小明", "avatar": "cat",
                               "pin_set": True, "locked_until": None}],
           "the kiosk lists the child: picture and name, no family or member id", ch)

        # a message from mother, waiting for the child
        up = call(srv, "POST", f"/v1/families/{fam}/messages", mom["token"], raw=wav,
                  timeout=60)
        mid = up.json()["message"]["id"]

        # wrong pictures lock the login
        login = "/v1/kiosk/sessions"
        w1 = call(srv, "POST", login, ktok, {"child": link["id"], "pin": [0, 0, 0, 0]})
        w2 = call(srv, "POST", login, ktok, {"child": link["id"], "pin": [1, 1, 1, 1]})
        ok(w1.status == 403 and w1.json()["error"]["code"] == "wrong_pin" and
           w1.json()["error"]["attempts_left"] == 2 and w2.json()["error"]["attempts_left"] == 1,
           "wrong pictures: 403 wrong_pin with the attempts left", w1.body[:200])
        w3 = call(srv, "POST", login, ktok, {"child": link["id"], "pin": [2, 2, 2, 2]})
        locked_at = time.time()
        right = call(srv, "POST", login, ktok, {"child": link["id"], "pin": pin})
        ok(w3.status == 429 and w3.json()["error"]["code"] == "pin_locked" and
           w3.header("Retry-After") in ("1", "2") and right.status == 429,
           "the third wrong try locks the login; even the right pictures wait", w3.body[:200])
        ch = call(srv, "GET", "/v1/kiosk/children", ktok).json()
        ok(ch["children"][0]["locked_until"] is not None, "the kiosk can show the lock")
        time.sleep(max(0, locked_at + 2.1 - time.time()))
        w4 = call(srv, "POST", login, ktok, {"child": link["id"], "pin": [4, 4, 4, 4]})
        ok(w4.status == 403 and w4.json()["error"]["attempts_left"] == 2,
           "after the lock, a wrong try counts towards the next (longer) lock", w4.body[:200])
        s1 = call(srv, "POST", login, ktok, {"child": link["id"], "pin": pin})
        sess = s1.json() if s1.status == 201 else {}
        ok(s1.status == 201 and sess["member"]["id"] == kid["id"] and
           sess["family"]["id"] == fam and sess["idle_s"] == 10,
           "after the lock, the right pictures open the child's session", s1.body[:200])
        st = sess.get("token", "x")

        # the session speaks for the child
        me = call(srv, "GET", "/v1/me", st)
        ok(me.status == 200 and me.json()["member"]["id"] == kid["id"],
           "GET /v1/me: the child", me.body[:200])
        lst = call(srv, "GET", f"/v1/families/{fam}/messages", st).json()
        audio = call(srv, "GET", f"/v1/families/{fam}/messages/{mid}/audio", st)
        ok([m["id"] for m in lst["messages"]] == [mid] and audio.status == 200 and
           audio.body[:4] == b"OggS", "the child lists and hears mother's message on the kiosk")
        on_phone = call(srv, "GET", f"/v1/families/{fam}/messages/{mid}/audio", mom["token"])
        ok(audio.header("Cache-Control") == "private, no-store" and
           "immutable" in (on_phone.header("Cache-Control") or ""),
           "the kiosk's browser keeps none of it (no-store); a phone keeps it (no data spent "
           "to hear it again)", f"{audio.header('Cache-Control')} / "
           f"{on_phone.header('Cache-Control')}")
        reply = call(srv, "POST", f"/v1/families/{fam}/messages", st, raw=wav, timeout=60)
        ok(reply.status == 201 and reply.json()["message"]["sender"] == kid["id"],
           "and replies with a recording of their own")
        ok(call(srv, "POST", f"/v1/families/{fam}/pairing-codes", st,
                {"role": "child", "member_name": "x"}).status == 403 and
           call(srv, "GET", f"/v1/families/{other['family']['id']}/messages", st).status == 404,
           "a child's rules hold: no invitations (403), no other family (404)")
        ok(call(srv, "GET", f"/v1/families/{fam}/messages", ktok).status == 401,
           "the kiosk's own token still sees no family during the session")

        # idle: the session ends by itself, though the app keeps long-polling (it asks by
        # itself; the child walked away from the shared tablet)
        cur = call(srv, "GET", f"/v1/families/{fam}/messages", st)  # the child's last use
        used_at = time.time()
        used, since = cur.status, cur.json().get("seq")
        polls = []
        while time.time() < used_at + 4:
            polls.append(call(srv, "GET", f"/v1/families/{fam}/messages?since={since}&wait=2",
                              st).status)
        # The long-poll waiting when the session goes idle hears 401 then, not when its wait is
        # over: the tablet kept the child's screen, for the next child at it, until then.
        polls.append(call(srv, "GET", f"/v1/families/{fam}/messages?since={since}&wait=40",
                          st, timeout=60).status)
        took = round(time.time() - used_at, 1)
        ok(used == 200 and call(srv, "GET", "/v1/me", st).status == 401 and
           set(polls[:-1]) == {200} and polls[-1] == 401,
           "unused for kiosk-idle-s, the session is over (401), long-polls or not",
           f"polls {polls}")
        ok(polls[-1] == 401 and 9.0 <= took <= 11.0,
           "a long-poll (wait 40 s) of the session hears 401 when it goes idle (10 s unused), "
           "not when its wait is over", f"{polls[-1]} {took}s after the last use")

        # A child who uses the session while its long-poll waits keeps it, and the long-poll
        # waits on: it hears 401 when the session goes idle from that use.
        sx = call(srv, "POST", login, ktok, {"child": link["id"], "pin": pin}).json()["token"]
        cur = call(srv, "GET", f"/v1/families/{fam}/messages", sx)
        got = {}

        def waiting():
            got["r"] = call(srv, "GET", f"/v1/families/{fam}/messages?since="
                            f"{cur.json()['seq']}&wait=40", sx, timeout=60)
            got["t"] = time.time()
        th = threading.Thread(target=waiting)
        th.start()
        time.sleep(6)
        me = call(srv, "GET", "/v1/me", sx)
        used_at = time.time()
        th.join(60)
        r = got.get("r")
        took = round(got.get("t", 0) - used_at, 1)
        ok(me.status == 200 and r is not None and r.status == 401 and 9.0 <= took <= 11.0,
           "used while its long-poll waits, the session lasts: the long-poll hears 401 when it "
           "goes idle from that use", f"{r.status if r else None} {took}s after the use")

        # the next child ends the previous session; logging out ends one
        s2 = call(srv, "POST", login, ktok, {"child": link["id"], "pin": pin}).json()["token"]
        code2 = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
        hl = call(srv, "POST", f"/v1/families/{other['family']['id']}/kiosk-links",
                  other["token"], {"code": code2, "member_id": hong["id"],
                                   "pin": [5, 5, 5, 5]}).json()["link"]
        s3, status, took = answer_to_wait(srv, fam, s2, lambda: call(
            srv, "POST", login, ktok, {"child": hl["id"], "pin": [5, 5, 5, 5]}))
        ok(s3.status == 201 and call(srv, "GET", "/v1/me", s2).status == 401 and
           call(srv, "GET", "/v1/me", s3.json()["token"]).status == 200,
           "the next child's login ends the previous child's session")
        # on its long-poll too, at once: the tablet showed the first child's screen (another
        # family's child at it) until the wait was over
        ok(status == 401 and took < 5,
           "the next child's login: the previous session's long-poll answers 401 at once",
           f"{status} after {took}s")
        ch = call(srv, "GET", "/v1/kiosk/children", ktok).json()
        ok(sorted(x["name"] for x in ch["children"]) == ["小明", "小红"],
           "children of two families share the kiosk")
        out = call(srv, "DELETE", "/v1/kiosk/session", s3.json()["token"])
        ok(out.status == 204 and call(srv, "GET", "/v1/me", s3.json()["token"]).status == 401,
           "DELETE /v1/kiosk/session with the session's token ends it")
        s4 = call(srv, "POST", login, ktok, {"child": link["id"], "pin": pin}).json()["token"]
        out, status, took = answer_to_wait(srv, fam, s4, lambda: call(
            srv, "DELETE", "/v1/kiosk/session", ktok).status)
        ok(out == 204 and call(srv, "GET", "/v1/me", s4).status == 401,
           "the kiosk's home button (its own token) ends whichever session is open")
        ok(status == 401 and took < 5,
           "the home button: the session's long-poll answers 401 at once", f"{status} after {took}s")

        # racing wrong PINs cannot check more than the lock allows (review finding)
        # The lock (pin-lock-s 2) may end while the race is still being answered on a loaded
        # machine (each checked PIN is an Argon2 hash): each lock that ended lets pin-failures
        # more through, and the next lasts twice as long (2 s, then 4 s).
        import concurrent.futures

        def wrong_at_once(i):
            r = call(srv, "POST", login, ktok, {"child": hl["id"], "pin": [i % 5, 0, 0, 0]})
            return r, time.time()
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(12) as ex:
            race = list(ex.map(wrong_at_once, range(12)))
        took = time.time() - started
        codes = sorted(r.status for r, _ in race)
        allowed = 2 if took < 2 else 4 if took < 6 else 6
        ok(codes.count(403) <= allowed and codes.count(403) + codes.count(429) == 12,
           f"12 wrong PINs at once: at most 2 answered wrong_pin per lock that ended during "
           f"the race, the rest locked ({codes} in {took:.1f} s)")
        lock_end = max(at + int(r.header("Retry-After") or 0) for r, at in race)
        time.sleep(max(0, lock_end + 0.1 - time.time()))
        ok(call(srv, "POST", login, ktok, {"child": hl["id"], "pin": [5, 5, 5, 5]}).status == 201,
           "after the lock, the right pictures open")

        # the family manages its links
        ll = call(srv, "GET", links, mom["token"]).json()
        ok([x["id"] for x in ll["links"]] == [link["id"]] and
           call(srv, "GET", f"/v1/families/{other['family']['id']}/kiosk-links",
                other["token"]).json()["links"][0]["id"] == hl["id"] and
           call(srv, "GET", links, other["token"]).status == 404,
           "each family lists its own children's kiosks")
        # A session a new PIN or an unlinking ends hears 401 on its long-poll at once, not
        # when its wait is over (the tablet showed the child's screen up to a minute on).
        def ended_while_waiting(pictures, change):
            opened = call(srv, "POST", login, ktok, {"child": link["id"],
                                                     "pin": pictures}).json()
            return answer_to_wait(srv, fam, opened["token"], change)
        done, status, took = ended_while_waiting(pin, lambda: call(
            srv, "PUT", f"{links}/{link['id']}/pin", mom["token"], {"pin": pin}).status)
        ok(done == 200 and status == 401 and took < 5,
           "a new PIN: the session's long-poll answers 401 at once", f"{done} {status} {took}s")
        newpin = [9, 8, 7, 6]
        p = call(srv, "PUT", f"{links}/{link['id']}/pin", mom["token"], {"pin": newpin})
        ok(p.status == 200 and
           call(srv, "POST", login, ktok, {"child": link["id"], "pin": pin}).status == 403 and
           call(srv, "POST", login, ktok, {"child": link["id"], "pin": newpin}).status == 201,
           "a parent changes the PIN: the old pictures stop working, the new ones open")
        opened = call(srv, "POST", login, ktok, {"child": link["id"], "pin": newpin}).json()
        call(srv, "PUT", f"{links}/{link['id']}/pin", mom["token"], {"pin": newpin})
        ok(call(srv, "GET", "/v1/me", opened["token"]).status == 401,
           "a new PIN logs out whoever was in with the old one")
        ok(call(srv, "PUT", f"{links}/{hl['id']}/pin", mom["token"], {"pin": newpin}).status
           == 404 and call(srv, "DELETE", f"{links}/{hl['id']}", mom["token"]).status == 404,
           "another family's link: 404")
        gone, status, took = ended_while_waiting(newpin, lambda: call(
            srv, "DELETE", f"{links}/{link['id']}", mom["token"]).status)
        ok(gone == 204 and status == 401 and took < 5,
           "unlinked: the session's long-poll answers 401 at once", f"{gone} {status} {took}s")
        ch = call(srv, "GET", "/v1/kiosk/children", ktok).json()
        ok(gone == 204 and [x["name"] for x in ch["children"]] == ["小红"] and
           call(srv, "POST", login, ktok, {"child": link["id"], "pin": newpin}).status == 404,
           "unlinked: the child leaves the kiosk's screen and cannot log in")
        ok(call(srv, "POST", login, ktok, {"child": "nonsense", "pin": newpin}).status == 404
           and call(srv, "POST", login, ktok, {"child": hl["id"], "pin": "x"}).status == 400,
           "an unknown child: 404; a malformed PIN: 400")

        # revoking the kiosk's token (a stolen tablet)
        kdev = find(kiosk, "device_id") or find(find(kiosk, "device") or {}, "id")
        rv = subprocess.run([jiayinctl, "--data", srv.data, "device", "revoke", kdev],
                            capture_output=True, timeout=60)
        ok(rv.returncode == 0 and call(srv, "GET", "/v1/kiosk/children", ktok).status == 401,
           "jiayinctl revokes the kiosk's token: it stops working at once")
    finally:
        srv.stop()
    kiosk_uploads(binary, jiayinctl, wav)
    pairing_locks(binary, jiayinctl)
    links_and_pins(binary, jiayinctl)
    recording_outlives_session(binary, jiayinctl)
    story_outlives_its_body(binary, jiayinctl, wav)
    session_in_use_while_its_story_arrives(binary, jiayinctl, wav)
    pins_leave_with_their_chooser(binary, jiayinctl)
    kiosk_wide_pin_lock(binary, jiayinctl)
    kiosk_lock_spans_its_tablets(binary, jiayinctl)
    pin_sets_bounded(binary, jiayinctl)
    lock_after_the_clock_set_back(binary, jiayinctl)
    failed_login_ends_the_session(binary, jiayinctl)
    child_at_one_tablet(binary, jiayinctl)
    logout_tapped_twice(binary, jiayinctl)
    lock_ends_as_shown(binary, jiayinctl)
    right_pin_meeting_503_counts_nothing(binary, jiayinctl)
    kiosk_codes_bounded(binary, jiayinctl)
    codes_after_the_clock_set_back(binary, jiayinctl)
    codes_go_with_their_tablet(binary, jiayinctl)
    eio = os.path.abspath(sys.argv[3]) if len(sys.argv) > 3 else None
    link_whole_or_nothing(binary, jiayinctl, eio)
    login_whole_or_nothing(binary, jiayinctl, eio)
    pin_whole_or_nothing(binary, jiayinctl, eio)
    session_through_a_full_disk(binary, jiayinctl, eio)
    attempt_whole_or_nothing(binary, jiayinctl, eio)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
