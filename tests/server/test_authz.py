#!/usr/bin/env python3
"""test_authz.py — the authorization matrix of the v1 API (TAP).

usage: test_authz.py JIAYIN_BINARY

Every endpoint, called by every kind of caller, answers what docs/api.md promises:
a parent, a caregiver, the child a message is for, another child, a child at a school kiosk
(a session token), another family's parent, a revoked phone, the kiosk's own token, and no
token at all. Someone else's family reads as absent (404), a role that may not act gets 403,
no valid token 401. Malformed ids answer like unknown ones. One check per endpoint and caller.
Every message endpoint also for a message between two parents, one to a sibling, a deleted
and a hidden one, and under the wrong family's path (404 as an unknown id), what each list
shows, another family's since=, and a member who has left (its token, its audio URL, its
private message).
"""
import json
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serverlib import Server, add_kiosk, request  # noqa: E402
from tap import finish, ok  # noqa: E402

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "sample.wav")


def call(srv, method, path, token=None, obj=None, raw=None, timeout=60):
    hdrs = [("Authorization", f"Bearer {token}")] if token else []
    body = b""
    if obj is not None:
        body = json.dumps(obj).encode()
        hdrs.append(("Content-Type", "application/json"))
    elif raw is not None:
        body = raw
    return request(srv, method, path, body, headers=hdrs, timeout=timeout)


