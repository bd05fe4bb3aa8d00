#!/usr/bin/env python3
"""test_api.py — the v1 API's identity endpoints end to end (TAP).

usage: test_api.py JIAYIN_BINARY [EIO_PRELOAD [HOLD_PRELOAD]]

Starts the real jiayin on a free loopback port and checks what docs/api.md promises for
sign-up (POST /v1/families), pairing (POST /v1/pair, whole or not at all when the disk fails
a read: EIO_PRELOAD is tests/tools/eio_preload.c built; such a read is storage_io_error;
HOLD_PRELOAD, tests/tools/hold_preload.c, orders an upload and its retry),
GET /v1/me,
GET /v1/families/{id}/members and DELETE /v1/devices/{id}: shapes, tokens (shown once, stored
only as a hash, revoked at once), bad bodies with their codes and nothing stored, someone else's
family answered 404, and the sign-up rate limit per client address; a sign-up sent again with
its Idempotency-Key (its answer lost) makes no second family (signup_retried).
"""
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # apiclient's helper is imported: no __pycache__ in the tree
from apiclient import read_head  # noqa: E402
from serverlib import (Reader, Server, damm, each_read_failing, each_read_verdict,  # noqa: E402
                       logged_id, pairing_code, request, scratch_dir, until)
from tap import finish, ok, skip  # noqa: E402



def post_json(srv, path, obj=None, raw=None, headers=()):
    body = raw if raw is not None else json.dumps(obj).encode()
    hdrs = [("Content-Type", "application/json")] + list(headers)
    return request(srv, "POST", path, body, headers=hdrs)


def at_once(calls):
    """Each call on a thread of its own, all started before any is waited for: their answers."""
    answers = [None] * len(calls)

    def run(i):
        answers[i] = calls[i]()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return answers


def bearer(token):
    return [("Authorization", f"Bearer {token}")]


def families_on_disk(srv):
    d = os.path.join(srv.data, "families")
    return len([f for f in os.listdir(d) if f.endswith(".db")]) if os.path.isdir(d) else 0


def signup(srv, family, member):
    r = post_json(srv, "/v1/families", {"family_name": family, "member_name": member})
    assert r.status == 201, r.body
    return r.json()


def invite_and_pair(srv, parent, role, name):
    """A pairing code from `parent` (a sign-up's answer) redeemed by a new phone: the new
    phone's answer (member, device, token)."""
    fam = parent["family"]["id"]
    code = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                     {"role": role, "member_name": name},
                     headers=bearer(parent["token"])).json()["code"]
    return post_json(srv, "/v1/pair", {"code": code}).json()


def signup_retried(binary):
    """A sign-up sent again with its Idempotency-Key (its answer lost on a flaky network): the
    same family, member and device, 200 with a new token for that device (the first stops
    working), counted once against signups-per-hour and answered even with the hour spent;
    once the device was used, 409 already_signed_up and no token; other names with the key:
    422; sent four times at once: one family; keys under 16 characters or not printable ASCII:
    400 and nothing made; a family erased since takes its key with it."""
    srv = Server(binary, "--signups-per-hour", "6")
    try:
        def send(key, body=None):
            body = body or {"family_name": "王家", "member_name": "妈妈",
                            "device_name": "红米 Note"}
            return post_json(srv, "/v1/families", body, headers=[("Idempotency-Key", key)])

        k1 = "3f6c2a8e-5d1b-4e7a-9c0f-8b2d6e4a1c75"
        first, again = send(k1), send(k1)
        a = first.json() if first.status == 201 else {}
        b = again.json() if again.status == 200 else {}
        same = bool(a and b) and all(a[x]["id"] == b[x]["id"]
                                     for x in ("family", "member", "device"))
        ok(first.status == 201 and again.status == 200 and same and
           b["device"]["last_seen_at"] is None and b["member"]["role"] == "parent" and
           b["family"]["name"] == "王家" and again.header("Cache-Control") == "no-store",
           "a sign-up sent again with its key: 201 then 200, the same family, member and device",
           f"{first.status} {again.status} {first.body[:200]!r} {again.body[:200]!r}")
        ok(families_on_disk(srv) == 1, "one family on disk", str(families_on_disk(srv)))
        old = request(srv, "GET", "/v1/me", headers=bearer(a.get("token", "x")))
        new = request(srv, "GET", "/v1/me", headers=bearer(b.get("token", "x")))
        ok(b and b["token"] != a["token"] and old.status == 401 and new.status == 200 and
           new.json()["device"]["id"] == a["device"]["id"],
           "the retry's token is a new one for that device; the first one's stops working",
           f"{old.status} {new.status}")
        fam = a.get("family", {}).get("id", "x")
        g = request(srv, "GET", f"/v1/families/{fam}/members", headers=bearer(b.get("token")))
        ok(g.status == 200 and [(m["name"], m["role"]) for m in g.json()["members"]] ==
           [("妈妈", "parent")], "its members: one parent", f"{g.status} {g.body[:300]!r}")
        late = send(k1)
        ok(late.status == 409 and late.json()["error"]["code"] == "already_signed_up" and
           "token" not in late.json() and families_on_disk(srv) == 1,
           "sent again once its device was used: 409 already_signed_up, no token, no family",
           f"{late.status} {late.body[:200]!r}")
        n = families_on_disk(srv)
        for bad, what in (("0123456789abcde", "15 characters"), ("", "empty"),
                          ("k" * 129, "129 characters"), ("3f6c2a8e-5d1b\t4e7a-9c0f", "a tab"),
                          ("3f6c2a8e-5d1b-4e7a-9c0f-\u00e9", "not ASCII")):
            r = request(srv, "POST", "/v1/families", json.dumps(
                {"family_name": "坏", "member_name": "坏"}).encode(),
                headers=[("Content-Type", "application/json"),
                         ("Idempotency-Key", bad)])
            ok(r.status == 400 and r.json()["error"]["code"] == "invalid_idempotency_key",
               f"a sign-up's key {what}: 400 invalid_idempotency_key",
               f"{r.status} {r.body[:200]!r}")
        ok(families_on_disk(srv) == n, "no family made by the bad keys")

        # four at once with one key: one family; whichever answer came last has the token (the
        # four count against the hour while in flight, as any sign-up: 1 + 4 of 6)
        k2 = "9b1e7c3a-0f4d-4a2b-8e6c-5d7f1a3b9c20"
        runs = at_once([lambda: send(k2, {"family_name": "李家", "member_name": "爸爸"})
                        for _ in range(4)])
        st = sorted(r.status for r in runs)
        ids = {r.json()["device"]["id"] for r in runs if r.status in (200, 201)}
        ok(st == [200, 200, 200, 201] and len(ids) == 1 and families_on_disk(srv) == n + 1,
           "four sent at once with one key: one 201, three 200, one family and device",
           f"{st} {len(ids)} {families_on_disk(srv) - n}")
        other = send(k2, {"family_name": "张家", "member_name": "爸爸"})
        ok(other.status == 422 and other.json()["error"]["code"] == "idempotency_key_reused" and
           "token" not in other.json() and families_on_disk(srv) == n + 1,
           "the key with other names: 422 idempotency_key_reused, no token, no family",
           f"{other.status} {other.body[:200]!r}")
        works = [request(srv, "GET", "/v1/me", headers=bearer(r.json()["token"])).status
                 for r in runs if r.status in (200, 201)]
        ok(sorted(works) == [200, 401, 401, 401], "one of their four tokens works",
           str(works))

        # the hour: 6 families; k1 and k2 made 2 (their retries counted nothing)
        k3 = "c4d2e0f8-6a1b-4c3d-9e5f-7a8b0c1d2e3f"
        made = [post_json(srv, "/v1/families", {"family_name": f"赵{i}", "member_name": "奶奶"})
                .status for i in range(3)]
        made.append(send(k3, {"family_name": "钱家", "member_name": "爷爷"}).status)
        spent = post_json(srv, "/v1/families", {"family_name": "孙家", "member_name": "妈妈"})
        retry = send(k3, {"family_name": "钱家", "member_name": "爷爷"})
        fresh = send("e5f6a7b8-c9d0-4e1f-a2b3-c4d5e6f7a8b9",
                     {"family_name": "周家", "member_name": "妈妈"})
        ok(made == [201] * 4 and spent.status == 429 and retry.status == 200 and
           fresh.status == 429 and fresh.json()["error"]["code"] == "rate_limited" and
           fresh.header("Retry-After") and families_on_disk(srv) == n + 5,
           "retries are not counted by signups-per-hour (6: four more made after k1's and k2's "
           "seven answers); with the hour spent a retry is still answered 200, a new key 429",
           f"{made} {spent.status} {retry.status} {fresh.status} {families_on_disk(srv) - n}")

        # a family erased takes its key with it: the key makes a new family (a new hour)
        srv.stop()
        srv = Server(binary, data=srv.data)
        e = request(srv, "DELETE", f"/v1/families/{fam}", headers=bearer(b.get("token")))
        anew = send(k1)
        ok(e.status == 204 and anew.status == 201 and anew.json()["family"]["id"] != fam,
           "the key of a family erased since: a new family, 201",
           f"{e.status} {anew.status} {anew.body[:200]!r}")
    finally:
        srv.stop()


def pairing(binary):
    import time
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        t0 = time.time()
        r = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                      {"role": "caregiver", "member_name": "奶奶"}, headers=bearer(mom["token"]))
        c = r.json() if r.status == 201 else {}
        ok(r.status == 201 and re.fullmatch(r"[0-9]{16}", c.get("code", "")) and
           abs(c["expires_at"] - (t0 + 600)) < 5 and c["role"] == "caregiver" and
           c["member_name"] == "奶奶", "a parent makes a 16-digit code that lives 10 minutes",
           f"{r.status} {r.body[:200]!r}")
        p = post_json(srv, "/v1/pair", {"code": c["code"], "device_name": "老人机"})
        g = p.json() if p.status == 201 else {}
        ok(p.status == 201 and g["family"]["id"] == fam and g["member"]["name"] == "奶奶" and
           g["member"]["role"] == "caregiver" and g["device"]["name"] == "老人机" and
           re.fullmatch(r"[A-Za-z0-9_-]{43}", g["token"]),
           "pairing with the code: the member, its family and a new device token")
        me = request(srv, "GET", "/v1/me", headers=bearer(g["token"])).json()
        ok(me["member"]["id"] == g["member"]["id"], "the paired device's token works")
        again = post_json(srv, "/v1/pair", {"code": c["code"], "device_name": "x"})
        ok(again.status == 400 and again.json()["error"]["code"] == "invalid_pairing_code",
           "a code is single-use")
        members = request(srv, "GET", f"/v1/families/{fam}/members",
                          headers=bearer(mom["token"])).json()["members"]
        ok([m["name"] for m in members] == ["妈妈", "奶奶"], "the family now has two members")
        # a child: may not invite or revoke others; a caregiver may revoke the child's device
        cc = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                       {"role": "child", "member_name": "小明"},
                       headers=bearer(g["token"])).json()
        kid = post_json(srv, "/v1/pair", {"code": cc["code"]}).json()
        ok(kid["member"]["role"] == "child", "a caregiver invites a child")
        r = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                      {"role": "parent", "member_name": "x"}, headers=bearer(kid["token"]))
        ok(r.status == 403 and r.json()["error"]["code"] == "forbidden", "a child cannot invite")
        r = request(srv, "DELETE", f"/v1/devices/{g['device']['id']}",
                    headers=bearer(kid["token"]))
        ok(r.status == 403, "a child cannot revoke grandma's phone")
        r = request(srv, "DELETE", f"/v1/devices/{kid['device']['id']}",
                    headers=bearer(g["token"]))
        ok(r.status == 204 and request(srv, "GET", "/v1/me", headers=bearer(kid["token"]))
           .status == 401, "a caregiver revokes the child's lost phone; its token stops at once")
        other = signup(srv, "李家", "爸爸")
        r = post_json(srv, f"/v1/families/{other['family']['id']}/pairing-codes",
                      {"role": "parent", "member_name": "x"}, headers=bearer(mom["token"]))
        ok(r.status == 404, "no codes for another family")
        r = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                      {"role": "admin", "member_name": "x"}, headers=bearer(mom["token"]))
        ok(r.status == 400 and r.json()["error"]["code"] == "invalid_role", "an unknown role")
        r = post_json(srv, "/v1/pair", {"code": "1234"})
        ok(r.status == 400 and r.json()["error"]["code"] == "invalid_pairing_code",
           "a code that is not 16 digits")
        r = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                      {"role": "parent", "member_name": "x"})
        ok(r.status == 401, "making a code needs a token")
    finally:
        srv.stop()


def pairing_whole_or_nothing(binary, eio_preload):
    """A pairing either tells the phone all it needs or leaves nothing behind: the directory's
    page of families failing to read, at each of its reads in turn, a new member's code and a
    member's new phone's are answered 201 with a token that works, or 503 with the code
    unused, nobody new in the family and no phone revoked. The family the answer names was read
    after the pairing was stored: a read that failed answered 503 and left a device whose token
    nobody was told, the code spent and a member with no phone (the old phone revoked too, with
    a code for a member's new phone)."""
    if not eio_preload:
        skip("a pairing whose read fails leaves nothing behind", "no eio_preload library given")
        return
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        dad = invite_and_pair(srv, mom, "parent", "爸爸")
        codes = f"/v1/families/{fam}/pairing-codes"
        invite = post_json(srv, codes, {"role": "caregiver", "member_name": "奶奶"},
                           headers=bearer(mom["token"])).json()["code"]
        new_phone = post_json(srv, codes, {"member_id": dad["member"]["id"]},
                              headers=bearer(mom["token"])).json()["code"]
    finally:
        srv.stop()

    def pair(code):
        return lambda s: post_json(s, "/v1/pair", {"code": code, "device_name": "新手机"})

    def family(s):
        members = request(s, "GET", f"/v1/families/{fam}/members",
                          headers=bearer(mom["token"])).json()["members"]
        devices = request(s, "GET", f"/v1/families/{fam}/devices",
                          headers=bearer(mom["token"])).json()["devices"]
        return sorted(m["name"] for m in members), sorted(d["name"] for d in devices)

    def me(s, token):
        return request(s, "GET", "/v1/me", headers=bearer(token))

    def joined(s, p, code, member, old=None):
        """What the phone was told works and nothing else changed; or, after an error, nothing
        changed and the code pairs now."""
        names, phones = family(s)
        if p.status == 201:
            got = p.json()
            mine = me(s, got["token"])
            return (mine.status == 200 and mine.json()["member"]["name"] == member and
                    got["family"] == {"id": fam, "name": "王家"} and
                    phones.count("新手机") == 1 and
                    (old is None or me(s, old).status == 401)), f"201 {names} {phones}"
        unchanged = (names == ["妈妈", "爸爸"] and "新手机" not in phones and
                     (old is None or me(s, old).status == 200))
        again = post_json(s, "/v1/pair", {"code": code, "device_name": "新手机"})
        return (p.status == 503 and unchanged and again.status == 201,
                f"{p.status} {p.body[:120]!r}: {names} {phones}, the code again: {again.status}")

    for code, member, old, what in (
            (invite, "奶奶", None, "a new member's code"),
            (new_phone, "爸爸", dad["token"], "a code for a member's new phone")):
        runs = each_read_failing(binary, srv.data, eio_preload, "families", pair(code),
                                 lambda s, p: joined(s, p, code, member, old))
        verdict, seen = each_read_verdict(runs, 201)
        ok(verdict,
           f"{what}, the family's row failing to read at each read in turn: 201 and a token "
           "that works, or 503 and nothing changed (the code pairs once the disk is well)", seen)


def failed_read_is_io_error(binary, eio_preload):
    """A directory page the disk fails to read (EIO) is answered 503 storage_io_error, as
    docs/storage.md says of a failed read, with Retry-After: SQLite's unix VFS reports such a
    read as damage (SQLITE_IOERR_CORRUPTFS, a statement's SQLITE_CORRUPT), and the answer said
    storage_corrupt, "a database file is damaged", of a directory that is whole: the operator
    told to restore a backup, where the disk is what to look at, and nothing is lost."""
    if not eio_preload:
        skip("a failed read is storage_io_error", "no eio_preload library given")
        return
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
    finally:
        srv.stop()
    fam = mom["family"]["id"]
    for table in ("families", "members", "devices"):
        runs = each_read_failing(
            binary, srv.data, eio_preload, table,
            lambda s: request(s, "GET", f"/v1/families/{fam}", headers=bearer(mom["token"])),
            lambda s, a: (a.status == 200 or (
                a.status == 503 and a.json()["error"]["code"] == "storage_io_error" and
                a.header("Retry-After") is not None), f"{a.status} {a.body[:100]!r}"))
        verdict, seen = each_read_verdict(runs, 200)
        ok(verdict,
           f"the directory's {table} page failing to read: 503 storage_io_error with "
           "Retry-After, not storage_corrupt; 200 once it reads", seen)


def locks(binary):
    srv = Server(binary, "--pair-failures", "3")
    try:
        mom = signup(srv, "王家", "妈妈")
        code = post_json(srv, f"/v1/families/{mom['family']['id']}/pairing-codes",
                         {"role": "parent", "member_name": "爸爸"},
                         headers=bearer(mom["token"])).json()["code"]
        wrong = pairing_code((int(code[:15]) + 1) % 10**15)
        codes = [post_json(srv, "/v1/pair", {"code": wrong}).status]
        time.sleep(3)  # the 15 minutes started with the first
        codes += [post_json(srv, "/v1/pair", {"code": wrong}).status for _ in range(2)]
        r = post_json(srv, "/v1/pair", {"code": code})
        wait = r.header("Retry-After") or ""
        ok(codes == [400] * 3 and r.status == 429 and
           r.json()["error"]["code"] == "pairing_locked" and wait.isdigit() and
           850 < int(wait) <= 897,
           "three wrong codes lock the address out, even for the right code, with Retry-After "
           f"when the 15 minutes that counted them are over ({codes}, Retry-After {wait})")
        # Counted under their own codes: an operator's alert on 429s sees them, where they
        # were lumped into "4xx" with every other refusal.
        m = request(srv, "GET", "/metrics").body.decode()
        ok('jiayin_http_requests_total{route="pair",status="429"} 1' in m and
           'jiayin_http_requests_total{route="pair",status="400"} 3' in m,
           "/metrics counts the 429 and the 400s of pairing by their codes",
           "\n".join(ln for ln in m.splitlines() if 'route="pair"' in ln))
    finally:
        srv.stop()
    srv = Server(binary, "--pair-failures", "100", "--pair-failures-all", "4",
                 "--trust-proxy", "127.0.0.1")
    try:
        codes = [post_json(srv, "/v1/pair", {"code": pairing_code(0)},
                           headers=[("X-Forwarded-For", f"198.51.100.{i}")]).status
                 for i in range(4)]
        r = post_json(srv, "/v1/pair", {"code": pairing_code(1)},
                      headers=[("X-Forwarded-For", "198.51.100.99")])
        ok(codes == [400] * 4 and r.status == 429,
           f"wrong codes from many addresses lock pairing for everyone ({codes}, {r.status})")
    finally:
        srv.stop()


def expired_codes(binary):
    """A code lives 10 minutes: its row goes once it is dead, used or not (review finding: the
    directory kept every code ever made, nothing deleted them)."""
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]

        def ask(name):
            return post_json(srv, f"/v1/families/{fam}/pairing-codes",
                             {"role": "child", "member_name": name},
                             headers=bearer(mom["token"])).json()["code"]
        used = ask("小明")
        ok(post_json(srv, "/v1/pair", {"code": used}).status == 201, "a code pairs a phone")
        ask("小红")  # asked for and never used
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10)
        with db:  # both as they are 10 minutes on: dead
            db.execute("UPDATE pairing_codes SET created_ms = created_ms - 600000, "
                       "expires_ms = expires_ms - 600000")
        fresh = ask("小刚")
        rows = db.execute("SELECT count(*) FROM pairing_codes").fetchone()[0]
        db.close()
        p = post_json(srv, "/v1/pair", {"code": fresh})
        ok(rows == 1 and p.status == 201,
           "the next code asked for deletes the dead ones, the used one and the unused one; "
           "it pairs", f"{rows} rows, {p.status} {p.body[:200]!r}")
    finally:
        srv.stop()