def main():
    binary = sys.argv[1]
    with open(SAMPLE, "rb") as f:
        wav = f.read()
    # Its matrix pairs a phone for each caller and case: more than a family pairs in an hour.
    srv = Server(binary, "--max-queued-jobs", "256", "--pairings-per-hour", "1000")
    try:
        def signup(family, member):
            return call(srv, "POST", "/v1/families",
                        obj={"family_name": family, "member_name": member}).json()
        mom = signup("王家", "妈妈")
        fam = mom["family"]["id"]

        def pair(role, name):
            code = call(srv, "POST", f"/v1/families/{fam}/pairing-codes", mom["token"],
                        {"role": role, "member_name": name}).json()["code"]
            return call(srv, "POST", "/v1/pair", obj={"code": code}).json()
        nai = pair("caregiver", "奶奶")
        ming = pair("child", "小明")
        hong = pair("child", "小红")
        lost = pair("child", "旧手机")
        dad = pair("parent", "爸爸")
        call(srv, "DELETE", f"/v1/devices/{lost['device']['id']}", mom["token"])
        other = signup("李家", "爸爸")
        ofam = other["family"]["id"]
        # a child of this family logged in at a school kiosk
        ktok = add_kiosk(srv.data)
        kcode = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
        gang = call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                    {"member_name": "小刚", "role": "child"}).json()["member"]
        link = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", mom["token"],
                    {"code": kcode, "member_id": gang["id"], "pin": [1, 2, 3, 4]}).json()["link"]
        kid_at_kiosk = call(srv, "POST", "/v1/kiosk/sessions", ktok,
                            {"child": link["id"], "pin": [1, 2, 3, 4]}).json()["token"]

        callers = {
            "parent": mom["token"], "caregiver": nai["token"], "child (recipient)": ming["token"],
            "other child": hong["token"], "child at a kiosk": kid_at_kiosk,
            "another family": other["token"], "revoked phone": lost["token"],
            "the kiosk's token": ktok, "no token": None,
        }

        def upload(token, to=None):
            r = call(srv, "POST", f"/v1/families/{fam}/messages" + (f"?to={to}" if to else ""),
                     token, raw=wav)
            assert r.status == 201, r.body
            return r.json()["message"]["id"]
        everyone = upload(mom["token"])          # to the whole family
        private = upload(nai["token"], ming["member"]["id"])  # grandmother to 小明 only
        between_parents = upload(mom["token"], dad["member"]["id"])  # no child's

        def expect(who, ok_status, *, forbid=(), private_to=None, anyone=False):
            """ok for members (except `forbid` roles: 403), 404 for strangers, 401 without;
            `anyone`: about the caller itself, so every valid token gets ok."""
            if who in ("revoked phone", "the kiosk's token", "no token"):
                return 401
            if who == "another family" and not anyone:
                return 404
            if private_to is not None and who in ("other child", "child at a kiosk"):
                return 404
            if who in forbid:
                return 403
            return ok_status

        def added_child():
            return call(srv, "POST", f"/v1/families/{fam}/members", mom["token"],
                        {"member_name": "来客", "role": "child"}).json()["member"]["id"]

        M = f"/v1/families/{fam}/messages"
        children = ("child (recipient)", "other child", "child at a kiosk")
        endpoints = [
            ("GET /v1/me", lambda t: call(srv, "GET", "/v1/me", t), 200, {"anyone": True}),
            ("GET family", lambda t: call(srv, "GET", f"/v1/families/{fam}", t), 200, {}),
            ("PATCH family", lambda t: call(srv, "PATCH", f"/v1/families/{fam}", t,
                                            {"retention_days": 30}), 200,
             {"forbid": ("caregiver",) + children}),
            ("GET members", lambda t: call(srv, "GET", f"/v1/families/{fam}/members", t), 200,
             {}),
            ("POST members", lambda t: call(srv, "POST", f"/v1/families/{fam}/members", t,
                                            {"member_name": "x", "role": "child"}), 201,
             {"forbid": children}),
            # only a parent makes a parent here too (review finding: a caregiver could)
            ("POST parent member", lambda t: call(srv, "POST", f"/v1/families/{fam}/members", t,
                                                  {"member_name": "爷爷", "role": "parent"}),
             201, {"forbid": ("caregiver",) + children}),
            # Names and avatars: a parent any member's, a caregiver any but a parent's, a
            # child only its own avatar (小红 is "other child": her own).
            ("PATCH a child's avatar",
             lambda t: call(srv, "PATCH", f"/v1/families/{fam}/members/{hong['member']['id']}",
                            t, {"avatar": "rabbit"}),
             200, {"forbid": ("child (recipient)", "child at a kiosk")}),
            ("PATCH a child's name",
             lambda t: call(srv, "PATCH", f"/v1/families/{fam}/members/{hong['member']['id']}",
                            t, {"member_name": "小红"}),
             200, {"forbid": children}),
            ("PATCH a parent's name",
             lambda t: call(srv, "PATCH", f"/v1/families/{fam}/members/{mom['member']['id']}",
                            t, {"member_name": "妈妈"}),
             200, {"forbid": ("caregiver",) + children}),
            ("GET devices", lambda t: call(srv, "GET", f"/v1/families/{fam}/devices", t), 200,
             {"forbid": children}),
            # Removing a member: a parent only (a caregiver may leave itself:
            # test_members.py). Each call removes a member added for it.
            ("DELETE a member",
             lambda t: call(srv, "DELETE", f"/v1/families/{fam}/members/{added_child()}", t),
             204, {"forbid": ("caregiver",) + children}),
            ("POST pairing-codes", lambda t: call(srv, "POST", f"/v1/families/{fam}/pairing-codes",
                                                  t, {"role": "child", "member_name": "y"}),
             201, {"forbid": children}),
            # only a parent makes a parent (a caregiver could otherwise take the family over)
            ("POST parent pairing-code",
             lambda t: call(srv, "POST", f"/v1/families/{fam}/pairing-codes", t,
                            {"role": "parent", "member_name": "爸爸"}),
             201, {"forbid": ("caregiver",) + children}),
            # a new phone for a member: for a parent's, a parent only
            ("POST pairing-code for a child's phone",
             lambda t: call(srv, "POST", f"/v1/families/{fam}/pairing-codes", t,
                            {"member_id": hong["member"]["id"]}),
             201, {"forbid": children}),
            ("POST pairing-code for a parent's phone",
             lambda t: call(srv, "POST", f"/v1/families/{fam}/pairing-codes", t,
                            {"member_id": mom["member"]["id"]}),
             201, {"forbid": ("caregiver",) + children}),
            ("GET messages", lambda t: call(srv, "GET", M, t), 200, {}),
            ("GET audio", lambda t: call(srv, "GET", f"{M}/{everyone}/audio", t), 200, {}),
            ("GET private audio", lambda t: call(srv, "GET", f"{M}/{private}/audio", t), 200,
             {"private_to": "child (recipient)"}),
            ("POST audio-url", lambda t: call(srv, "POST", f"{M}/{everyone}/audio-url", t), 200,
             {}),
            ("POST private audio-url", lambda t: call(srv, "POST", f"{M}/{private}/audio-url", t),
             200, {"private_to": "child (recipient)"}),
            ("POST listened", lambda t: call(srv, "POST", f"{M}/{everyone}/listened", t), 200,
             {}),
            ("POST private listened", lambda t: call(srv, "POST", f"{M}/{private}/listened", t),
             200, {"private_to": "child (recipient)"}),
            ("POST keep", lambda t: call(srv, "POST", f"{M}/{everyone}/keep", t), 200, {}),
            ("DELETE keep", lambda t: call(srv, "DELETE", f"{M}/{everyone}/keep", t), 200, {}),
            ("POST flag", lambda t: call(srv, "POST", f"{M}/{everyone}/flag", t,
                                         {"reason": "test"}), 201, {}),
            ("GET export", lambda t: call(srv, "GET", f"/v1/families/{fam}/export", t), 200,
             {"forbid": ("caregiver",) + children}),
            ("GET kiosk-links", lambda t: call(srv, "GET", f"/v1/families/{fam}/kiosk-links", t),
             200, {}),
        ]
        for name, fn, status, opts in endpoints:
            for who, token in callers.items():
                want = expect(who, status, **opts)
                r = fn(token)
                ok(r.status == want, f"{name} by {who}: {want}", f"got {r.status} {r.body[:150]!r}")

        # Every endpoint of a message, for each kind of message a caller must not reach: one
        # between two parents (no child's: only its parties and the grown-ups), one to a
        # sibling (小明's, for the other children), one deleted, one a moderator hid, and
        # another family's under this family's path (and this family's under theirs). Each
        # is 404 as an unknown id, and the list shows it as promised.
        gone = upload(mom["token"])
        call(srv, "DELETE", f"{M}/{gone}", mom["token"])
        hidden = upload(mom["token"])
        with sqlite3.connect(os.path.join(srv.data, "families", fam + ".db")) as db:
            db.execute("UPDATE messages SET state = 2 WHERE id = ?", (hidden,))  # a moderator's
        db.close()
        r = call(srv, "POST", f"/v1/families/{ofam}/messages", other["token"], raw=wav)
        theirs = r.json()["message"]["id"]
        grown_ups_only = ("child (recipient)", "other child", "child at a kiosk")
        per_message = [
            ("GET audio", lambda t, p, m: call(srv, "GET", f"{p}/{m}/audio", t), 200),
            ("HEAD audio", lambda t, p, m: call(srv, "HEAD", f"{p}/{m}/audio", t), 200),
            ("POST audio-url", lambda t, p, m: call(srv, "POST", f"{p}/{m}/audio-url", t), 200),
            ("POST listened", lambda t, p, m: call(srv, "POST", f"{p}/{m}/listened", t), 200),
            ("POST keep", lambda t, p, m: call(srv, "POST", f"{p}/{m}/keep", t), 200),
            ("DELETE keep", lambda t, p, m: call(srv, "DELETE", f"{p}/{m}/keep", t), 200),
            ("POST flag", lambda t, p, m: call(srv, "POST", f"{p}/{m}/flag", t,
                                                {"reason": "test"}), 201),
        ]
        OM = f"/v1/families/{ofam}/messages"
        for name, fn, status in per_message:
            for who, token in callers.items():
                want = expect(who, status)
                cases = [
                    ("a message between two parents", M, between_parents,
                     404 if who in grown_ups_only and want == status else want),
                    ("a message to 小明 only", M, private,
                     404 if who in ("other child", "child at a kiosk") and want == status
                     else want),
                    ("a deleted message", M, gone, 404 if want == status else want),
                    ("a hidden message", M, hidden, 404 if want == status else want),
                    ("another family's message under this family's path", M, theirs,
                     404 if want == status else want),
                    ("this family's message under another family's path", OM, everyone,
                     404 if want == status else want),
                ]
                got = [(what, fn(token, path, mid).status, w) for what, path, mid, w in cases]
                ok(all(g == w for _, g, w in got), f"{name} by {who}: as promised for "
                   "messages not theirs, deleted, hidden and under the wrong family",
                   "; ".join(f"{what}: {g} (want {w})" for what, g, w in got if g != w))
        # Deleting one of those: the message between the parents by a child is 404 (not
        # even 403: it does not exist for the child), by the caregiver 403, by a parent 204.
        parents_deleted = set()
        for who, token in callers.items():
            mid = upload(mom["token"], dad["member"]["id"])
            parents_deleted.add(mid)
            want = expect(who, 204, forbid=("caregiver",))
            want = 404 if who in grown_ups_only and want == 204 else want
            r = call(srv, "DELETE", f"{M}/{mid}", token)
            ok(r.status == want, f"DELETE a message between two parents by {who}: {want}",
               f"got {r.status}")
        for who, token in callers.items():
            want = expect(who, 204)
            want = 404 if want == 204 else want
            codes = {call(srv, "DELETE", f"{M}/{theirs}", token).status,
                     call(srv, "DELETE", f"{OM}/{everyone}", token).status}
            ok(codes == {want}, f"DELETE a message of the wrong family by {who}: {want}",
               str(codes))
            # A deleted one: deleting it again is 204 to whoever could (its sender, a parent:
            # a retry whose answer was lost), to anyone else as if it never was.
            again = 204 if who == "parent" else want
            r = call(srv, "DELETE", f"{M}/{gone}", token)
            ok(r.status == again, f"DELETE a deleted message by {who}: {again}",
               f"got {r.status}")
            # A hidden one reads as deleted: to whoever could not delete it, 404 as a deleted
            # one is, not 403, which told the grandmother and the children it was only hidden
            # by a moderator. (Its sender, the parent, deletes it below, after the lists.)
            if who != "parent":
                r = call(srv, "DELETE", f"{M}/{hidden}", token)
                ok(r.status == want, f"DELETE a hidden message by {who}: {want}, as deleted",
                   f"got {r.status} {r.body[:100]!r}")
        # The list: a child sees no message between others, not even as an id (nor its
        # deletion); a hidden or deleted message is an id, a seq and "deleted", nothing of
        # its voice or sender.
        sees = {"parent": {everyone, private, between_parents},
                "caregiver": {everyone, private, between_parents},
                "child (recipient)": {everyone, private},
                "other child": {everyone}, "child at a kiosk": {everyone}}
        for who, want in sees.items():
            got = call(srv, "GET", M, callers[who]).json()["messages"]
            ids = {m["id"] for m in got}
            tombs = [m for m in got if m["id"] in (gone, hidden)]
            ok(ids - {gone, hidden} >= want and
               not ids & ({private, between_parents} - want) and theirs not in ids and
               (between_parents in want or not ids & parents_deleted) and
               len(tombs) == 2 and all(set(m) == {"id", "seq", "state"} and
                                       m["state"] == "deleted" for m in tombs),
               f"the list of {who}: the messages it may see, and only those",
               f"{sorted(ids)} {tombs}")
        # Its sender deletes a hidden message, a child its own as a parent hers: 204, and
        # again 204 (a retry whose answer was lost).
        own = upload(ming["token"])
        with sqlite3.connect(os.path.join(srv.data, "families", fam + ".db")) as db:
            db.execute("UPDATE messages SET state = 2 WHERE id = ?", (own,))  # a moderator's
        db.close()
        got = [call(srv, "DELETE", f"{M}/{mid}", t).status
               for mid, t in ((hidden, mom["token"]), (hidden, mom["token"]),
                              (own, ming["token"]), (own, ming["token"]))]
        ok(got == [204] * 4, "a hidden message deleted by its sender (the parent; the child, "
           "its own): 204, and 204 again", str(got))
        # Another family's cursor: this family's changes (or everything, reset), never theirs.
        oseq = call(srv, "GET", OM, other["token"]).json()["seq"]
        for since in (oseq, 2 ** 40):
            got = call(srv, "GET", f"{M}?since={since}", callers["other child"]).json()
            ids = {m["id"] for m in got["messages"]}
            # a list, not an empty answer: past this family's numbers, everything, reset
            whole = since < 2 ** 40 or (got.get("reset") is True and everyone in ids)
            ok(whole and theirs not in ids and not ids & {private, between_parents},
               f"another family's since={since}: nothing of theirs, nothing not the child's",
               str(got)[:300])

        # Kiosk links are a grown-up's to make and end: a child, on its phone or at the
        # kiosk, 403; another family 404 (the grown-ups' own are test_kiosk.py's).
        kc = call(srv, "POST", "/v1/kiosk/pairing-codes", ktok).json()["code"]
        for who, token in callers.items():
            if who in ("parent", "caregiver"):
                continue
            want = expect(who, 201, forbid=children)
            r = call(srv, "POST", f"/v1/families/{fam}/kiosk-links", token,
                     {"code": kc, "member_id": gang["id"], "pin": [1, 2, 3, 4]})
            d = call(srv, "DELETE", f"/v1/families/{fam}/kiosk-links/{link['id']}", token)
            ok((r.status, d.status) == (want, want),
               f"POST and DELETE a kiosk link by {who}: {want}", f"got {r.status} {d.status}")

        # A JSON body is application/json, parameters allowed, nothing else and not nothing
        # (review finding: types that began with it were taken, and a missing one).
        def with_type(ctype):
            hdrs = [("Authorization", f"Bearer {mom['token']}")]
            if ctype is not None:
                hdrs.append(("Content-Type", ctype))
            body = json.dumps({"role": "child", "member_name": "z"}).encode()
            return request(srv, "POST", f"/v1/families/{fam}/pairing-codes", body, headers=hdrs)
        types = [("application/json", 201), ("Application/JSON", 201),
                 ("application/json; charset=utf-8", 201),
                 ("application/json ;charset=UTF-8", 201),
                 ("application/json-patch+json", 415), ("application/jsonx", 415),
                 ("application/json5", 415), ("application/json, text/plain", 415),
                 ("text/json", 415), ("text/plain", 415), ("", 415), (None, 415)]
        for ctype, want in types:
            r = with_type(ctype)
            got = r.status if r.status != 415 else (
                415 if r.json()["error"]["code"] == "unsupported_media_type" else -1)
            ok(got == want, f"a JSON body sent as {ctype!r}: {want}",
               f"got {r.status} {r.body[:150]!r}")

        # The codes made above, never used, count towards the family's 10 live ones
        # (test_api.py's bounded_codes): made dead, as they are 10 minutes on, they leave room
        # for the phones paired below.
        with sqlite3.connect(os.path.join(srv.data, "directory.db")) as db:
            db.execute("UPDATE pairing_codes SET expires_ms = created_ms WHERE used_ms IS NULL")
        db.close()

        # A new kiosk PIN: a parent or caregiver. It ends the child's open session there, so
        # the child at the kiosk logs in again for its own try, and after.
        def kiosk_login():
            return call(srv, "POST", "/v1/kiosk/sessions", ktok,
                        {"child": link["id"], "pin": [1, 2, 3, 4]}).json()["token"]
        for who, token in callers.items():
            if who == "child at a kiosk":
                token = kiosk_login()
            want = expect(who, 200, forbid=children)
            r = call(srv, "PUT", f"/v1/families/{fam}/kiosk-links/{link['id']}/pin", token,
                     {"pin": [1, 2, 3, 4]})
            ok(r.status == want, f"PUT kiosk PIN by {who}: {want}", f"got {r.status}")
        kid_at_kiosk = callers["child at a kiosk"] = kiosk_login()

        # Uploading: members 201, others as always.
        for who, token in callers.items():
            want = expect(who, 201)
            r = call(srv, "POST", M, token, raw=wav)
            ok(r.status == want, f"POST messages by {who}: {want}", f"got {r.status}")

        # Deleting a message: its sender or a parent; others 403; strangers 404.
        for who, token in callers.items():
            mid = upload(nai["token"])  # sent by the caregiver
            want = expect(who, 204, forbid=("child (recipient)", "other child",
                                            "child at a kiosk"))
            r = call(srv, "DELETE", f"{M}/{mid}", token)
            ok(r.status == want, f"DELETE a caregiver's message by {who}: {want}",
               f"got {r.status}")
        mine = upload(ming["token"])
        ok(call(srv, "DELETE", f"{M}/{mine}", ming["token"]).status == 204,
           "DELETE by its sender, a child: 204")

        # Revoking phones: a parent or caregiver, or the phone itself; never a kiosk child.
        for who, token in callers.items():
            victim = pair("child", "新手机")
            want = expect(who, 204, forbid=("child (recipient)", "other child",
                                            "child at a kiosk"))
            r = call(srv, "DELETE", f"/v1/devices/{victim['device']['id']}", token)
            ok(r.status == want, f"DELETE another member's phone by {who}: {want}",
               f"got {r.status}")
        # A parent's phone: a parent only (or the phone itself), so no caregiver locks the
        # parents out.
        revoked = []
        for who, token in callers.items():
            victim = pair("parent", "爸爸")
            want = expect(who, 204, forbid=("caregiver",) + children)
            r = call(srv, "DELETE", f"/v1/devices/{victim['device']['id']}", token)
            ok(r.status == want, f"DELETE a parent's phone by {who}: {want}",
               f"got {r.status}")
            if r.status == 204:
                revoked.append(victim["device"]["id"])
        with sqlite3.connect(os.path.join(srv.data, "directory.db")) as db:
            rows = db.execute("SELECT action, actor, family_id, target FROM audit_log "
                              "WHERE action IN ('device.revoke', 'pairing.invite')").fetchall()
        invites = [r for r in rows if r[0] == "pairing.invite"]
        revokes = {(f, t) for a, _, f, t in rows if a == "device.revoke"}
        ok(revoked and all((fam, d) in revokes for d in revoked) and
           {r[3] for r in invites} == {"parent", "caregiver", "child"} and
           all(r[2] == fam and r[1] in (mom["member"]["id"], nai["member"]["id"])
               for r in invites),
           "revocations and invitations are in the audit log: who, which family, which "
           "device or role (never the code)", f"{len(rows)} rows, e.g. {rows[:3]}")
        me_dev = call(srv, "GET", "/v1/me", kid_at_kiosk).json()["device"]["id"]
        ok(call(srv, "DELETE", f"/v1/devices/{me_dev}", kid_at_kiosk).status == 403 and
           call(srv, "GET", "/v1/kiosk/children", ktok).status == 200,
           "a child at a kiosk cannot revoke the kiosk's own token")

        # Kiosk endpoints: the kiosk's own token only.
        for who, token in callers.items():
            want = 200 if who == "the kiosk's token" else 401 if who in (
                "revoked phone", "no token") else 403
            r = call(srv, "GET", "/v1/kiosk/children", token)
            ok(r.status == want, f"GET /v1/kiosk/children by {who}: {want}", f"got {r.status}")

        # Malformed and unknown ids: 404 like another family's, for every id in a path.
        bad = ["x", "0123456789abcdefghjkmnpqrs", "../../etc/passwd", "A" * 26, "%00"]
        for b in bad:
            codes = {
                call(srv, "GET", f"/v1/families/{b}/messages", mom["token"]).status,
                call(srv, "GET", f"{M}/{b}/audio", mom["token"]).status,
                call(srv, "POST", f"{M}/{b}/listened", mom["token"]).status,
                call(srv, "DELETE", f"{M}/{b}", mom["token"]).status,
                call(srv, "DELETE", f"/v1/devices/{b}", mom["token"]).status,
                call(srv, "DELETE", f"/v1/families/{fam}/kiosk-links/{b}", mom["token"]).status,
                call(srv, "DELETE", f"/v1/families/{fam}/members/{b}", mom["token"]).status,
                call(srv, "PATCH", f"/v1/families/{fam}/members/{b}", mom["token"],
                     {"avatar": "cat"}).status,
                call(srv, "POST", f"{M}/{b}/audio-url", mom["token"]).status,
                call(srv, "POST", f"{M}/{b}/keep", mom["token"]).status,
                call(srv, "DELETE", f"{M}/{b}/keep", mom["token"]).status,
                call(srv, "POST", f"{M}/{b}/flag", mom["token"], {"reason": "x"}).status,
                call(srv, "GET", f"{M}/{b}/audio", hong["token"]).status,
                call(srv, "GET", f"/v1/families/{b}", mom["token"]).status,
                call(srv, "GET", f"/v1/families/{b}/members", mom["token"]).status,
                call(srv, "GET", f"/v1/families/{b}/devices", mom["token"]).status,
                call(srv, "GET", f"/v1/families/{b}/export", mom["token"]).status,
                call(srv, "PUT", f"/v1/families/{fam}/kiosk-links/{b}/pin", mom["token"],
                     {"pin": [1, 2, 3, 4]}).status,
            }
            ok(codes == {404}, f"the id {b!r} answers 404 everywhere", str(codes))

        # An id with one character more is not the id: the audio's one-trip check (review)
        longer = {call(srv, "GET", f"{M}/{everyone}x/audio", mom["token"]).status,
                  call(srv, "GET", f"/v1/families/{fam}x/messages/{everyone}/audio",
                       mom["token"]).status,
                  call(srv, "HEAD", f"{M}/{everyone}0/audio", mom["token"]).status}
        ok(longer == {404}, "an id with a character appended answers 404, audio included",
           str(longer))
        ok(call(srv, "GET", f"{M}/{everyone}x/audio").status == 401,
           "and without a token, 401 comes first")

        # A member who has left: its old phone is no one (401), the audio URL it had for a
        # private message to it no longer plays, it is no member to change or remove (404;
        # a parent's removal of it sent again is told 204, what happened) nor to send to
        # (400), and the private message it sent stays its recipient's and the grown-ups',
        # still no other child's.
        gone_kid = pair("child", "离开")
        said = upload(gone_kid["token"], hong["member"]["id"])
        to_it = upload(mom["token"], gone_kid["member"]["id"])
        url = call(srv, "POST", f"{M}/{to_it}/audio-url", gone_kid["token"]).json()["url"]
        gid = gone_kid["member"]["id"]
        ok(call(srv, "DELETE", f"/v1/families/{fam}/members/{gid}", mom["token"]).status == 204,
           "a parent removes a child: 204")
        r = call(srv, "GET", url)
        got = [call(srv, "GET", M, gone_kid["token"]).status,
               call(srv, "GET", f"{M}/{said}/audio", gone_kid["token"]).status,
               r.status, r.json()["error"]["code"] if r.status == 403 else r.status,
               call(srv, "PATCH", f"/v1/families/{fam}/members/{gid}", mom["token"],
                    {"avatar": "cat"}).status,
               call(srv, "DELETE", f"/v1/families/{fam}/members/{gid}", nai["token"]).status,
               call(srv, "DELETE", f"/v1/families/{fam}/members/{gid}", mom["token"]).status,
               call(srv, "POST", f"{M}?to={gid}", mom["token"], raw=wav).status]
        ok(got == [401, 401, 403, "url_expired", 404, 404, 204, 400],
           "a former member: its token 401, its audio URL 403 url_expired, no member to "
           "change, remove (a parent's removal sent again: 204, as the first) or send to",
           str(got))
        seen = {who: {m["id"] for m in call(srv, "GET", M, callers[who]).json()["messages"]}
                for who in ("parent", "caregiver", "child (recipient)", "other child")}
        audio = {who: call(srv, "GET", f"{M}/{said}/audio", callers[who]).status
                 for who in ("parent", "caregiver", "child (recipient)", "other child")}
        ok(said in seen["parent"] and said in seen["caregiver"] and said in seen["other child"]
           and said not in seen["child (recipient)"] and to_it in seen["parent"] and
           to_it not in seen["other child"] and
           audio == {"parent": 200, "caregiver": 200, "child (recipient)": 404,
                     "other child": 200},
           "a former member's private message: its recipient's and the grown-ups', no other "
           "child's", f"{audio}")

        # Erasing a family, last: a parent only.
        for who in ("caregiver", "child (recipient)", "child at a kiosk", "another family"):
            want = expect(who, 204, forbid=("caregiver",) + children)
            r = call(srv, "DELETE", f"/v1/families/{fam}", callers[who])
            ok(r.status == want, f"DELETE family by {who}: {want}", f"got {r.status}")
        ok(call(srv, "DELETE", f"/v1/families/{fam}", mom["token"]).status == 204 and
           call(srv, "GET", "/v1/me", other["token"]).status == 200 and
           call(srv, "GET", f"/v1/families/{ofam}", other["token"]).status == 200,
           "DELETE family by its parent: 204; the other family is untouched")
    finally:
        srv.stop()
    return finish()


if __name__ == "__main__":
    sys.exit(main())