def bounded_codes(binary):
    """A family has at most 10 live codes (unused, unexpired): a token asking in a loop (an app
    retrying, a stolen phone) is refused 429 too_many_pairing_codes past them, with nothing
    stored nor audited, where it made 1,500 a second, each a write to the directory and a code
    more to guess. A parent asking again for a mistyped code, or one used, is not."""
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        codes = f"/v1/families/{fam}/pairing-codes"

        def ask(who=mom, body=None):
            return post_json(srv, codes, body or {"role": "caregiver", "member_name": "奶奶"},
                             headers=bearer(who["token"]))
        first = [ask() for _ in range(3)]
        ok([r.status for r in first] == [201] * 3 and
           len({r.json()["code"] for r in first}) == 3,
           "asking again for grandmother's code (she mistyped it) twice: three codes",
           [r.status for r in first])
        answers = at_once([ask] * 20)
        made = [r for r in answers if r.status == 201]
        refused = [r for r in answers if r.status != 201]
        waits = [int(r.header("Retry-After") or 0) for r in refused]
        ok(len(made) == 7 and all(r.status == 429 and
                                  r.json()["error"]["code"] == "too_many_pairing_codes"
                                  for r in refused) and all(590 <= w <= 600 for w in waits),
           "20 asked for at once: 7 more made (10 live), the others 429 too_many_pairing_codes "
           "with Retry-After when the first of them expires",
           f"{len(made)} made, {sorted({(r.status, r.body[:90]) for r in refused})} {waits}")
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10)
        rows = db.execute("SELECT count(*) FROM pairing_codes WHERE family_id = ?",
                          (fam,)).fetchone()[0]
        audited = db.execute("SELECT count(*) FROM audit_log WHERE action = 'pairing.invite'"
                             " AND family_id = ?", (fam,)).fetchone()[0]
        ok(rows == 10 and audited == 10,
           "the directory holds 10 codes and the audit log 10 invitations: the refused wrote "
           "nothing", f"{rows} rows, {audited} audited")
        p = post_json(srv, "/v1/pair", {"code": first[0].json()["code"]})
        nai = p.json() if p.status == 201 else {}
        again = ask(body={"role": "child", "member_name": "小明"})
        ok(p.status == 201 and again.status == 201 and ask().status == 429,
           "a code used is no longer counted: the next one is made, and the one after refused",
           f"{p.status} {again.status}")
        r = ask(body={"member_id": nai.get("member", {}).get("id")})
        ok(r.status == 429 and r.json()["error"]["code"] == "too_many_pairing_codes",
           "a code for a member's new phone counts too", f"{r.status} {r.body[:200]!r}")
        other = signup(srv, "李家", "爸爸")
        r = post_json(srv, f"/v1/families/{other['family']['id']}/pairing-codes",
                      {"role": "child", "member_name": "x"}, headers=bearer(other["token"]))
        ok(r.status == 201, "another family's codes are its own to count", r.status)
        with db:  # the first of them as it is 10 minutes on: expired
            db.execute("UPDATE pairing_codes SET expires_ms = created_ms WHERE code_hash = "
                       "(SELECT code_hash FROM pairing_codes WHERE family_id = ? AND used_ms "
                       "IS NULL ORDER BY expires_ms LIMIT 1)", (fam,))
        db.close()
        r = ask()
        ok(r.status == 201, "once the first expires, a code is made again",
           f"{r.status} {r.body[:200]!r}")
        # A stolen phone asking in a loop: its family's parent revokes it, and asks at once.
        lee = signup(srv, "李家", "妈妈")
        thief = invite_and_pair(srv, lee, "caregiver", "姑姑")
        lcodes = f"/v1/families/{lee['family']['id']}/pairing-codes"
        loop = [post_json(srv, lcodes, {"role": "child", "member_name": "x"},
                          headers=bearer(thief["token"])).status for _ in range(12)]
        mine = post_json(srv, lcodes, {"role": "child", "member_name": "小明"},
                         headers=bearer(lee["token"])).status
        gone = request(srv, "DELETE", f"/v1/devices/{thief['device']['id']}",
                       headers=bearer(lee["token"])).status
        after = post_json(srv, lcodes, {"role": "child", "member_name": "小明"},
                          headers=bearer(lee["token"])).status
        ok(loop == [201] * 10 + [429] * 2 and mine == 429 and gone == 204 and after == 201,
           "a caregiver's phone asking in a loop fills the family's 10; the parent revokes it "
           "and its codes go with it: the parent's next code is made",
           f"{loop} {mine} {gone} {after}")
    finally:
        srv.stop()


def pairings_bounded(binary):
    """A family pairs at most pairings-per-hour phones (20) in an hour, new members' and
    members' new ones: a token asking for a member's new phone and pairing it over and over
    (a stolen phone, an app in a loop) is refused 429 rate_limited with Retry-After when the
    hour is over, at the pair and at the ask, nothing stored, where it paired about 200 a
    second, each a device row, an audit record and a phone revoked, without end."""
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        codes = f"/v1/families/{fam}/pairing-codes"
        ask = (lambda body, who=mom: post_json(srv, codes, body, headers=bearer(who["token"])))
        kid = invite_and_pair(srv, mom, "child", "小明")  # a family's evening: 1
        family = [kid] + [invite_and_pair(srv, mom, role, name) for role, name in
                          (("parent", "爸爸"), ("caregiver", "奶奶"), ("caregiver", "爷爷"))]
        ok(all("token" in m for m in family), "a family pairs its four phones")
        db = sqlite3.connect(os.path.join(srv.data, "directory.db"), timeout=10)

        def stored():
            return (db.execute("SELECT count(*) FROM devices").fetchone()[0],
                    db.execute("SELECT count(*) FROM audit_log").fetchone()[0])
        kid_id = kid["member"]["id"]
        statuses = []
        for _ in range(14):  # the loop: the child's "new phone", paired, again and again
            r = ask({"member_id": kid_id})
            statuses.append(r.status)
            if r.status != 201:
                break
            statuses.append(post_json(srv, "/v1/pair", {"code": r.json()["code"]}).status)
        # 18 paired; four more invited, their codes read out, and all four used at once
        held = [ask({"role": "child", "member_name": f"表弟{i}"}) for i in range(4)]
        before = stored()
        answers = at_once([lambda h=h: post_json(srv, "/v1/pair", {"code": h.json()["code"]})
                           for h in held])
        made = [r for r in answers if r.status == 201]
        refused = [r for r in answers if r.status != 201]
        waits = [int(r.header("Retry-After") or 0) for r in refused]
        ok(statuses == [201] * 28 and all(r.status == 201 for r in held) and
           len(made) == 2 and all(r.status == 429 and
                                  r.json()["error"]["code"] == "rate_limited"
                                  for r in refused) and all(3500 < w <= 3600 for w in waits),
           "18 phones paired, 4 codes paired at once: 2 more paired (20 in the hour), the "
           "other 2 are 429 rate_limited with Retry-After when the hour is over",
           f"{statuses} {[r.status for r in held]} {len(made)} made, "
           f"{sorted({(r.status, r.body[:90]) for r in refused})} {waits}")
        unused = db.execute("SELECT count(*) FROM pairing_codes WHERE family_id = ? AND "
                            "used_ms IS NULL", (fam,)).fetchone()[0]
        ok(stored() == (before[0] + 2, before[1] + 2) and unused == 2,
           "the refused stored nothing: 2 device rows more (not 4), 2 audit records (the two "
           "pairings'), their codes unused", f"{before} -> {stored()}, {unused} unused")
        before = stored()
        r = ask({"member_id": kid_id})
        inv = ask({"role": "child", "member_name": "小红"})
        spare = held[answers.index(refused[0])].json()["code"] if refused else "0"
        p = post_json(srv, "/v1/pair", {"code": spare})
        w = [int(x.header("Retry-After") or 0) for x in (r, inv)]
        ok(r.status == 429 and r.json()["error"]["code"] == "rate_limited" and
           inv.status == 429 and inv.json()["error"]["code"] == "rate_limited" and
           all(3500 < x <= 3600 for x in w) and p.status == 429 and stored() == before,
           "the hour spent, a code is refused at the ask too (a new phone's, a new member's): "
           "429 rate_limited with Retry-After, nothing stored",
           f"{r.status} {r.body[:120]!r} {inv.status} {w} {p.status} {before} {stored()}")
        other = signup(srv, "李家", "爸爸")
        lee = invite_and_pair(srv, other, "child", "小李")
        ok("token" in lee, "another family pairs its phones", lee)
        with db:  # the family's phones as they are an hour on
            db.execute("UPDATE devices SET created_ms = created_ms - 3600000 WHERE member_id "
                       "IN (SELECT id FROM members WHERE family_id = ?)", (fam,))
        p = post_json(srv, "/v1/pair", {"code": spare})
        ok(p.status == 201, "once the hour is over, the code refused pairs",
           f"{p.status} {p.body[:200]!r}")
        db.close()
    finally:
        srv.stop()
    srv = Server(binary, "--pairings-per-hour", "3")
    try:
        mom = signup(srv, "王家", "妈妈")
        got = [invite_and_pair(srv, mom, "child", f"孩子{i}") for i in range(3)]
        fam = mom["family"]["id"]
        code = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                         {"member_id": got[0]["member"]["id"]}, headers=bearer(mom["token"]))
        ok(all("token" in g for g in got) and code.status == 429 and
           code.json()["error"]["code"] == "rate_limited",
           "--pairings-per-hour 3: three phones paired, the fourth code refused",
           f"{[('token' in g) for g in got]} {code.status} {code.body[:200]!r}")
    finally:
        srv.stop()


def code_form(binary):
    """Codes are 16 digits, the last one Damm's check digit: 10^15 to guess among, not 10^8
    (an audit: 96,000 guesses a day under the global lock found one of 100 live 8-digit codes
    every 10 days). Typed with spaces or hyphens ("1234 5678 9012 3456") they pair; a typo (a
    wrong digit, two neighbours swapped) is 400 mistyped_pairing_code, before any lookup and
    counted towards no lock; an 8-digit code made before the upgrade still pairs until it
    expires."""
    srv = Server(binary, "--pair-failures", "1")
    data = srv.data
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]

        dad = signup(srv, "李家", "爸爸")  # 10 codes a family live at once (bounded_codes)

        def new_code(name, who=mom):
            return post_json(srv, f"/v1/families/{who['family']['id']}/pairing-codes",
                             {"role": "caregiver", "member_name": name},
                             headers=bearer(who["token"])).json()["code"]
        codes = [new_code(f"奶奶{i}", mom if i < 10 else dad) for i in range(20)]
        ok(all(re.fullmatch(r"[0-9]{16}", c) and damm(c) == 0 for c in codes) and
           len(set(codes)) == 20 and
           all(len({c[i] for c in codes}) > 1 for i in range(15)),
           "codes are 16 digits: 15 drawn at random, the last checks them", codes[:3])
        c = codes[0]
        typos = [c[:3] + str((int(c[3]) + 1) % 10) + c[4:]]
        i = next((i for i in range(15) if c[i] != c[i + 1]), None)
        if i is not None:
            typos.append(c[:i] + c[i + 1] + c[i] + c[i + 2:])
        answers = [post_json(srv, "/v1/pair", {"code": t}) for t in typos * 3]
        ok(all(a.status == 400 and a.json()["error"]["code"] == "mistyped_pairing_code"
               for a in answers),
           "a wrong digit or two neighbours swapped: 400 mistyped_pairing_code",
           [(a.status, a.body[:100]) for a in answers])
        for form, what in ((f"{c[:4]} {c[4:8]} {c[8:12]} {c[12:]}", "spaces"),
                           (f"{codes[1][:4]}-{codes[1][4:8]}-{codes[1][8:12]}-{codes[1][12:]}",
                            "hyphens")):
            p = post_json(srv, "/v1/pair", {"code": form, "device_name": "老人机"})
            ok(p.status == 201 and p.json()["member"]["role"] == "caregiver",
               f"a code typed in groups with {what} pairs, after typos that did not count "
               "towards the lock (pair-failures 1)", f"{p.status} {p.body[:200]!r}")
        # Full-width, as a Chinese keyboard in that mode types: digits, U+3000, U+FF0D.
        wide = "".join(chr(0xFF10 + int(d)) for d in codes[3])
        wide = f"{wide[:4]}\u3000{wide[4:8]}\uff0d{wide[8:12]} {wide[12:]}"
        p = post_json(srv, "/v1/pair", {"code": wide, "device_name": "老人机"})
        ok(p.status == 201, "a code typed with full-width digits, space and hyphen pairs",
           f"{p.status} {p.body[:200]!r}")
        for bad in (c[:15], c + "0", c[:15] + "x", "\u0661" * 16, "12345678901234567890", "",
                    "\uff11" * 15 + "\uff1a"):
            p = post_json(srv, "/v1/pair", {"code": bad})
            ok(p.status == 400 and p.json()["error"]["code"] == "invalid_pairing_code",
               f"no code: {bad!r} is 400 invalid_pairing_code")
        old = codes[2]
    finally:
        srv.stop()
    # A code made as 8 digits before the upgrade: its row, keyed as the old server keyed it.
    with open(os.path.join(data, "secret"), "rb") as f:
        key = f.read()

    def keyed(code):
        return hmac.new(key, b"pairing-code\n" + code.encode(), hashlib.sha256).digest()
    db = sqlite3.connect(os.path.join(data, "directory.db"))
    with db:
        n = db.execute("UPDATE pairing_codes SET code_hash = ? WHERE code_hash = ?",
                       (keyed("48150162"), keyed(old))).rowcount
    db.close()
    srv = Server(binary, data=data)
    try:
        p = post_json(srv, "/v1/pair", {"code": "4815 0162"})
        ok(n == 1 and p.status == 201 and p.json()["family"]["id"] == fam,
           "an 8-digit code made before the upgrade still pairs while it lives",
           f"{n} {p.status} {p.body[:200]!r}")
    finally:
        srv.stop()


SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample.wav")


def upload(srv, token, fam, data, key=None, to=None):
    hdrs = bearer(token) + ([("Idempotency-Key", key)] if key else [])
    return request(srv, "POST", f"/v1/families/{fam}/messages" + (f"?to={to}" if to else ""),
                   data, headers=hdrs, timeout=60)


def retry_before_body(srv, token, fam, to, key, length):
    """A recording sent again with Expect: 100-continue: the first answer, before any body."""
    s = srv.connect()
    s.sendall((f"POST /v1/families/{fam}/messages?to={to} HTTP/1.1\r\n"
               f"Host: t\r\nAuthorization: Bearer {token}\r\n"
               + (f"Idempotency-Key: {key}\r\n" if key is not None else "") +
               f"Content-Length: {length}\r\n"
               "Expect: 100-continue\r\n\r\n").encode())
    early = Reader(s).response()
    s.close()
    return early


def messages(binary):
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        kid = invite_and_pair(srv, mom, "child", "小明")
        r = upload(srv, mom["token"], fam, wav, key="story-1", to=kid["member"]["id"])
        m = r.json()["message"] if r.status == 201 else {}
        ok(r.status == 201 and m["sender"] == mom["member"]["id"] and
           m["to"] == kid["member"]["id"] and m["state"] == "visible" and
           len(m["waveform"]) == 100 and m["duration_ms"] > 1000 and m["bytes"] > 1000 and
           m["listened_by"] == [] and m["seq"] == 1,
           "a parent's WAV story arrives transcoded for the child: 201 with the message",
           f"{r.status} {r.body[:300]!r}")
        again = upload(srv, mom["token"], fam, wav, key="story-1", to=kid["member"]["id"])
        mt = request(srv, "GET", "/metrics").body.decode()
        tc = re.search(r"jiayin_transcodes_total (\d+)", mt)
        ok(again.status == 200 and again.json()["message"]["id"] == m["id"] and tc and
           tc.group(1) == "1",
           "a retry with the same Idempotency-Key: 200 and the same message, not a second, "
           "and not transcoded again")
        # Its answer lost, a phone sends the recording again: with Expect: 100-continue it is
        # answered before its body (the audit: 100 Continue, then the whole WAV for a 200).
        early = retry_before_body(srv, mom["token"], fam, kid["member"]["id"], "story-1",
                                  len(wav))
        ok(early is not None and early.status == 200 and
           early.json()["message"]["id"] == m["id"],
           "a retry that waits for 100 Continue: 200 with the message before its body, which "
           "is never sent", f"{early and (early.status, early.body[:100])}")
        lst = request(srv, "GET", f"/v1/families/{fam}/messages?since=0",
                      headers=bearer(kid["token"])).json()
        ok([x["id"] for x in lst["messages"]] == [m["id"]] and lst["seq"] == 1,
           "the child's device lists it, with the sequence to pass next time")
        a = request(srv, "GET", f"/v1/families/{fam}/messages/{m['id']}/audio",
                    headers=bearer(kid["token"]))
        ok(a.status == 200 and a.header("Content-Type") == "audio/ogg" and
           a.body[:4] == b"OggS" and len(a.body) == m["bytes"] and a.header("ETag"),
           "the child fetches the Ogg Opus audio")
        rg = request(srv, "GET", f"/v1/families/{fam}/messages/{m['id']}/audio",
                     headers=bearer(kid["token"]) + [("Range", "bytes=0-99")])
        ok(rg.status == 206 and rg.body == a.body[:100], "audio ranges work through the API")
        h = request(srv, "POST", f"/v1/families/{fam}/messages/{m['id']}/listened", b"",
                    headers=bearer(kid["token"]))
        lst2 = request(srv, "GET", f"/v1/families/{fam}/messages?since=1",
                       headers=bearer(mom["token"])).json()
        ok(h.status == 200 and h.json()["seq"] == 2 and
           lst2["messages"][0]["listened_by"] == [kid["member"]["id"]] and lst2["seq"] == 2,
           "the child's listened receipt: the parent sees it as a change since 1")
        # One rule for idempotency keys, the plain upload's header as a resumable upload's
        # metadata (test_tus.py): 1-128 printable ASCII characters.
        for key, what in (("", "empty"), ("k" * 129, "129 characters"),
                          ("故事-1", "not ASCII"), ("a\tb", "a tab")):
            r = request(srv, "POST", f"/v1/families/{fam}/messages", wav,
                        headers=bearer(mom["token"]) + [("Idempotency-Key", key)], timeout=60)
            ok(r.status == 400 and r.json()["error"]["code"] == "invalid_idempotency_key",
               f"an Idempotency-Key {what}: 400 invalid_idempotency_key", f"{r.status}")
        bad = upload(srv, mom["token"], fam, b"RIFF....WAVEjunk" * 10)
        ok(bad.status == 422 and bad.json()["error"]["code"].startswith("audio_"),
           f"bad audio: 422 with the codec's code ({bad.json()['error']['code']})")
        short = upload(srv, mom["token"], fam, wav[:200])
        ok(short.status == 422, "a truncated WAV: 422")
        lst3 = request(srv, "GET", f"/v1/families/{fam}/messages?since=2",
                       headers=bearer(mom["token"])).json()
        ok(lst3["messages"] == [] and lst3["seq"] == 2, "refused uploads stored nothing")
        other = signup(srv, "李家", "爸爸")
        ok(upload(srv, other["token"], fam, wav).status == 404,
           "another family cannot post into this mailbox")
        ok(request(srv, "GET", f"/v1/families/{fam}/messages/{m['id']}/audio",
                   headers=bearer(other["token"])).status == 404,
           "another family cannot hear its audio")
        ok(upload(srv, mom["token"], fam, wav, to=other["member"]["id"]).status == 400,
           "a recipient from another family: 400")
        f = post_json(srv, f"/v1/families/{fam}/messages/{m['id']}/flag", {"reason": "吓人"},
                      headers=bearer(kid["token"]))
        ok(f.status == 201 and f.json()["flag"]["state"] == "open", "the child flags it")
        again = [post_json(srv, f"/v1/families/{fam}/messages/{m['id']}/flag",
                           {"reason": f"还是吓人 {i}"}, headers=bearer(kid["token"]))
                 for i in range(3)]
        mom_flag = post_json(srv, f"/v1/families/{fam}/messages/{m['id']}/flag",
                             {"reason": "孩子害怕"}, headers=bearer(mom["token"]))
        ok([a.status for a in again] == [200] * 3 and
           all(a.json()["flag"] == f.json()["flag"] for a in again) and
           mom_flag.status == 201 and mom_flag.json()["flag"]["id"] != f.json()["flag"]["id"],
           "flagging again while the flag waits: 200 with the same flag, nothing more queued "
           "(another member's flag is its own)")
        d = request(srv, "DELETE", f"/v1/families/{fam}/messages/{m['id']}",
                    headers=bearer(kid["token"]))
        ok(d.status == 403, "the child cannot delete its mother's message")
        d = request(srv, "DELETE", f"/v1/families/{fam}/messages/{m['id']}",
                    headers=bearer(mom["token"]))
        lst4 = request(srv, "GET", f"/v1/families/{fam}/messages?since=2",
                       headers=bearer(kid["token"])).json()
        ok(d.status == 204 and lst4["messages"] == [{"id": m["id"], "seq": 3,
                                                     "state": "deleted"}],
           "the sender deletes it: it appears once as deleted")
        ok(request(srv, "GET", f"/v1/families/{fam}/messages/{m['id']}/audio",
                   headers=bearer(kid["token"])).status == 404, "its audio is gone")
        # Again (a retry whose answer was lost on the way): 204, nothing more listed; to a
        # member who could not delete it, as if it never was.
        again = [request(srv, "DELETE", f"/v1/families/{fam}/messages/{m['id']}",
                         headers=bearer(t)).status for t in (mom["token"], kid["token"])]
        lst5 = request(srv, "GET", f"/v1/families/{fam}/messages?since=3",
                       headers=bearer(kid["token"])).json()
        ok(again == [204, 404] and lst5["messages"] == [] and lst5["seq"] == 3,
           "deleting it again: 204 to its sender, nothing changed; 404 to the child",
           f"{again} {lst5}")
        # A flag sent again, its answer lost, after its message was deleted: the flag still
        # waits for a volunteer, and the retry is answered with it as the first was. Nothing is
        # queued for the deleted message (the grandmother had flagged nothing: 404).
        gran = invite_and_pair(srv, mom, "caregiver", "奶奶")
        late = [post_json(srv, f"/v1/families/{fam}/messages/{m['id']}/flag",
                          {"reason": "再发一次"}, headers=bearer(t))
                for t in (kid["token"], mom["token"], gran["token"])]
        with sqlite3.connect(os.path.join(srv.data, "directory.db")) as db:
            queued = db.execute("SELECT count(*) FROM moderation_queue WHERE message_id = ?",
                                (m["id"],)).fetchone()[0]
        ok([r.status for r in late] == [200, 200, 404] and
           late[0].json()["flag"] == f.json()["flag"] and
           late[1].json()["flag"] == mom_flag.json()["flag"] and
           late[2].json()["error"]["code"] == "not_found" and queued == 2,
           "a flag sent again after its message was deleted: 200 with the flag still queued "
           "(the child's, the mother's); one who flagged nothing: 404, nothing queued",
           f"{[(r.status, r.body[:80]) for r in late]}, {queued} queued")
        # A sequence is a signed 64-bit number: 2^63 and up are a bad query, not a bad argument
        for q in ("since=x", "wait=61", "since=1&foo=2", "since=", "since=9223372036854775808",
                  "since=18446744073709551615", "since=99999999999999999999",
                  "wait=60&wait=1", "since=0&wait=5&since=0"):
            g = request(srv, "GET", f"/v1/families/{fam}/messages?{q}",
                        headers=bearer(kid["token"]))
            ok(g.status == 400 and g.json()["error"]["code"] == "invalid_query",
               f"?{q}: 400 invalid_query", f"{g.status} {g.body[:200]!r}")
        g = request(srv, "GET", f"/v1/families/{fam}/messages?since=9223372036854775807",
                    headers=bearer(kid["token"]))
        whole = request(srv, "GET", f"/v1/families/{fam}/messages",
                        headers=bearer(kid["token"])).json()
        ok(g.status == 200 and g.json().get("reset") is True and
           g.json()["messages"] == whole["messages"] and g.json()["seq"] == whole["seq"],
           "?since=9223372036854775807 (2^63-1), past the newest change: 200 with everything "
           "and \"reset\": true", f"{g.status} {g.body[:200]!r}")
        m2 = request(srv, "GET", "/metrics").body.decode()
        n = re.search(r"jiayin_transcodes_total (\d+)", m2)
        ok(n and int(n.group(1)) >= 1, "transcodes are counted in /metrics")
        key = "story 2 " + "k" * 120  # 128 printable characters, spaces among them
        r = upload(srv, mom["token"], fam, wav, key=key)
        again = upload(srv, mom["token"], fam, wav, key=key)
        ok(r.status == 201 and again.status == 200 and
           again.json()["message"]["id"] == r.json()["message"]["id"],
           "an Idempotency-Key of 128 printable characters, spaces among them, is taken",
           f"{r.status} {again.status}")
        # `?to=` with nothing after it is the whole family, as a resumable upload's empty `to`
        # is: an app that builds its query from a recipient it may not have sends it.
        whole = request(srv, "POST", f"/v1/families/{fam}/messages?to=", wav,
                        headers=bearer(mom["token"]), timeout=60)
        ok(whole.status == 201 and whole.json()["message"]["to"] is None,
           "?to= empty: 201, the story is for the whole family (to null)",
           f"{whole.status} {whole.body[:200]!r}")
        # A bare `?` (a client that appends one before params it then has none of) is no
        # query, as the list takes it.
        bare = request(srv, "POST", f"/v1/families/{fam}/messages?", wav,
                       headers=bearer(mom["token"]), timeout=60)
        ok(bare.status == 201 and bare.json()["message"]["to"] is None,
           "a bare ? after messages: 201, for the whole family", f"{bare.status} {bare.body[:200]!r}")
        # ?to= and another parameter: the query that is wrong is named, not the id (the
        # second parameter was read as the recipient's id: "to: not a member id")
        for q in ("to=&x=1", "to=ab&to=c"):
            extra = request(srv, "POST", f"/v1/families/{fam}/messages?{q}", wav,
                            headers=bearer(mom["token"]), timeout=60)
            e = extra.json()["error"] if extra.status == 400 else {}
            ok(e.get("code") == "invalid_recipient" and "?to=MEMBER_ID" in e.get("message", ""),
               f"?{q}: 400 invalid_recipient telling the query is ?to=MEMBER_ID",
               f"{extra.status} {extra.body[:200]!r}")
    finally:
        srv.stop()


def hidden_retry(binary):
    """A message a moderator hid reads as deleted everywhere the family sees it: a retried
    upload's answer (the same Idempotency-Key) too, not only the list."""
    import sqlite3
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        first = upload(srv, mom["token"], fam, wav, key="hide-me")
        m = first.json()["message"]
        db = sqlite3.connect(os.path.join(srv.data, "families", f"{fam}.db"), timeout=10)
        db.execute("UPDATE messages SET state = 2 WHERE id = ?", (m["id"],))  # hidden
        db.commit()
        db.close()
        lst = request(srv, "GET", f"/v1/families/{fam}/messages",
                      headers=bearer(mom["token"])).json()
        again = upload(srv, mom["token"], fam, wav, key="hide-me")
        shown = again.json().get("message") if again.status == 200 else None
        ok(first.status == 201 and lst["messages"] == [{"id": m["id"], "seq": m["seq"],
                                                         "state": "deleted"}] and
           shown == lst["messages"][0],
           "a hidden message retried with its Idempotency-Key: 200 with only its id, seq and "
           "state deleted, as the list shows it (no duration, waveform or bytes)",
           f"{again.status} {again.body[:300]!r}")
        # the resumable upload's finish, with the same key, names the message and nothing more
        import base64
        tus = [("Tus-Resumable", "1.0.0")] + bearer(mom["token"])
        meta = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                        for k, v in (("family_id", fam), ("idempotency_key", "hide-me")))
        c = request(srv, "POST", "/v1/uploads",
                    headers=tus + [("Upload-Length", str(len(wav))), ("Upload-Metadata", meta)])
        p = request(srv, "HEAD", c.header("Location") or "/v1/uploads/x", headers=tus)
        ok(c.status == 201 and c.header("Jiayin-Message-Id") == m["id"] and c.body == b"" and
           p.status == 200 and p.header("Jiayin-Message-Id") == m["id"] and
           p.header("Upload-Offset") == str(len(wav)),
           "the same key through tus: a whole upload naming that message (Jiayin-Message-Id), "
           "no metadata", f"{c.status} {p.status} {p.header('Jiayin-Message-Id')}")
        d = request(srv, "DELETE", f"/v1/families/{fam}/messages/{m['id']}",
                    headers=bearer(mom["token"]))
        gone = upload(srv, mom["token"], fam, wav, key="hide-me")
        ok(d.status == 204 and gone.status == 200 and
           gone.json()["message"] == {"id": m["id"], "seq": m["seq"] + 1, "state": "deleted"},
           "deleted by a parent since: the retry answers it as deleted too",
           f"{d.status} {gone.status} {gone.body[:200]!r}")
    finally:
        srv.stop()


def long_poll(binary):
    import time
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        path = f"/v1/families/{fam}/messages?since=0&wait=20"
        got = {}

        def waiter():
            got["r"] = request(srv, "GET", path, headers=bearer(mom["token"]), timeout=30)
            got["t"] = time.time()
        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.5)
        r = upload(srv, mom["token"], fam, wav)
        sent = time.time()
        th.join(30)
        lat = got.get("t", 99) - sent
        ok(r.status == 201 and got["r"].status == 200 and
           [m["id"] for m in got["r"].json()["messages"]] == [r.json()["message"]["id"]] and
           lat < 1.0, f"a waiting device gets the new message as soon as it is stored "
                      f"({lat * 1000:.0f} ms after the upload's answer)")
        t = time.time()
        g = request(srv, "GET", f"/v1/families/{fam}/messages?since=1&wait=1",
                    headers=bearer(mom["token"]), timeout=10)
        el = time.time() - t
        ok(g.status == 200 and g.json() == {"messages": [], "seq": 1} and 0.9 < el < 3,
           f"with nothing new the wait ends empty after its seconds ({el:.2f} s)")
        # Empty pairs anywhere are nothing, as a trailing `&` was (the review: `?&since=1`
        # was 400 invalid_query where `?since=1&` was taken).
        got = [request(srv, "GET", f"/v1/families/{fam}/messages?{q}",
                       headers=bearer(mom["token"]), timeout=10)
               for q in ("&since=1", "since=1&&wait=1", "since=1&")]
        ok([g.status for g in got] == [200] * 3 and
           all(g.json() == {"messages": [], "seq": 1} for g in got),
           "empty pairs in the query (?&since=1, &&, a trailing &) are nothing: 200",
           f"{[(g.status, g.body[:80]) for g in got]}")

        # Many waiters (memory, wake-up, families kept apart): test_api_load.py, with 10,000.
    finally:
        srv.stop()


def private_messages(binary):
    """A message sent to one child: that child, its sender and the grown-ups see it; a
    sibling does not, anywhere (list, long-poll, audio, listened, flag)."""
    import time
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]

        ming, hong, nai = (invite_and_pair(srv, mom, "child", "小明"),
                           invite_and_pair(srv, mom, "child", "小红"),
                           invite_and_pair(srv, mom, "caregiver", "奶奶"))
        got = {}

        def wait_hong():
            got["r"] = request(srv, "GET", f"/v1/families/{fam}/messages?since=0&wait=3",
                               headers=bearer(hong["token"]), timeout=10)
            got["t"] = time.time()
        t_wait = time.time()
        th = threading.Thread(target=wait_hong)
        th.start()
        time.sleep(0.3)
        r = upload(srv, mom["token"], fam, wav, to=ming["member"]["id"])
        mid = r.json()["message"]["id"] if r.status == 201 else ""
        t_up = time.time()
        th.join(10)
        # Its time out (3 s) from when it began, not from the upload's answer: a transcode
        # on a loaded machine takes more than a second (this flaked at 1.3 s after the 201).
        # seq 1 says the message was stored before it ended; 3 s, that it did not wake it.
        ok(r.status == 201 and got["r"].json()["messages"] == [] and
           got["t"] - t_wait > 2.8 and got["r"].json()["seq"] == 1,
           "a sibling's long-poll is not answered by a message for someone else: it waits "
           "its time out and ends empty, with the new sequence",
           f"{got.get('r') and got['r'].body[:200]!r} after {got.get('t', 0) - t_wait:.2f} s "
           f"(the upload's 201 after {t_up - t_wait:.2f} s)")

        def ids(who):
            return [m["id"] for m in request(srv, "GET", f"/v1/families/{fam}/messages",
                                             headers=bearer(who["token"])).json()["messages"]]
        ok(ids(ming) == [mid] and ids(mom) == [mid] and ids(nai) == [mid] and ids(hong) == [],
           "listed for the recipient, the sender and a caregiver; not for the other child")
        audio = f"/v1/families/{fam}/messages/{mid}/audio"
        ok(request(srv, "GET", audio, headers=bearer(hong["token"])).status == 404 and
           request(srv, "GET", audio, headers=bearer(ming["token"])).status == 200 and
           request(srv, "GET", audio, headers=bearer(nai["token"])).status == 200,
           "its audio: 404 to the other child, 200 to the recipient and the caregiver")
        base = f"/v1/families/{fam}/messages/{mid}"
        ok(request(srv, "POST", base + "/listened", b"", headers=bearer(hong["token"])).status
           == 404 and post_json(srv, base + "/flag", {"reason": "x"},
                                headers=bearer(hong["token"])).status == 404 and
           request(srv, "DELETE", base, headers=bearer(hong["token"])).status == 404,
           "the other child cannot mark it listened, flag or delete it: 404 as if absent")
        sent = upload(srv, hong["token"], fam, wav, to=mom["member"]["id"])
        hid = sent.json()["message"]["id"]
        ok(ids(hong) == [hid] and hid in ids(mom) and hid not in ids(ming),
           "a child's private message to a parent: the child (its sender) sees it, "
           "its sibling does not")
        d = request(srv, "DELETE", base, headers=bearer(mom["token"]))
        after = request(srv, "GET", f"/v1/families/{fam}/messages?since=2",
                        headers=bearer(hong["token"])).json()
        ok(d.status == 204 and after["messages"] == [] and after["seq"] == 3,
           "its deletion is not reported to the sibling either; the sequence moves on")

        # A full page (200) of changes the sibling may not see, then one it may: the long-poll
        # must not sleep on the page it could not show (review finding).
        import concurrent.futures
        import subprocess
        short = os.path.join(srv.tmp, "short.wav")
        subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", short, "synth", "0.6", "sine",
                        "300"], check=True)
        with open(short, "rb") as f:
            tiny = f.read()
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            codes = list(ex.map(lambda i: upload(srv, mom["token"], fam, tiny,
                                                 to=ming["member"]["id"]).status, range(200)))
        last = upload(srv, mom["token"], fam, tiny).json()["message"]["id"]
        t0 = time.time()
        g = request(srv, "GET", f"/v1/families/{fam}/messages?since=3&wait=20",
                    headers=bearer(hong["token"]), timeout=30)
        seen, seq, rounds = [], 3, 0
        while g.status == 200 and rounds < 5:
            seen += [m["id"] for m in g.json()["messages"]]
            if last in seen:
                break
            seq = g.json()["seq"]
            rounds += 1
            g = request(srv, "GET", f"/v1/families/{fam}/messages?since={seq}&wait=20",
                        headers=bearer(hong["token"]), timeout=30)
        el = time.time() - t0
        ok(codes == [201] * 200 and seen == [last] and el < 5,
           f"after 200 changes another child may not see, the one it may arrives at once "
           f"({el:.2f} s, {rounds + 1} polls)", f"{seen} {codes.count(201)}")

        # A phone revoked while its long-poll waits hears 401, not the family's news.
        got = {}
        latest = 0
        while True:  # pages of 200: the newest sequence is the last page's
            page = request(srv, "GET", f"/v1/families/{fam}/messages?since={latest}",
                           headers=bearer(mom["token"])).json()
            if not page["messages"]:
                break
            latest = page["seq"]

        def wait_for(who, key):
            got[key] = request(srv, "GET",
                               f"/v1/families/{fam}/messages?since={latest}&wait=20",
                               headers=bearer(who["token"]), timeout=30)
        ths = [threading.Thread(target=wait_for, args=(ming, "ming")),
               threading.Thread(target=wait_for, args=(mom, "mom"))]
        for th in ths:
            th.start()
        time.sleep(0.5)
        rv = request(srv, "DELETE", f"/v1/devices/{ming['device']['id']}",
                     headers=bearer(mom["token"]))
        new_id = upload(srv, mom["token"], fam, tiny).json()["message"]["id"]
        for th in ths:
            th.join(25)
        ok(rv.status == 204 and got["ming"].status == 401 and got["mom"].status == 200 and
           [m["id"] for m in got["mom"].json()["messages"]] == [new_id],
           "a phone revoked during its long-poll: the next change answers it 401, and the "
           "family's other waiting device, woken with it, gets the message",
           f"{got['ming'].status} {got['mom'].status} {got['mom'].body[:120]!r}")
        # Another member's Idempotency-Key is not theirs: a new message, not the parent's.
        same_key = upload(srv, mom["token"], fam, wav, key="msg-1", to=ming["member"]["id"])
        theirs = upload(srv, hong["token"], fam, wav, key="msg-1")
        ok(same_key.status == 201 and theirs.status == 201 and
           theirs.json()["message"]["sender"] == hong["member"]["id"] and
           theirs.json()["message"]["id"] != same_key.json()["message"]["id"],
           "a child using the parent's Idempotency-Key gets its own new message, never the "
           "parent's private one", theirs.body[:200])
        again = upload(srv, hong["token"], fam, wav, key="msg-1")
        ok(again.status == 200 and
           again.json()["message"]["id"] == theirs.json()["message"]["id"],
           "and its own retry with that key finds its own message")
    finally:
        srv.stop()


def audit_failures(binary):
    """A change whose audit record cannot be written still stands (it is done), and the
    missing record is said: an audit_failed event and a count. It was dropped silently."""
    import sqlite3
    srv = Server(binary)
    try:
        mom = signup(srv, "赵家", "妈妈")
        fam = mom["family"]["id"]
        srv.stop()
        con = sqlite3.connect(os.path.join(srv.data, "directory.db"))
        con.execute("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'the test refuses audit records'); END")
        con.commit()
        con.close()
        srv = Server(binary, data=srv.data)
        r = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                      {"role": "child", "member_name": "小兰"}, headers=bearer(mom["token"]))
        mr = request(srv, "GET", "/metrics")
        m = mr.body.decode()
        # The event is written as the change is answered: once the later /metrics's line is
        # in, every audit_failed of the change is too, and one more would be seen.
        events = [json.loads(line) for line in srv.wait_log(logged_id(mr)).splitlines()
                  if '"event":"audit_failed"' in line]
        ok(r.status == 201 and len(events) == 1 and
           "pairing.invite" in events[0]["detail"] and fam in events[0]["detail"] and
           "jiayin_audit_failures_total 1" in m,
           "an audit record that cannot be written: the change stands, an audit_failed event "
           "and jiayin_audit_failures_total say so", str(events)[:300])
        # A revocation's path names the device: the event names the family and the device
        # (the review: it named the device as the family).
        kid = invite_and_pair(srv, mom, "child", "小竹")
        dev = kid["device"]["id"]
        r = request(srv, "DELETE", f"/v1/devices/{dev}", headers=bearer(mom["token"]))
        after = request(srv, "GET", "/healthz")
        events = [json.loads(line)["detail"]
                  for line in srv.wait_log(logged_id(after)).splitlines()
                  if '"event":"audit_failed"' in line and "device.revoke" in line]
        ok(r.status == 204 and len(events) == 1 and f"in family {fam}, target {dev}" in
           events[0], "a revocation's missing record is named by its family and device",
           str(events)[:300])
    finally:
        srv.stop()


def upload_gate(binary):
    """A recording's body is taken only from a caller who may send it: the token and the
    family are checked while the body waits, before any 100 Continue and before a byte of it
    reaches data/tmp (review finding: anyone could make the server write 150 MiB there, and
    only then hear 401)."""
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        other = signup(srv, "李家", "爸爸")
        fam = mom["family"]["id"]
        tmp = os.path.realpath(os.path.join(srv.data, "tmp"))

        def open_bodies():
            out = 0
            for fd in os.listdir(f"/proc/{srv.proc.pid}/fd"):
                try:
                    out += os.readlink(f"/proc/{srv.proc.pid}/fd/{fd}").startswith(tmp)
                except OSError:
                    pass
            return out

        def head_only(token, length=150 << 20):
            """The head of an upload that waits for 100 Continue: the first answer."""
            s = srv.connect()
            s.settimeout(10)
            s.sendall((f"POST /v1/families/{fam}/messages HTTP/1.1\r\nHost: t\r\n"
                       f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n"
                       "Expect: 100-continue\r\n\r\n").encode())
            return s, read_head(s).split(b"\r\n", 1)[0].decode("latin-1")
        s1, wrong = head_only("not-a-token")
        s2, stranger = head_only(other["token"])
        none_open = open_bodies()
        s3, mine = head_only(mom["token"])
        until(lambda: open_bodies() == 1)  # its body's file opened
        one_open = open_bodies()
        for s in (s1, s2, s3):
            s.close()
        ok(wrong.startswith("HTTP/1.1 401") and stranger.startswith("HTTP/1.1 404") and
           none_open == 0 and mine == "HTTP/1.1 100 Continue" and one_open == 1,
           "an upload's body waits for its caller's check: a wrong token 401 and another "
           "family 404 before any 100 Continue, with no file for the body; the family's own "
           "phone gets 100 Continue and one", f"{wrong} / {stranger} / {none_open} / {mine} / "
           f"{one_open}")
        r = request(srv, "POST", f"/v1/families/{fam}/messages", b"", headers=bearer(mom["token"]))
        s4, big = head_only(mom["token"], 201 << 20)
        s4.close()
        ok(r.status == 422 and r.json()["error"]["code"] == "audio_truncated" and
           big.startswith("HTTP/1.1 413"),
           "no body: 422 audio_truncated; a declared 201 MiB: 413 before it is read",
           f"{r.status} {big}")
    finally:
        srv.stop()


def retry_after_recipient_left(binary):
    """A retry whose Idempotency-Key names a stored message answers that message, even when
    the member it is for has left since: the key names what was stored (docs/api.md: the same
    key answers 200 with the same message, never a second one). Before, the recipient was
    looked up first and the retry was 400 invalid_recipient, so a phone whose 201 was lost
    told its parent the story was refused, though it was stored (and, through tus, a finish
    done again after a crash removed the upload with that 400)."""
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        grandpa = post_json(srv, f"/v1/families/{fam}/members", {"member_name": "爷爷", "role": "caregiver"},
                            headers=bearer(mom["token"])).json()["member"]
        first = upload(srv, mom["token"], fam, wav, key="for-grandpa", to=grandpa["id"])
        m = first.json()["message"] if first.status == 201 else {}
        d = request(srv, "DELETE", f"/v1/families/{fam}/members/{grandpa['id']}",
                    headers=bearer(mom["token"]))
        again = upload(srv, mom["token"], fam, wav, key="for-grandpa", to=grandpa["id"])
        ok(first.status == 201 and d.status in (200, 204) and again.status == 200 and
           again.json()["message"]["id"] == m["id"],
           "a retry for a member who left since: 200 and the stored message, not 400",
           f"{first.status} {d.status} {again.status} {again.body[:200]!r}")
        early = retry_before_body(srv, mom["token"], fam, grandpa["id"], "for-grandpa",
                                  len(wav))
        ok(early is not None and early.status == 200 and
           early.json()["message"]["id"] == m["id"],
           "and with Expect: 100-continue, before its body",
           f"{early and (early.status, early.body[:200])}")
        fresh = upload(srv, mom["token"], fam, wav, key="new-one", to=grandpa["id"])
        ok(fresh.status == 400 and fresh.json()["error"]["code"] == "invalid_recipient",
           "a new recording for the member who left: 400 invalid_recipient as before")
        early = retry_before_body(srv, mom["token"], fam, grandpa["id"], None, len(wav))
        ok(early is not None and early.status == 400 and
           early.json()["error"]["code"] == "invalid_recipient",
           "and without an Idempotency-Key, with Expect: 100-continue: 400 invalid_recipient "
           "before its body, which is never sent", f"{early and (early.status, early.body[:200])}")
    finally:
        srv.stop()


def retry_while_transcoding(binary):
    """A phone that gave up waiting for its upload's answer (OkHttp's 10 s read timeout
    against a long clip's transcode: docs/api.md) sends the recording again at once, with its
    Idempotency-Key and Expect: 100-continue. Its first is still being transcoded then: the
    retry is answered 503 upload_in_progress with Retry-After before its body, and after
    Retry-After 200 with the message, before its body. Before, it was told 100 Continue while
    the key was not stored yet, and the phone sent the whole recording again (9.6 MB here), to
    be transcoded a second time for the same message."""
    from apiclient import metric, sine_wav
    wav = sine_wav(os.path.join(scratch_dir("jiayin-long-"), "long.wav"), 440, 300)
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam = mom["family"]["id"]
        first = {}
        sending = threading.Thread(target=lambda: first.update(
            r=upload(srv, mom["token"], fam, wav, key="bedtime-story")))
        sending.start()
        # its body is in and its transcode queued or running
        until(lambda: metric(srv, "jiayin_heavy_jobs_queued") == 1, timeout=60)

        def retry():
            s = srv.connect(timeout=30)
            s.sendall((f"POST /v1/families/{fam}/messages HTTP/1.1\r\nHost: t\r\n"
                       f"Authorization: Bearer {mom['token']}\r\n"
                       f"Idempotency-Key: bedtime-story\r\nContent-Length: {len(wav)}\r\n"
                       "Expect: 100-continue\r\n\r\n").encode())
            rd = Reader(s)
            head = read_head(s)
            pending = "r" not in first  # the first unanswered yet: the retry met it in flight
            rd.buf = head
            if head.startswith(b"HTTP/1.1 100 "):
                s.sendall(wav)  # what the phone did: the whole recording again
                rd.buf = head.split(b"\r\n\r\n", 1)[1]
            r = rd.response()
            s.close()
            return head.split(b"\r\n", 1)[0].decode(), r, pending
        line, during, still = retry()
        err = during.json().get("error", {}) if during and during.status == 503 else {}
        ok(still and line.startswith("HTTP/1.1 503 ") and
           err.get("code") == "upload_in_progress" and during.header("Retry-After") == "2",
           "a retry with Expect: 100-continue while the first is being transcoded: 503 "
           "upload_in_progress, Retry-After 2, before its body (no 100 Continue)",
           f"in flight: {still}; first line {line!r}; {during and during.body[:200]!r}")
        sending.join()
        line, after, _ = retry()
        m = first["r"].json()["message"] if first["r"].status == 201 else {}
        ok(first["r"].status == 201 and line.startswith("HTTP/1.1 200 ") and
           after.json()["message"]["id"] == m.get("id"),
           "sent again once the first is stored: 200 with its message, before its body",
           f"{first['r'].status} {line!r}")
        ok(metric(srv, "jiayin_transcodes_total") == 1, "the recording was transcoded once",
           str(metric(srv, "jiayin_transcodes_total")))
    finally:
        srv.stop()


def hold_arm(hold_dir, n, count=0):
    """hold_preload.c: the statement of text n started after `count` more is held."""
    tmp = os.path.join(hold_dir, f".arm{n}")
    with open(tmp, "w") as f:
        f.write(str(count))
    os.rename(tmp, os.path.join(hold_dir, f"arm{n}"))


def upload_head(fam, token, key, length):
    """A plain upload's head as OkHttp sends it: no Expect: 100-continue."""
    return (f"POST /v1/families/{fam}/messages HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


def retry_without_expect(binary, hold_preload, eio_preload):
    """A phone whose upload's answer did not come in time (OkHttp's 10 s read timeout against a
    long clip's transcode) sends the recording again with its Idempotency-Key and without
    Expect: 100-continue (OkHttp never sends it), so its body is read. Its first copy was still
    being transcoded: the retry, whole, was transcoded a second time (another of the family's
    transcode places, seconds of CPU on a 2-core server) for storage to find the key and answer
    200. Now it waits for the first and is answered 200 with its message, transcoded once; in
    the other order too (the retry's body whole before the first's); a retry whose client goes
    away while it waits is freed; and when the first fails, the retry, whole, is transcoded
    itself and stored. Ordered by hold_preload: the copy whose body was whole first is held in
    its transcode job, at its caller's check before the transcode (its phone's token looked up
    again), until the other waits; a retry's insert of its message is held until the disk,
    made full for the mailboxes by eio_preload's JIAYIN_FULL_WHILE, has room again."""
    if not hold_preload or not eio_preload:
        skip("a retry without Expect waits for its first", "no hold_preload/eio_preload given")
        return
    from apiclient import list_all, metric, sine_wav
    wav = sine_wav(os.path.join(scratch_dir("jiayin-long-"), "long.wav"), 440, 300)
    hold = scratch_dir("jiayin-hold-")
    tmp = scratch_dir("jiayin-full-")
    data, full = os.path.join(tmp, "data"), os.path.join(tmp, "full")
    env = {"LD_PRELOAD": f"{hold_preload} {eio_preload}", "JIAYIN_HOLD_DIR": hold,
           "JIAYIN_HOLD_SQL": "d.token_hash = ? AND d.revoked_ms|INSERT INTO messages (",
           "JIAYIN_FULL_WHILE": full,
           "JIAYIN_FULL_DIR": os.path.join(os.path.realpath(tmp), "data", "families") + "/",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    srv = Server(binary, data=data, env=env)
    answers = {}

    def send(name, head, parts, close_after=None):
        """head then each part of the body on a connection of its own; its answer."""
        s = srv.connect(timeout=120)
        s.sendall(head)
        for part in parts:
            s.sendall(part)
        answers[name + "_sock"] = s
        if close_after:
            return
        answers[name] = Reader(s).response()
        s.close()

    def thread(name, head, parts):
        t = threading.Thread(target=send, args=(name, head, parts))
        t.start()
        return t

    def waiting(n):
        return until(lambda: metric(srv, "jiayin_upload_retries_waiting") == n or
                     metric(srv, "jiayin_heavy_jobs_queued") == 2, timeout=60)

    def held(n):
        return until(lambda: os.path.exists(os.path.join(hold, f"held{n}")), timeout=60)

    def release(n):
        os.unlink(os.path.join(hold, f"arm{n}"))
        if os.path.exists(os.path.join(hold, f"held{n}")):
            os.unlink(os.path.join(hold, f"held{n}"))

    def message(r):
        return r.json().get("message", {}).get("id") if r and r.status in (200, 201) else None
    try:
        mom = signup(srv, "王家", "妈妈")
        fam, tok = mom["family"]["id"], mom["token"]
        list_all(srv, tok, fam)  # the mailbox open before its disk is full (operations.md)
        transcodes = 0

        # 1. the first in its transcode job (its token looked up at its gate, then held at
        # the check before its transcode), the retry sent whole
        hold_arm(hold, 0, 1)
        first = thread("first", upload_head(fam, tok, "story-1", len(wav)), [wav])
        in_insert = held(0)
        retry = thread("retry", upload_head(fam, tok, "story-1", len(wav)), [wav])
        parked = waiting(1)
        queued = metric(srv, "jiayin_heavy_jobs_queued")
        reserved = metric(srv, "jiayin_heavy_jobs_reserved")
        release(0)
        first.join()
        retry.join()
        a, b = answers.get("first"), answers.get("retry")
        transcodes += 1
        ok(in_insert and parked and a and a.status == 201 and b and b.status == 200 and
           message(a) and message(a) == message(b) and
           metric(srv, "jiayin_transcodes_total") == transcodes,
           "a retry without Expect whose body came while the first was being transcoded: the "
           "first 201, the retry 200 with the same message, one transcode (jiayin_transcodes_"
           "total 1)", f"held {in_insert}, waited {parked}; {a and a.status} {message(a)} "
           f"{b and b.status} {message(b)}; transcodes {metric(srv, 'jiayin_transcodes_total')}")
        ok(queued == 1 and reserved == 0,
           "while the retry waits its transcode place is given back (heavy jobs queued 1, "
           "reserved 0)", f"queued {queued}, reserved {reserved}")

        # 2. the other order: the first's body still arriving when the retry's is whole
        half = len(wav) // 2
        s = srv.connect(timeout=120)
        s.sendall(upload_head(fam, tok, "story-2", len(wav)) + wav[:half])
        until(lambda: metric(srv, "jiayin_heavy_jobs_reserved") == 1, timeout=30)
        hold_arm(hold, 0, 1)  # the retry's gate passes, its transcode job is held
        retry = thread("retry", upload_head(fam, tok, "story-2", len(wav)), [wav])
        in_insert = held(0)  # the retry, whole first, is the one transcoded
        s.sendall(wav[half:])
        parked = waiting(1)
        release(0)
        retry.join()
        a, b = Reader(s).response(), answers.get("retry")
        s.close()
        transcodes += 1
        ok(in_insert and parked and a and a.status == 200 and b and b.status == 201 and
           message(a) and message(a) == message(b) and
           metric(srv, "jiayin_transcodes_total") == transcodes,
           "the other order (the retry's body whole before the first's): the retry 201, the "
           "first 200 with the same message, one transcode",
           f"held {in_insert}, waited {parked}; {a and a.status} {message(a)} "
           f"{b and b.status} {message(b)}; transcodes {metric(srv, 'jiayin_transcodes_total')}")

        # 3. the retry's client goes away while it waits: freed at once
        hold_arm(hold, 0, 1)
        first = thread("first", upload_head(fam, tok, "story-3", len(wav)), [wav])
        in_insert = held(0)
        send("gone", upload_head(fam, tok, "story-3", len(wav)), [wav], close_after=True)
        parked = waiting(1)
        g = answers["gone_sock"]
        g.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        g.close()  # a reset
        freed = until(lambda: metric(srv, "jiayin_upload_retries_waiting") == 0, timeout=30)
        release(0)
        first.join()
        a = answers.get("first")
        transcodes += 1
        ok(in_insert and parked and freed and a and a.status == 201 and
           metric(srv, "jiayin_transcodes_total") == transcodes,
           "a waiting retry whose client resets is freed at once; the first is stored, 201, "
           "transcoded once", f"held {in_insert}, waited {parked}, freed {freed}; "
           f"{a and a.status}; transcodes {metric(srv, 'jiayin_transcodes_total')}")

        # 4. the first fails (the mailboxes' disk full at its commit): the retry, whole, is
        # transcoded itself and stored
        hold_arm(hold, 0, 1)
        first = thread("first", upload_head(fam, tok, "story-4", len(wav)), [wav])
        in_insert = held(0)
        retry = thread("retry", upload_head(fam, tok, "story-4", len(wav)), [wav])
        parked = waiting(1)
        hold_arm(hold, 1, 1)  # the first's insert passes it; the retry's is held
        open(full, "w").close()
        release(0)
        first.join()
        a = answers.get("first")
        os.unlink(full)
        in_insert2 = held(1)
        release(1)
        retry.join()
        b = answers.get("retry")
        transcodes += 2
        ok(in_insert and parked and a and a.status == 507 and in_insert2 and b and
           b.status == 201 and metric(srv, "jiayin_transcodes_total") == transcodes,
           "the first failing (the disk full at its commit: 507), the waiting retry is "
           "transcoded itself and stored: 201",
           f"held {in_insert} {in_insert2}, waited {parked}; {a and a.status} "
           f"{a and a.body[:120]!r} {b and b.status} {b and b.body[:120]!r}; transcodes "
           f"{metric(srv, 'jiayin_transcodes_total')}")
        msgs = list_all(srv, tok, fam)
        ok(len(msgs) == 4 and message(b) in msgs and
           metric(srv, "jiayin_upload_retries_waiting") == 0 and
           metric(srv, "jiayin_heavy_jobs_reserved") == 0,
           "four messages for the four recordings, one each; nothing left waiting or reserved",
           f"{len(msgs)} messages")

        # 5. SIGTERM while a retry waits: both are answered within the grace, then the exit
        hold_arm(hold, 0, 1)
        first = thread("first", upload_head(fam, tok, "story-5", len(wav)), [wav])
        in_insert = held(0)
        retry = thread("retry", upload_head(fam, tok, "story-5", len(wav)), [wav])
        parked = waiting(1)
        srv.signal(signal.SIGTERM)
        release(0)
        first.join()
        retry.join()
        a, b = answers.get("first"), answers.get("retry")
        try:
            rc = srv.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = None
        ok(in_insert and parked and a and a.status == 201 and b and b.status == 200 and
           message(a) == message(b) and rc == 0,
           "SIGTERM while a retry waits: the first 201, the retry 200 with its message, and the "
           "server exits 0 (nothing leaked)", f"held {in_insert}, waited {parked}; "
           f"{a and a.status} {b and b.status}; exit {rc}")
    finally:
        if os.path.exists(full):
            os.unlink(full)
        for n in (0, 1):
            if os.path.exists(os.path.join(hold, f"arm{n}")):
                os.unlink(os.path.join(hold, f"arm{n}"))
        srv.stop()


def main():
    binary = sys.argv[1]
    srv = Server(binary, "--signups-per-hour", "5")
    try:
        r = post_json(srv, "/v1/families", {"family_name": "王家", "member_name": "妈妈",
                                            "device_name": "红米 Note"})
        a = r.json() if r.status == 201 else {}
        ids = re.compile(r"^[0-9a-z]{26}$")
        ok(r.status == 201 and a["family"]["name"] == "王家" and ids.match(a["family"]["id"])
           and a["member"]["name"] == "妈妈" and a["member"]["role"] == "parent" and
           ids.match(a["member"]["id"]) and ids.match(a["device"]["id"]) and
           a["device"]["name"] == "红米 Note", "sign-up: 201 with the family, a parent, this device",
           f"{r.status} {r.body[:300]!r}")
        token = a.get("token", "")
        ok(re.fullmatch(r"[A-Za-z0-9_-]{43}", token) is not None,
           "sign-up: a 256-bit token in base64url")
        ok(r.header("Cache-Control") == "no-store", "sign-up: the answer is not cached")
        raw = b""
        for root, _, files in os.walk(srv.data):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    raw += fh.read()
        ok(token.encode() not in raw and families_on_disk(srv) == 1,
           "the token is stored nowhere in the data directory (only its hash)")

        me = request(srv, "GET", "/v1/me", headers=bearer(token))
        m = me.json() if me.status == 200 else {}
        ok(me.status == 200 and m["family"]["id"] == a["family"]["id"] and
           m["member"]["id"] == a["member"]["id"] and m["device"]["id"] == a["device"]["id"],
           "GET /v1/me: the token's family, member and device")
        h = request(srv, "HEAD", "/v1/me", headers=bearer(token))
        ok(h.status == 200 and h.body == b"", "HEAD /v1/me")
        for hdrs, what in (([], "no Authorization"), (bearer("x" * 43), "an unknown token"),
                           ([("Authorization", f"Basic {token}")], "another scheme"),
                           (bearer(token[:-1]), "a token one character short")):
            g = request(srv, "GET", "/v1/me", headers=hdrs)
            ok(g.status == 401 and g.json()["error"]["code"] == "unauthorized" and
               g.header("WWW-Authenticate") == "Bearer", f"401 for {what}")
        # RFC 6750 2.1: credentials = "Bearer" 1*SP b64token; the scheme in any case.
        for value, what in ((f"Bearer  {token}", "two spaces"),
                            (f"bearer   {token}", "a lower-case scheme and three spaces")):
            g = request(srv, "GET", "/v1/me", headers=[("Authorization", value)])
            ok(g.status == 200, f"Authorization with {what} after the scheme: the caller",
               f"{g.status} {g.body[:200]!r}")
        # Two Authorization lines have two readings (a proxy may take the last): refused,
        # whichever comes first, as two Host or two Content-Length lines are.
        for pair, what in (([token, "x" * 43], "the caller's first"),
                           (["x" * 43, token], "the caller's last"),
                           ([token, token], "the caller's twice")):
            g = request(srv, "GET", "/v1/me", headers=[("Authorization", f"Bearer {t}")
                                                       for t in pair])
            ok(g.status == 401 and g.json()["error"]["code"] == "unauthorized" and
               g.header("WWW-Authenticate") == "Bearer",
               f"two Authorization lines, {what}: 401", f"{g.status} {g.body[:200]!r}")

        fam = a["family"]["id"]
        g = request(srv, "GET", f"/v1/families/{fam}/members", headers=bearer(token))
        ok(g.status == 200 and [x["id"] for x in g.json()["members"]] == [a["member"]["id"]],
           "members of my family")
        b = post_json(srv, "/v1/families", {"family_name": "李家", "member_name": "爸爸"}).json()
        g = request(srv, "GET", f"/v1/families/{b['family']['id']}/members",
                    headers=bearer(token))
        ok(g.status == 404 and g.json()["error"]["code"] == "not_found",
           "another family's members: 404, as if it did not exist")
        g = request(srv, "GET", "/v1/families/..%2f/members", headers=bearer(token))
        ok(g.status == 404, "a malformed family id: 404")
        ok(b["device"]["name"] == "phone", "device_name is optional")

        n = families_on_disk(srv)
        bad = [
            (b"not json", "invalid_json", 400, None),
            (b"[1, 2]", "invalid_json", 400, None),
            (b'{"family_name": "a", "family_name": "b", "member_name": "c"}', "invalid_json",
             400, None),
            (json.dumps({"family_name": "王家"}).encode(), "invalid_name", 400, None),
            (json.dumps({"family_name": "", "member_name": "x"}).encode(), "invalid_name", 400,
             None),
            (json.dumps({"family_name": "a" * 65, "member_name": "x"}).encode(),
             "invalid_name", 400, None),
            (json.dumps({"family_name": "a\nb", "member_name": "x"}).encode(), "invalid_name",
             400, None),
            (json.dumps({"family_name": "王\u0085家", "member_name": "x"}).encode(),
             "invalid_name", 400, None),
            (json.dumps({"family_name": 5, "member_name": "x"}).encode(), "invalid_name", 400,
             None),
            # a name that shows nothing, or turns the text after it around
            (json.dumps({"family_name": "\u3000 \u200b", "member_name": "x"}).encode(),
             "invalid_name", 400, None),
            (json.dumps({"family_name": "王家", "member_name": "\u202e爸爸"}).encode(),
             "invalid_name", 400, None),
            (json.dumps({"family_name": "王家", "member_name": "x",
                         "device_name": "\u2067phone"}).encode(), "invalid_name", 400, None),
            (b'{"family_name": "a\\u0000b", "member_name": "x"}', "invalid_json", 400, None),
            (b"\xff\xfe{}", "invalid_json", 400, None),
            (json.dumps({"family_name": "a", "member_name": "x"}).encode(),
             "unsupported_media_type", 415, [("Content-Type", "text/plain")]),
        ]
        for body, code, status, hdrs in bad:
            if hdrs:
                g = request(srv, "POST", "/v1/families", body, headers=hdrs)
            else:
                g = post_json(srv, "/v1/families", raw=body)
            ok(g.status == status and g.json()["error"]["code"] == code,
               f"sign-up with {body[:40]!r}: {status} {code}", f"{g.status} {g.body[:200]!r}")
        g = post_json(srv, "/v1/families", raw=b"{" + b" " * 17000 + b"}")
        ok(g.status == 413, "a JSON body over 16 KiB: 413")
        ok(families_on_disk(srv) == n, "no refused sign-up stored anything")

        # revoking: another family's device is not found; my own stops working at once (while
        # another parent's phone stays: the family's last is kept, test_members.py)
        g = request(srv, "DELETE", f"/v1/devices/{b['device']['id']}", headers=bearer(token))
        ok(g.status == 404, "revoking another family's device: 404")
        invite_and_pair(srv, a, "parent", "爸爸")
        g = request(srv, "DELETE", f"/v1/devices/{a['device']['id']}", headers=bearer(token))
        ok(g.status == 204 and g.body == b"" and g.header("Content-Length") is None,
           "a device revokes itself: 204")
        g = request(srv, "GET", "/v1/me", headers=bearer(token))
        ok(g.status == 401, "its token stops working at once")
        g = request(srv, "GET", "/v1/me", headers=bearer(b["token"]))
        ok(g.status == 200, "the other family's token still works")

        # the sign-up limit: 5 per address and hour, two used above; the refused ones above
        # (bad bodies, 415, 413) made no family and count for nothing (docs/api.md)
        codes = [post_json(srv, "/v1/families", {"family_name": f"f{i}", "member_name": "m"})
                 .status for i in range(5)]
        last = post_json(srv, "/v1/families", {"family_name": "g", "member_name": "m"})
        wait = last.header("Retry-After") or ""
        ok(codes == [201] * 3 + [429] * 2 and last.status == 429 and wait.isdigit() and
           3000 < int(wait) <= 3600 and last.json()["error"]["code"] == "rate_limited",
           "sign-ups per address are limited to the families made: 3 more after the 2 (the "
           "refused sign-ups did not count), then 429 with Retry-After when the hour that "
           f"counted them is over ({codes}, Retry-After {wait})")
    finally:
        rc = srv.stop()
    ok(rc == 0, "clean exit")
    signup_retried(binary)
    pairing(binary)
    pairing_whole_or_nothing(binary, os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None)
    failed_read_is_io_error(binary, os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None)
    locks(binary)
    expired_codes(binary)
    bounded_codes(binary)
    pairings_bounded(binary)
    code_form(binary)
    messages(binary)
    hidden_retry(binary)
    retry_after_recipient_left(binary)
    retry_while_transcoding(binary)
    retry_without_expect(binary, os.path.abspath(sys.argv[3]) if len(sys.argv) > 3 else None,
                         os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None)
    long_poll(binary)
    private_messages(binary)
    audit_failures(binary)
    upload_gate(binary)
    return finish()


if __name__ == "__main__":
    sys.exit(main())
