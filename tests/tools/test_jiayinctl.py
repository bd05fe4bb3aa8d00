#!/usr/bin/env python3
"""test_jiayinctl.py — the administrator's tool against a live server's data directory (TAP).

usage: test_jiayinctl.py JIAYINCTL_BINARY JIAYIN_BINARY [EIO_PRELOAD_LIBRARY]

Starts the real jiayin on a data directory and, while it runs, drives jiayinctl on the same
directory: schools, kiosks and their tokens (checked against the stored hash, and against the
kiosk endpoint), revoking, a family's view, export, backups, erasure
(the server then refuses the family's token), bad input with its exit codes and messages, and
the audit log's rows; then verify on a directory of its own, beside a server, before and after
one stored voice is damaged in the file, after the restore that puts it back, and with a
sector of a voice failing to read (EIO_PRELOAD_LIBRARY preloaded into jiayinctl). Every jiayinctl run is checked for sanitizer reports.
"""
import base64
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
from serverlib import Server, request, scratch_dir  # noqa: E402
from tap import finish, ok, results  # noqa: E402

SAMPLE = os.path.join(HERE, "..", "data", "sample.wav")
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "runtime error:")
ID = re.compile(r"[0-9a-hjkmnp-tv-z]{26}")
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

sanitizer_reports = []


def skip(name, why):
    results.append(True)
    print(f"ok {len(results)} - {name} # SKIP {why}", flush=True)


class Run:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err
        try:
            self.obj = json.loads(out) if out.strip() else None
        except ValueError:
            self.obj = None

    def __repr__(self):
        return f"rc={self.rc} out={self.out[:400]!r} err={self.err[:400]!r}"


class Ctl:
    def __init__(self, binary, data):
        self.binary, self.data = binary, data

    def __call__(self, *args, json_out=True, data=None, env=None):
        argv = [self.binary, "--data", data or self.data] + (["--json"] if json_out else [])
        p = subprocess.run(argv + list(args), capture_output=True, timeout=120,
                           env=dict(os.environ, **env) if env else None)
        err = p.stderr.decode("utf-8", "replace")
        if any(m in err for m in SANITIZER_MARKERS):
            sanitizer_reports.append(f"{args}: {err[:2000]}")
        return Run(p.returncode, p.stdout.decode("utf-8", "replace"), err)

    def raw(self, argv):
        p = subprocess.run([self.binary] + argv, capture_output=True, timeout=120)
        err = p.stderr.decode("utf-8", "replace")
        if any(m in err for m in SANITIZER_MARKERS):
            sanitizer_reports.append(f"{argv}: {err[:2000]}")
        return Run(p.returncode, p.stdout.decode("utf-8", "replace"), err)


def post_json(srv, path, obj, headers=()):
    return request(srv, "POST", path, json.dumps(obj).encode(),
                   headers=[("Content-Type", "application/json")] + list(headers))


def bearer(token):
    return [("Authorization", f"Bearer {token}")]


def db(path):
    c = sqlite3.connect(path, timeout=10)
    return c


def sha256(text):
    return hashlib.sha256(text.encode()).digest()


def stored_hash(data, device_id):
    with db(os.path.join(data, "directory.db")) as c:
        row = c.execute("SELECT token_hash FROM devices WHERE id = ?", (device_id,)).fetchone()
    return bytes(row[0]) if row else None


def integrity(path):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return c.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        c.close()


def kiosk_endpoint(srv, token):
    """The status of the kiosk endpoint's answer to a kiosk token."""
    return request(srv, "GET", "/v1/kiosk/children", headers=bearer(token)).status


def kiosks(ctl):
    r = ctl("kiosk", "list")
    return {k["id"]: k for k in r.obj["kiosks"]} if r.rc == 0 and r.obj else {}


def schools_and_kiosks(ctl, srv, data):
    """school add/list, kiosk add/list/token, device revoke; returns (school id, kiosk id)."""
    r = ctl("school", "add", "阳光小学")
    school = (r.obj or {}).get("school", {})
    ok(r.rc == 0 and ID.fullmatch(school.get("id", "")) and school["name"] == "阳光小学",
       "school add: the new school's id", repr(r))
    sid = school.get("id", "")
    r = ctl("school", "list", json_out=False)
    ok(r.rc == 0 and sid in r.out and "阳光小学" in r.out, "school list names it", repr(r))

    r = ctl("kiosk", "add", sid, "Front gate")
    k = r.obj or {}
    token = k.get("token", "")
    kid = k.get("kiosk", {}).get("id", "")
    dev = k.get("device", {})
    ok(r.rc == 0 and ID.fullmatch(kid) and ID.fullmatch(dev.get("id", "")) and
       dev.get("kiosk_id") == kid and dev.get("kind") == "kiosk" and TOKEN.fullmatch(token) and
       k["kiosk"]["school_id"] == sid, "kiosk add: the kiosk, its device and a 43-char token",
       repr(r))
    ok(stored_hash(data, dev.get("id", "")) == sha256(token),
       "the store holds the SHA-256 of the token's text, as the server hashes device tokens")
    with open(os.path.join(data, "directory.db"), "rb") as f:
        blob = f.read()
    wal = os.path.join(data, "directory.db-wal")
    if os.path.exists(wal):
        with open(wal, "rb") as f:
            blob += f.read()
    ok(token and token.encode() not in blob, "the token itself is stored nowhere")
    status = kiosk_endpoint(srv, token)
    ok(status == 200, "the kiosk token works at the server's kiosk endpoint", status)

    r = ctl("kiosk", "add", sid, "Side gate", json_out=False)
    lines = r.out.splitlines()
    tok_lines = [x for x in lines if x.startswith("token ")]
    ok(r.rc == 0 and len(tok_lines) == 1 and TOKEN.fullmatch(tok_lines[0].split()[-1]) and
       "shown only this once" in r.out and "setup screen" in r.out,
       "kiosk add without --json: the token once, and that it is shown only once", repr(r))

    r = ctl("kiosk", "add", "0" * 26, "Nowhere")
    ok(r.rc == 1 and "not_found" in r.err and r.obj and r.obj["error"]["code"] == "not_found",
       "kiosk add for an unknown school: 1, not_found", repr(r))

    listed = kiosks(ctl)
    devs = listed.get(kid, {}).get("devices", [])
    ok(len(listed) == 2 and listed[kid]["school"] == {"id": sid, "name": "阳光小学"} and
       [d["id"] for d in devs] == [dev.get("id")] and devs[0]["revoked"] is False,
       "kiosk list: both kiosks, with their school and devices", json.dumps(listed)[:600])
    r = ctl("kiosk", "list", sid)
    ok(r.rc == 0 and len(r.obj["kiosks"]) == 2, "kiosk list SCHOOL_ID", repr(r))
    # A token that could not be shown (stdout is a full disk) must not stay valid.
    with open("/dev/full", "w") as full:
        p = subprocess.run([ctl.binary, "--data", data, "kiosk", "add", sid, "看不见"],
                           stdout=full, stderr=subprocess.PIPE, timeout=120)
    lost = [k for k in ctl("kiosk", "list").obj["kiosks"] if k["name"] == "看不见"]
    lost_devs = lost[0]["devices"] if lost else []
    ok(p.returncode == 1 and b"revoked" in p.stderr and len(lost_devs) == 1 and
       lost_devs[0]["revoked"] is True,
       "a kiosk token the tool could not print is revoked at once", p.stderr[:300])
    r = ctl("kiosk", "list", "1" * 26)
    ok(r.rc == 1 and "not_found" in r.err, "kiosk list of an unknown school: not_found", repr(r))

    r = ctl("device", "revoke", dev.get("id", ""))
    ok(r.rc == 0 and r.obj["device"]["revoked"] is True and r.obj["already_revoked"] is False,
       "device revoke", repr(r))
    d = kiosks(ctl).get(kid, {}).get("devices", [{}])[0]
    ok(d.get("revoked") is True and isinstance(d.get("revoked_at"), int),
       "kiosk list marks the device revoked", json.dumps(d))
    with db(os.path.join(data, "directory.db")) as c:
        active = c.execute("SELECT count(*) FROM devices WHERE token_hash = ? AND "
                           "revoked_ms IS NULL", (sha256(token),)).fetchone()[0]
    ok(active == 0, "the token no longer finds an active device in the store")
    ok(kiosk_endpoint(srv, token) == 401, "the server refuses the revoked kiosk token")
    r = ctl("device", "revoke", dev.get("id", ""))
    ok(r.rc == 0 and r.obj["already_revoked"] is True, "revoking again: said so, exit 0",
       repr(r))

    r = ctl("kiosk", "token", kid, "Tablet 2")
    t2 = (r.obj or {}).get("token", "")
    d2 = (r.obj or {}).get("device", {})
    ok(r.rc == 0 and TOKEN.fullmatch(t2) and t2 != token and d2.get("name") == "Tablet 2" and
       stored_hash(data, d2.get("id", "")) == sha256(t2), "kiosk token: a new device token",
       repr(r))
    devs = kiosks(ctl).get(kid, {}).get("devices", [])
    ok([(x["id"], x["revoked"]) for x in devs] == [(dev.get("id"), True), (d2.get("id"), False)],
       "the kiosk now has two devices, the first revoked", json.dumps(devs)[:600])
    ok(kiosk_endpoint(srv, t2) == 200, "the new token works at the kiosk endpoint")
    r = ctl("kiosk", "token", kid)
    ok(r.rc == 0 and r.obj["device"]["name"] == "Front gate",
       "kiosk token without a name: the device takes the kiosk's", repr(r))
    return sid, kid, {"token": t2, "device": d2.get("id", "")}


def new_id():
    return random.choice("0123") + "".join(random.choice(CROCKFORD) for _ in range(25))


def kiosk_story(ctl, srv, kid, tablet, mom, fam):
    """A child paired through the kiosk endpoints, logged in with a PIN, and the kiosk's token
    revoked with jiayinctl: the child's session ends. Returns the link id."""
    names = ["the kiosk shows a pairing code, a parent pairs a child without a phone",
             "kiosk children lists the child the parent paired, without its PIN hash",
             "the child logs in at the kiosk with the PIN",
             "device revoke on the kiosk's token ends the child's session at once"]
    code = request(srv, "POST", "/v1/kiosk/pairing-codes", headers=bearer(tablet["token"]))
    child = post_json(srv, f"/v1/families/{fam}/members",
                      {"member_name": "小红", "role": "child", "avatar": "cat"},
                      headers=bearer(mom["token"]))
    link = {}
    if code.status == 201 and child.status == 201:
        r = post_json(srv, f"/v1/families/{fam}/kiosk-links",
                      {"code": code.json()["code"], "member_id": child.json()["member"]["id"],
                       "pin": [3, 7, 0, 11]}, headers=bearer(mom["token"]))
        link = r.json().get("link", {}) if r.status == 201 else {}
    ok(link.get("id"), names[0], f"{code.status} {child.status} {link}")
    r = ctl("kiosk", "children", kid)
    listed = {c["link_id"]: c for c in (r.obj or {}).get("children", [])}
    mine = listed.get(link.get("id"), {})
    ok(r.rc == 0 and mine.get("name") == "小红" and mine.get("avatar") == "cat" and
       mine.get("family_id") == fam and "argon2" not in r.out, names[1], repr(r))
    s = post_json(srv, "/v1/kiosk/sessions", {"child": link.get("id"), "pin": [3, 7, 0, 11]},
                  headers=bearer(tablet["token"]))
    session = s.json().get("token", "") if s.status == 201 else ""
    me = request(srv, "GET", "/v1/me", headers=bearer(session)) if session else None
    ok(me is not None and me.status == 200 and me.json()["member"]["name"] == "小红",
       names[2], f"{s.status} {s.body[:200]!r}")
    r = ctl("device", "revoke", tablet["device"])
    after = request(srv, "GET", "/v1/me", headers=bearer(session)).status if session else None
    ok(r.rc == 0 and after == 401 and kiosk_endpoint(srv, tablet["token"]) == 401, names[3],
       f"{r!r} {after}")
    return link.get("id")


def family_checks(ctl, srv, server_bin, data, tmp, kid, tablet):
    mom = post_json(srv, "/v1/families", {"family_name": "王家", "member_name": "妈妈"}).json()
    fam = mom["family"]["id"]
    code = post_json(srv, f"/v1/families/{fam}/pairing-codes",
                     {"role": "child", "member_name": "小明"},
                     headers=bearer(mom["token"])).json()["code"]
    kid_member = post_json(srv, "/v1/pair", {"code": code}).json()
    with open(SAMPLE, "rb") as f:
        up = request(srv, "POST", f"/v1/families/{fam}/messages", f.read(),
                     headers=bearer(mom["token"]), timeout=120)
    ok(up.status == 201, "setup: a family signed up, a child paired, a message sent", up.status)
    msg_bytes = up.json()["message"]["bytes"] if up.status == 201 else -1

    # A child paired to the kiosk by a row written as the kiosk endpoints write them (so this
    # runs whatever the server serves), with a PIN hash that must never be printed.
    link_id, pin_hash = new_id(), "$argon2id$v=19$m=65536,t=2,p=1$c2VjcmV0c2FsdA$secretpinhash"
    with db(os.path.join(data, "directory.db")) as c:
        c.execute("INSERT INTO kiosk_links (id, kiosk_id, member_id, pin_hash, created_ms) "
                  "VALUES (?, ?, ?, ?, 1700000000000)",
                  (link_id, kid, kid_member["member"]["id"], pin_hash))
    r = ctl("kiosk", "children", kid)
    ch = (r.obj or {}).get("children", [])
    ok(r.rc == 0 and len(ch) == 1 and ch[0]["link_id"] == link_id and
       ch[0]["pin_failures"] == 0 and ch[0]["locked"] is False and
       ch[0]["member_id"] == kid_member["member"]["id"] and ch[0]["name"] == "小明" and
       ch[0]["family_id"] == fam, "kiosk children: the paired child and its link id", repr(r))
    r2 = ctl("kiosk", "children", kid, json_out=False)
    ok(r2.rc == 0 and "小明" in r2.out and link_id in r2.out and "secretpinhash" not in r.out
       and "secretpinhash" not in r2.out and "pin_hash" not in r.out,
       "no PIN hash printed, with or without --json", repr(r2))
    # A lock whose time is over is no lock: the row keeps its end until the next attempt, and
    # jiayinctl said "PIN LOCKED until" a time gone by (and "locked": true) for it.
    locks = {}
    for name, until in (("over", int(time.time() * 1000) - 60000),
                        ("on", int(time.time() * 1000) + 600000)):
        with db(os.path.join(data, "directory.db")) as c:
            c.execute("UPDATE kiosk_links SET failures = 5, locked_until_ms = ? WHERE id = ?",
                      (until, link_id))
        r, r2 = ctl("kiosk", "children", kid), ctl("kiosk", "children", kid, json_out=False)
        ch = ((r.obj or {}).get("children") or [{}])[0]
        locks[name] = (ch.get("locked"), ch.get("locked_until"), "PIN LOCKED" in r2.out,
                       "5 wrong PINs" in r2.out)
    ok(locks["over"] == (False, None, False, True) and locks["on"][0] is True and
       locks["on"][1] is not None and locks["on"][2:] == (True, False),
       "kiosk children: a lock whose time is over shows as wrong PINs, not as a lock",
       repr(locks))
    with db(os.path.join(data, "directory.db")) as c:
        c.execute("UPDATE kiosk_links SET failures = 0, locked_until_ms = 0 WHERE id = ?",
                  (link_id,))
    story_link = kiosk_story(ctl, srv, kid, tablet, mom, fam)

    # A grandmother who has left the family: shown as a former member.
    gran = post_json(srv, f"/v1/families/{fam}/members",
                     {"member_name": "奶奶", "role": "caregiver"},
                     headers=bearer(mom["token"])).json()["member"]["id"]
    request(srv, "DELETE", f"/v1/families/{fam}/members/{gran}", headers=bearer(mom["token"]))
    r = ctl("family", "show", fam)
    o = r.obj or {}
    members = {m["name"]: m["role"] for m in o.get("members", [])}
    left = [m["name"] for m in o.get("members", []) if "left_at" in m]
    want_members = {"妈妈": "parent", "小明": "child", "奶奶": "caregiver"} | (
        {"小红": "child"} if story_link else {})
    want_links = {link_id} | ({story_link} if story_link else set())
    ok(r.rc == 0 and o["family"]["name"] == "王家" and members == want_members and
       len(o["devices"]) == 2 and o["family"]["usage_bytes"] == msg_bytes and
       {x["link_id"] for x in o["kiosk_links"]} == want_links and left == ["奶奶"],
       "family show: its name, parent, child, a former member (left_at), devices, usage and "
       "kiosk pairing", repr(r))
    r = ctl("family", "show", fam, json_out=False)
    ok(r.rc == 0 and "王家" in r.out and "妈妈" in r.out and "parent" in r.out and
       str(msg_bytes) in r.out and "former members (1):" in r.out and
       r.out.index("former members") < r.out.index("奶奶") and ", left " in r.out,
       "family show without --json", repr(r))

    zpath = os.path.join(tmp, "wang.zip")
    r = ctl("family", "export", fam, zpath)
    try:
        with zipfile.ZipFile(zpath) as z:
            names = z.namelist()
            index = json.loads(z.read("index.json"))
            oggs = [n for n in names if n.endswith(".ogg")]
            ogg_ok = len(oggs) == 1 and z.read(oggs[0])[:4] == b"OggS" and \
                z.getinfo(oggs[0]).file_size == msg_bytes
    except Exception as e:  # noqa: BLE001 — the check reports it
        names, index, ogg_ok = [repr(e)], {}, False
    ok(r.rc == 0 and r.obj["bytes"] == os.path.getsize(zpath) and "index.json" in names and
       "王家" in json.dumps(index, ensure_ascii=False) and ogg_ok,
       "family export: a zip with index.json and the message's Ogg", f"{r!r} {names}")
    ok(stat.S_IMODE(os.stat(zpath).st_mode) == 0o600, "the export is readable by its owner only")
    before = os.path.getsize(zpath)
    r = ctl("family", "export", fam, zpath)
    ok(r.rc == 1 and "conflict" in r.err and os.path.getsize(zpath) == before,
       "export over an existing file: refused, the file untouched", repr(r))
    gone = os.path.join(tmp, "none.zip")
    r = ctl("family", "export", "2" * 26, gone)
    ok(r.rc == 1 and "not_found" in r.err and not os.path.exists(gone),
       "export of an unknown family: not_found, no file left", repr(r))
    r = ctl("family", "export", fam, os.path.join(tmp, "no", "such", "dir.zip"))
    ok(r.rc == 1 and "cannot create" in r.err, "export into a missing directory: 1", repr(r))

    dest = os.path.join(tmp, "backup")
    r = ctl("backup", dest)
    fdb = os.path.join(dest, "families", f"{fam}.db")
    ok(r.rc == 0 and r.obj["families"] == 1 and
       integrity(os.path.join(dest, "directory.db")) == "ok" and integrity(fdb) == "ok",
       "backup: directory.db and families/<id>.db, integrity ok", repr(r))
    with db(os.path.join(dest, "directory.db")) as c:
        schools = c.execute("SELECT name FROM schools").fetchall()
    c.close()  # its -wal and -shm go with it: the backup as the backup left it
    ok(schools == [("阳光小学",)], "the backup holds the directory's rows")
    key = os.path.join(dest, "secret")
    with open(os.path.join(data, "secret"), "rb") as a:
        same = os.path.exists(key) and open(key, "rb").read() == a.read()
    ok(same and (os.stat(key).st_mode & 0o777) == 0o600,
       "the backup holds the server's key (kiosk PINs depend on it), mode 0600")
    r = ctl("backup", dest)
    ok(r.rc == 1 and "conflict" in r.err, "backup into an existing directory: refused", repr(r))
    # A look into the backup (what schools, kiosks and families it holds) leaves every file in
    # it as it was: the same names, bytes, modes and times (the review: school list made
    # quarantine/ in it, and family show turned its family's copy from the rollback journal
    # the backup writes to WAL, a changed file for every checksum kept of the backup).
    before = snapshot(dest)
    looks = [ctl(*args, data=dest, json_out=j) for args, j in
             ((("school", "list"), True), (("kiosk", "list"), True),
              (("kiosk", "children", kid), True), (("family", "show", fam), True),
              (("family", "show", fam), False))]
    after = snapshot(dest)
    ok(all(r.rc == 0 for r in looks) and looks[3].obj["family"]["usage_bytes"] > 0 and
       "王家" in looks[4].out and after == before,
       "school list, kiosk list, kiosk children and family show in a backup's folder leave "
       "every file in it as it was", f"{looks!r} {set(after.items()) ^ set(before.items())}")
    # A look into the backup (what is in it, a family's voices saved from it) leaves its copy
    # as it was taken: the floor a restored copy numbers its changes from is raised to the
    # time of the server's first opening after the restore, once, so that a copy put back
    # twice tells phones both times (the review: jiayinctl raised it as it opened the copy in
    # the backup folder, and every later restore of that copy numbered its changes alike).
    floors = []
    for args in (("family", "show", fam), ("family", "export", fam,
                                           os.path.join(tmp, "from-backup.zip")),
                 ("backup-family", fam, os.path.join(tmp, "from-backup.db"))):
        r = ctl(*args, data=dest)
        with db(fdb) as c:
            floors.append((r.rc, c.execute("SELECT applied_ms FROM seq_floor").fetchall()))
    ok(floors == [(0, [(None,)])] * 3,
       "family show, export and backup-family from a backup leave its copy's floor to the "
       "restore", repr(floors))
    # The restore docs/operations.md describes: the backup, key included, as a data directory.
    restored = os.path.join(tmp, "restored")
    shutil.copytree(dest, restored)
    srv2 = Server(server_bin, data=restored)
    try:
        me = request(srv2, "GET", "/v1/me", headers=bearer(mom["token"]))
        msgs = request(srv2, "GET", f"/v1/families/{fam}/messages?since=0",
                       headers=bearer(mom["token"]))
        ok(me.status == 200 and msgs.status == 200 and
           [m["bytes"] for m in msgs.json()["messages"]] == [msg_bytes],
           "a server started on the restored backup knows the family and its message",
           f"{me.status} {msgs.status} {msgs.body[:200]!r}")
    finally:
        srv2.stop()
    one = os.path.join(tmp, "wang.db")
    r = ctl("backup-family", fam, one)
    ok(r.rc == 0 and integrity(one) == "ok", "backup-family: one family's database", repr(r))
    r = ctl("backup-family", fam, one)
    ok(r.rc == 1 and "conflict" in r.err, "backup-family over an existing file: refused",
       repr(r))
    r = ctl("backup-family", "../../etc/passwd", os.path.join(tmp, "x.db"))
    ok(r.rc == 1 and "not_found" in r.err and not os.path.exists(os.path.join(tmp, "x.db")),
       "backup-family of a malformed id: not found", repr(r))

    r = ctl("family", "delete", fam)
    still = ctl("family", "show", fam)
    ok(r.rc == 64 and "--yes" in r.err and still.rc == 0,
       "family delete without --yes refuses, the family stays", repr(r))
    ok(request(srv, "GET", "/v1/me", headers=bearer(mom["token"])).status == 200,
       "the family's token still works")
    # An unfinished resumable upload of the family's phone: it goes with the family.
    up = request(srv, "POST", "/v1/uploads", b"",
                 headers=bearer(mom["token"]) + [
                     ("Tus-Resumable", "1.0.0"), ("Upload-Length", "100000"),
                     ("Upload-Metadata", "family_id " + base64.b64encode(fam.encode()).decode())])
    updir = os.path.join(data, "uploads", mom["device"]["id"])
    ok(up.status == 201 and os.path.isdir(updir) and os.listdir(updir),
       "the family's phone has an unfinished upload on disk", f"{up.status} {up.body[:100]!r}")
    r = ctl("family", "delete", fam, "--yes")
    after = ctl("family", "show", fam)
    ok(not os.path.exists(updir), "family delete erases its phones' unfinished uploads too")
    ok(r.rc == 0 and r.obj == {"deleted": fam} and after.rc == 1 and "not_found" in after.err,
       "family delete --yes erases it", f"{r!r} {after!r}")
    ok(not os.path.exists(os.path.join(data, "families", f"{fam}.db")),
       "its mailbox file is gone")

    def held():  # the server's descriptors still on the erased family's files
        out = []
        for fd in os.listdir(f"/proc/{srv.proc.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{srv.proc.pid}/fd/{fd}")
            except OSError:
                continue
            if fam in target:
                out.append(target)
        return out
    said = "family database(s) erased by another program closed"
    deadline = time.time() + 5
    # Both awaited: the event is logged once the files are closed, a moment after (a loaded
    # machine saw the files let go and the line not yet written).
    while (held() or said not in srv.log_text()) and time.time() < deadline:
        time.sleep(0.1)
    ok(not held() and said in srv.log_text(),
       "the running server lets go of the erased family's files within seconds, so the disk "
       "frees them (the review: held until the cache let go or a restart)", str(held()))
    ok(request(srv, "GET", "/v1/me", headers=bearer(mom["token"])).status == 401 and
       request(srv, "GET", "/v1/me", headers=bearer(kid_member["token"])).status == 401,
       "the server answers 401 to the family's tokens")
    r = ctl("kiosk", "children", kid)
    ok(r.rc == 0 and r.obj["children"] == [], "its child is no longer paired to the kiosk",
       repr(r))
    r = ctl("family", "delete", fam, "--yes")
    ok(r.rc == 1 and "not_found" in r.err, "deleting it again: not found", repr(r))
    return fam


def bad_input(ctl, data, tmp):
    r = ctl.raw(["--data", data, "frobnicate"])
    ok(r.rc == 64 and "unknown command" in r.err, "an unknown command: 64", repr(r))
    r = ctl.raw(["--data", data, "--json", "school", "drop"])
    ok(r.rc == 64 and r.obj and r.obj["error"]["code"] == "usage",
       "an unknown verb: 64, and with --json a usage error object", repr(r))
    r = ctl.raw(["--data", data])
    ok(r.rc == 64, "no command: 64", repr(r))
    r = ctl.raw(["--bogus", "school", "list"])
    ok(r.rc == 64, "an unknown option: 64", repr(r))
    r = ctl("school", "add")
    ok(r.rc == 64 and "usage:" in r.err, "too few arguments: 64 with the usage", repr(r))
    r = ctl("school", "add", "a", "b")
    ok(r.rc == 64, "too many arguments: 64", repr(r))
    r = ctl.raw(["--help"])
    ok(r.rc == 0 and all(c in r.out for c in (
        "school add", "school list", "kiosk add", "kiosk list", "kiosk token",
        "kiosk children", "device revoke", "family show", "family delete", "family export",
        "backup DEST_DIR", "backup-family", "verify [FAMILY_ID]", "--data", "--json")),
       "--help lists every command and option", repr(r))

    for args in (("family", "show", "nope"), ("family", "show", "Z" * 26),
                 ("family", "show", "0" * 27), ("device", "revoke", "../../directory.db"),
                 ("device", "revoke", "0" * 26), ("kiosk", "children", "'; DROP TABLE x"),
                 ("kiosk", "token", "\u00e9" * 13), ("family", "delete", "x", "--yes"),
                 ("kiosk", "add", "", "name"), ("family", "export", "%s%n", "y.zip")):
        r = ctl(*args)
        ok(r.rc == 1 and "not found" in r.err.replace("not_found", "not found") and
           r.obj and r.obj["error"]["code"] == "not_found",
           f"a malformed or unknown id answers not found: {args[:2]} {args[2][:20]!r}",
           repr(r))
    ok(not os.path.exists("y.zip"), "no file left by a refused export")

    r = ctl("school", "add", "x" * 65)
    ok(r.rc in (1, 64) and "64" in r.err, "a 65-byte name is refused", repr(r))
    r = ctl("school", "add", "家" * 22)  # 66 bytes of UTF-8
    ok(r.rc in (1, 64), "a 22-character, 66-byte name is refused", repr(r))
    r = ctl("school", "add", "y" * 64)
    ok(r.rc == 0, "a 64-byte name is taken", repr(r))
    r = ctl("school", "add", "")
    ok(r.rc in (1, 64), "an empty name is refused", repr(r))
    r = ctl("school", "add", "bell\x07")
    ok(r.rc in (1, 64), "a name with a control byte is refused", repr(r))
    r = ctl("school", "add", "校\u009b2J")
    ok(r.rc in (1, 64), "a name with a C1 control character (U+009B) is refused", repr(r))
    r = ctl("school", "add", "\u3000\u200b")
    ok(r.rc in (1, 64) and "shows something" in r.err,
       "a name of an ideographic space and a zero-width space is refused", repr(r))
    r = ctl("school", "add", "\u202e校")
    ok(r.rc in (1, 64), "a name with a right-to-left override (U+202E) is refused", repr(r))
    p = subprocess.run([ctl.binary, "--data", data, "school", "add", b"\xff\xfeab"],
                       capture_output=True, timeout=60)
    ok(p.returncode in (1, 64) and b"Sanitizer" not in p.stderr,
       "a name that is not UTF-8 is refused", p.stderr[:300])
    sid = ctl("school", "list").obj["schools"][0]["id"]
    r = ctl("kiosk", "add", sid, "k" * 65)
    ok(r.rc in (1, 64), "a 65-byte kiosk name is refused", repr(r))

    afile = os.path.join(tmp, "a-file")
    with open(afile, "w") as f:
        f.write("not a directory\n")
    r = ctl("school", "list", data=afile)
    ok(r.rc == 1 and "not a directory" in r.err, "--data naming a file: 1, a clear message",
       repr(r))
    missing = os.path.join(tmp, "no-such-data")
    r = ctl("school", "list", data=missing)
    ok(r.rc == 1 and "no data directory" in r.err and not os.path.exists(missing),
       "--data naming nothing: 1, and no directory is made", repr(r))
    empty = os.path.join(tmp, "not-data")
    os.mkdir(empty)
    r = ctl("school", "list", data=empty)
    ok(r.rc == 1 and "not a Jiayin data directory" in r.err and os.listdir(empty) == [],
       "--data naming a directory the server never used: 1, and nothing is made there",
       repr(r))
    r = ctl.raw(["--data", data, "school", "list", "extra"])
    ok(r.rc == 64 and "school list takes no arguments" in r.err and
       "usage: jiayinctl [--data DIR] [--json] school list\n" in r.err,
       "a command given arguments it takes none of: 64, its usage without a stray space",
       repr(r))
    if os.geteuid() == 0:
        theirs = os.path.join(tmp, "theirs")
        os.mkdir(theirs)
        os.chown(theirs, 65534, 65534)
        r = ctl("school", "list", data=theirs)
        ok(r.rc == 1 and "uid 65534" in r.err and os.listdir(theirs) == [],
           "a data directory of another user: refused, nothing written there", repr(r))
    else:
        skip("a data directory of another user is refused", "only root can make one")
    r = ctl("family", "delete", "--yes")
    ok(r.rc == 64, "family delete with --yes but no id: 64", repr(r))
    # A command's --help is its usage, not an argument: `school add --help` added a school
    # named "--help", `kiosk token KIOSK_ID -h` made a live token for a device named "-h".
    for args in (("school", "add", "--help"), ("kiosk", "token", "1" * 26, "-h"),
                 ("family", "delete", "--help"), ("verify", "--help")):
        r = ctl.raw(["--data", data] + list(args))
        ok(r.rc == 0 and f"usage: jiayinctl [--data DIR] [--json] {args[0]}" in r.out and
           not r.err, f"{' '.join(args)}: its usage, exit 0", repr(r))
    r = ctl.raw(["--data", data, "school", "--help"])
    ok(r.rc == 0 and "school add" in r.out and "school list" in r.out,
       "school --help: the commands", repr(r))
    # An option after the command is a mistake, not a name: `school add --json` added a
    # school named "--json", `kiosk token KIOSK_ID --json` a device named "--json".
    kid = ctl("kiosk", "list").obj["kiosks"][0]["id"]
    for args in (("school", "add", "--json"), ("kiosk", "token", kid, "--json"),
                 ("school", "add", "--data=/tmp"), ("kiosk", "list", "--data")):
        r = ctl.raw(["--data", data] + list(args))
        ok(r.rc == 64 and "options come before the command" in r.err and not r.out,
           f"{' '.join(args)}: 64, options come first", repr(r))
    names = [s["name"] for s in ctl("school", "list").obj["schools"]]
    devs = [d["name"] for k in ctl("kiosk", "list").obj["kiosks"] for d in k["devices"]]
    ok(not {"--help", "-h", "--json", "--data=/tmp"} & set(names + devs),
       "no school or device was added by a --help or an option after the command",
       f"{names} {devs}")


def tone_wav(hz, seconds=3):
    """A WAV of a tone (mono, 16 kHz): a recording whose stored clip is its own."""
    import io
    import math
    import wave
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(
            int(8000 * math.sin(2 * math.pi * hz * i / 16000)).to_bytes(2, "little", signed=True)
            for i in range(16000 * seconds)))
    return buf.getvalue()


def verify_checks(ctl_bin, server_bin, tmp, eio_preload):
    """verify beside a running server: bytes changed inside one stored voice (a disk's silent
    damage: the database's structure is whole) are found, that message alone, exit 1; the
    restore docs/operations.md describes (a backup-family copy taken before) brings the voice
    back, as verify and the served bytes show. Its own data directory: verify writes no audit
    row, as no read does."""
    data = os.path.join(tmp, "verify-data")
    ctl = Ctl(ctl_bin, data)
    srv = Server(server_bin, data=data)
    fams, msgs = {}, {}
    try:
        for name, clips in (("王家", (SAMPLE, 440)), ("李家", (SAMPLE,))):
            mom = post_json(srv, "/v1/families", {"family_name": name, "member_name": "妈妈"})
            mom = mom.json()
            fams[name] = (mom["family"]["id"], mom["token"])
            for clip in clips:
                body = open(clip, "rb").read() if isinstance(clip, str) else tone_wav(clip)
                up = request(srv, "POST", f"/v1/families/{mom['family']['id']}/messages", body,
                             headers=bearer(mom["token"]), timeout=120)
                msgs.setdefault(name, []).append(up.json()["message"] if up.status == 201
                                                 else {})
        wang, token = fams["王家"]
        li = fams["李家"][0]
        victim = msgs["王家"][0].get("id", "")

        def audio(s, mid):
            return request(s, "GET", f"/v1/families/{wang}/messages/{mid}/audio",
                           headers=bearer(token), timeout=30)
        good = audio(srv, victim)
        ok(good.status == 200 and hashlib.sha256(good.body).hexdigest()[:32] ==
           good.header("ETag").strip('"') and len(msgs["王家"]) == 2,
           "setup: two families, three voices; a voice is served with its SHA-256 (the first "
           "128 bits) as ETag",
           f"{good.status} {msgs}")
        r = ctl("verify")
        per = {f["family_id"]: f for f in (r.obj or {}).get("families", [])}
        ok(r.rc == 0 and r.obj["damaged"] == 0 and r.obj["messages"] == 3 and
           set(per) == {wang, li} and per[wang]["damaged"] == [] and
           per[wang]["messages"] == 2 and per[li]["messages"] == 1 and
           r.obj["bytes"] == sum(m["bytes"] for v in msgs.values() for m in v) and
           "error" not in r.obj, "verify: every family's voices checked, none damaged, exit 0",
           repr(r))
        r = ctl("verify", json_out=False)
        ok(r.rc == 0 and r.out.count("all as stored") == 2 and
           "2 families, 3 voices" in r.out and "0 damaged" in r.out and r.err == "",
           "verify without --json: a line per family and the totals", repr(r))
        good_copy = os.path.join(tmp, "wang-good.db")
        r = ctl("backup-family", wang, good_copy)
        ok(r.rc == 0, "a backup-family copy of the family before the damage", repr(r))
    finally:
        srv.stop()  # its last connection checkpoints: the voices are in the main file

    # A disk's silent damage: 16 bytes in the middle of one voice, in the file itself.
    path = os.path.join(data, "families", f"{wang}.db")
    with open(path, "rb") as f:
        content = f.read()
    window = good.body[len(good.body) // 2:len(good.body) // 2 + 48]
    at = content.find(window)
    ok(at > 0 and content.count(window) == 1 and not os.path.exists(path + "-wal"),
       "the voice's bytes are in the family's file, once", f"{at} {content.count(window)}")
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(bytes(b ^ 0x5A for b in window[:16]))
    srv = Server(server_bin, data=data)
    try:
        served = audio(srv, victim)
        ok(served.status == 200 and served.header("ETag") == good.header("ETag") and
           served.body != good.body and integrity(path) == "ok",
           "the damage passes integrity_check, and the server serves it under the old ETag",
           f"{served.status} {integrity(path)}")
        r = ctl("verify")
        per = {f["family_id"]: f for f in (r.obj or {}).get("families", [])}
        ok(r.rc == 1 and r.obj and r.obj["damaged"] == 1 and
           r.obj["damaged_families"] == 1 and per[wang]["damaged"] == [victim] and
           per[wang]["messages"] == 2 and per[li]["damaged"] == [] and
           r.obj["error"]["code"] == "storage_corrupt" and "storage_corrupt" in r.err,
           "verify beside the running server finds that voice alone: exit 1, its id, "
           "storage_corrupt", repr(r))
        r = ctl("verify", wang, json_out=False)
        ok(r.rc == 1 and "1 DAMAGED" in r.out and f"message {victim}" in r.out and
           msgs["王家"][1]["id"] not in r.out and "1 damaged voice in 1 family" in r.err,
           "verify FAMILY_ID without --json names the damaged message", repr(r))
        r = ctl("verify", li)
        ok(r.rc == 0 and r.obj["damaged"] == 0 and len(r.obj["families"]) == 1,
           "verify of the other family: whole, exit 0", repr(r))
        r = ctl("verify", "2" * 26)
        ok(r.rc == 1 and r.obj["error"]["code"] == "not_found", "verify of an unknown family: "
           "not_found", repr(r))
        r = ctl("verify", wang, li)
        ok(r.rc == 64, "verify takes one family at most: 64", repr(r))
    finally:
        srv.stop()

    # The restore docs/operations.md gives: the service stopped, the WAL and shm removed, the
    # copy put in the mailbox's place; verify and the served bytes say the voice is back.
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    shutil.copyfile(good_copy, path)
    os.chmod(path, 0o600)
    srv = Server(server_bin, data=data)
    try:
        r = ctl("verify")
        back = audio(srv, victim)
        ok(r.rc == 0 and r.obj["damaged"] == 0 and r.obj["messages"] == 3 and
           back.status == 200 and back.body == good.body,
           "after the restore from the copy, verify finds nothing and the voice is served whole",
           f"{r!r} {back.status}")
    finally:
        srv.stop()
    ok(not [a for a, _, _ in audit_rows(data) if "verify" in a],
       "verify writes no audit row (a read, as family show)", f"{audit_rows(data)}")
    if not eio_preload:
        skip("verify names a voice the disk fails to read", "no eio_preload library given")
        return

    # A sector of the voice that read at the family's opening (its quick_check) and fails with
    # EIO after it: verify names that voice unreadable and checks the others, exit 1.
    with open(path, "rb") as f:
        at = f.read().find(window)
    env = {"LD_PRELOAD": eio_preload, "JIAYIN_EIO_FILE": path, "JIAYIN_EIO_AT": str(at),
           "JIAYIN_EIO_PASS": "1",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
    r = ctl("verify", env=env)
    per = {f["family_id"]: f for f in (r.obj or {}).get("families", [])}
    ok(at > 0 and r.rc == 1 and r.obj and r.obj["unreadable"] == 1 and
       r.obj["damaged"] == 0 and per[wang]["unreadable"] == [victim] and
       per[wang]["damaged"] == [] and per[wang]["messages"] == 1 and
       per[li]["messages"] == 1 and per[li]["unreadable"] == [] and
       r.obj["unchecked_families"] == 0 and
       r.obj["error"]["code"] == "storage_io_error" and "1 voice could not be read" in r.err,
       "verify names the voice the disk fails to read as unreadable and checks the others: "
       "exit 1, storage_io_error", repr(r))
    r = ctl("verify", wang, json_out=False, env=env)
    ok(r.rc == 1 and "1 voice (" in r.out and "0 DAMAGED, 1 UNREADABLE" in r.out and
       f"unreadable message {victim}" in r.out and msgs["王家"][1]["id"] not in r.out and
       "1 unreadable" in r.out and "storage_io_error" in r.err,
       "verify FAMILY_ID without --json names the unreadable message", repr(r))
    # The export docs/operations.md has an operator make of such a mailbox before putting a
    # copy back (for the messages sent since the copy): the voices that read are in the zip,
    # the one the disk fails to read is left out and named, exit 0 (the review: the export
    # failed whole, "storage_corrupt", and those messages could not be saved).
    zpath = os.path.join(tmp, "unreadable.zip")
    r = ctl("family", "export", wang, zpath, env=env)
    names = zipfile.ZipFile(zpath).namelist() if os.path.exists(zpath) else []
    index = json.loads(zipfile.ZipFile(zpath).read("index.json")) if "index.json" in names else {}
    other = msgs["王家"][1]["id"]
    ok(r.rc == 0 and r.obj and r.obj["unreadable"] == [victim] and r.obj["damaged"] == [] and
       r.obj["left_out_rows"] == [] and [n for n in names if n.endswith(".ogg")] ==
       [n for n in names if other in n] and len(names) == 2 and
       [m["id"] for m in index.get("messages", [])] == [other] and
       [(g["id"], g["why"]) for g in index.get("left_out", [])] == [(victim, "unreadable")],
       "family export of a mailbox with a voice the disk fails to read: the other voice in "
       "the zip and its index, that one left out and named (and in the index's left_out), "
       "exit 0", f"{r!r} {names} {index.get('left_out')}")
    zpath = os.path.join(tmp, "unreadable-text.zip")
    r = ctl("family", "export", wang, zpath, json_out=False, env=env)
    ok(r.rc == 0 and os.path.exists(zpath) and
       "LEFT OUT 1 message the disk failed to read" in r.out and victim in r.out,
       "family export without --json says which message it left out", repr(r))
    r = ctl("verify")
    ok(r.rc == 0 and r.obj["unreadable"] == 0 and r.obj["messages"] == 3,
       "the disk reading again, verify finds every voice whole", repr(r))
    verify_writes_nothing(ctl, tmp, wang, li)


def snapshot(top):
    """Every name under top, with each file's mode, mtime and SHA-256."""
    out = {}
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_mtime_ns if digest else 0, digest)
    return out


def verify_writes_nothing(ctl, tmp, wang, li):
    """verify on a backup's copy, and on a read-only mount of it, changes nothing: the same
    names, bytes, modes and times afterwards (the review: opening a family applied a restored
    copy's floor, set a damaged mailbox aside in quarantine/, migrated an older one, and on a
    read-only mount nothing could be checked); a mailbox it cannot check read-only is named."""
    copy = os.path.join(tmp, "verify-copy")
    r = ctl("backup", copy)
    before = snapshot(copy)
    v = ctl("verify", data=copy)
    after = snapshot(copy)
    ok(r.rc == 0 and v.rc == 0 and v.obj and v.obj["messages"] == 3 and after == before,
       "verify of a backup's copy checks every voice and leaves every file as it was",
       f"{v!r} {set(after.items()) ^ set(before.items())}")

    ro = os.path.join(tmp, "verify-ro")
    os.mkdir(ro)
    mounted = subprocess.run(["mount", "--bind", copy, ro], capture_output=True).returncode == 0
    if mounted and subprocess.run(["mount", "-o", "remount,bind,ro", ro],
                                  capture_output=True).returncode != 0:
        subprocess.run(["umount", ro])
        mounted = False
    if mounted:
        try:
            v = ctl("verify", data=ro)
            t = ctl("verify", wang, data=ro, json_out=False)
            looks = [ctl("school", "list", data=ro), ctl("family", "show", wang, data=ro)]
        finally:
            subprocess.run(["umount", ro])
        ok(v.rc == 0 and v.obj and v.obj["messages"] == 3 and t.rc == 0 and
           "all as stored" in t.out and snapshot(copy) == before,
           "verify on a read-only bind mount of the copy checks every voice", f"{v!r} {t!r}")
        # (the review: both failed "cannot open the data directory: the storage is read-only")
        ok(all(r.rc == 0 for r in looks) and looks[1].obj["family"]["usage_bytes"] > 0,
           "school list and family show on the read-only mount too", f"{looks!r}")
    else:
        skip("verify on a read-only mount", "no bind mount here (not root, or no mounts)")

    # A damaged mailbox and one of an older version: named, neither set aside nor migrated.
    for name, sql in ((li, None), (wang, "PRAGMA user_version = {}")):
        path = os.path.join(copy, "families", f"{name}.db")
        if sql:
            with db(path) as c:
                now = c.execute("PRAGMA user_version").fetchone()[0]
                c.execute(sql.format(now - 1))
            c.close()
        else:
            with open(path, "r+b") as f:
                f.write(b"\x5a" * 16)
    before = snapshot(copy)
    v = ctl("verify", data=copy)
    per = {f["family_id"]: f for f in (v.obj or {}).get("families", [])}
    after = snapshot(copy)
    ok(v.rc == 1 and per.get(li, {}).get("error", {}).get("code") == "storage_corrupt" and
       "left where it is" in per[li]["error"]["message"] and
       per.get(wang, {}).get("error", {}).get("code") == "storage_schema_old" and
       "does not migrate" in per[wang]["error"]["message"] and
       v.obj["unchecked_families"] == 2 and after == before,
       "verify names a damaged mailbox and one of an older version as not checked, and "
       "leaves both as they are (not set aside, not migrated)",
       f"{v!r} {set(after.items()) ^ set(before.items())}")
    # family show of each: the family shown, its mailbox said damaged or older, left as it is.
    shown = {f: ctl("family", "show", f, data=copy) for f in (li, wang)}
    flags = {f: {k: v for k, v in ((r.obj or {}).get("family") or {}).items()
                 if k.startswith("mailbox_") or k == "usage_bytes"} for f, r in shown.items()}
    ok(flags == {li: {"mailbox_damaged": True, "usage_bytes": None},
                 wang: {"mailbox_older": True, "usage_bytes": None}} and
       snapshot(copy) == before,
       "family show of them: each shown, said damaged or older, and left as it is",
       f"{flags} {shown!r}")


def kiosk_unlock_checks(ctl_bin, server_bin, tmp):
    """A kiosk whose children's wrong PINs reached pin-failures-kiosk (3 here) refuses every
    login with 429 pin_locked; `kiosk list` and `kiosk children` show its count of the hour, and
    `kiosk unlock` ends it beside the running server: a right PIN logs in at once. Audited;
    an unknown or malformed id fails clearly; a kiosk not locked is said to be. A child locked
    by their own wrong PINs stays locked (docs/operations.md)."""
    data = os.path.join(tmp, "unlock-data")
    ctl = Ctl(ctl_bin, data)
    srv = Server(server_bin, "--pin-failures-kiosk", "3", data=data)
    try:
        sid = ctl("school", "add", "希望小学").obj["school"]["id"]
        k = ctl("kiosk", "add", sid, "宿舍平板").obj
        kid, token = k["kiosk"]["id"], k["token"]
        mom = post_json(srv, "/v1/families", {"family_name": "李家", "member_name": "妈妈"}).json()
        fam = mom["family"]["id"]
        child = post_json(srv, f"/v1/families/{fam}/members",
                          {"member_name": "小兰", "role": "child", "avatar": "dog"},
                          headers=bearer(mom["token"])).json()["member"]["id"]
        code = request(srv, "POST", "/v1/kiosk/pairing-codes", headers=bearer(token)).json()
        link = post_json(srv, f"/v1/families/{fam}/kiosk-links",
                         {"code": code["code"], "member_id": child, "pin": [1, 2, 3, 4]},
                         headers=bearer(mom["token"])).json()["link"]["id"]

        def login(pin, to=link):
            return post_json(srv, "/v1/kiosk/sessions", {"child": to, "pin": pin},
                             headers=bearer(token))

        r = ctl("kiosk", "unlock", kid, json_out=False)
        ok(r.rc == 0 and "not locked" in r.out and kid in r.out,
           "kiosk unlock of a kiosk without wrong PINs: it was not locked", repr(r))
        wrong = [login([5, 6, 7, 8]).status for _ in range(3)]
        locked = login([1, 2, 3, 4])
        screen = request(srv, "GET", "/v1/kiosk/children", headers=bearer(token)).json()
        until = screen["kiosk"]["locked_until"]
        ok(wrong == [403, 403, 429] and locked.status == 429 and
           locked.json()["error"]["code"] == "pin_locked" and isinstance(until, int),
           "three wrong PINs lock the kiosk (the third answered as the lock it starts): its "
           "child's right PIN is 429 pin_locked",
           f"{wrong} {locked.status} {locked.body[:200]!r} {screen}")
        listed = kiosks(ctl).get(kid, {})
        r = ctl("kiosk", "list", json_out=False)
        ok(listed.get("wrong_pins") == 3 and listed.get("wrong_pins_until") == until and
           "3 wrong PINs this hour" in r.out and f"kiosk unlock {kid}" in r.out,
           "kiosk list shows the kiosk's wrong PINs of the hour and until when",
           f"{listed} {r!r}")
        r = ctl("kiosk", "children", kid)
        r2 = ctl("kiosk", "children", kid, json_out=False)
        ok(r.rc == 0 and r.obj["wrong_pins"] == 3 and r.obj["wrong_pins_until"] == until and
           r2.rc == 0 and "3 wrong PINs this hour" in r2.out,
           "kiosk children shows them too", f"{r!r} {r2!r}")

        r = ctl("kiosk", "unlock", kid)
        o = r.obj or {}
        ok(r.rc == 0 and o.get("kiosk", {}).get("id") == kid and o.get("wrong_pins") == 3 and
           o.get("wrong_pins_until") == until and isinstance(o.get("counted_since"), int),
           "kiosk unlock: what it ended (3 wrong PINs, counted until the lock's end)", repr(r))
        s = login([1, 2, 3, 4])
        ok(s.status == 201 and s.json().get("token"),
           "right after kiosk unlock, the child's right PIN logs in (201)",
           f"{s.status} {s.body[:200]!r}")
        screen = request(srv, "GET", "/v1/kiosk/children", headers=bearer(token)).json()
        ok(screen["kiosk"]["locked_until"] is None and kiosks(ctl)[kid]["wrong_pins"] == 0,
           "the kiosk's screen and kiosk list show no lock", f"{screen}")
        r = ctl("kiosk", "unlock", kid)
        ok(r.rc == 0 and r.obj["wrong_pins"] == 0 and r.obj["wrong_pins_until"] is None and
           r.obj["counted_since"] is None,
           "kiosk unlock again: nothing counted, said so", repr(r))

        before = audit_rows(data)
        bad = [ctl("kiosk", "unlock", x) for x in ("0" * 26, "not-an-id", "")]
        ok(all(b.rc == 1 and "not_found" in b.err and b.obj["error"]["code"] == "not_found"
               for b in bad) and "no kiosk 0000" in bad[0].err,
           "kiosk unlock of an unknown or malformed id: 1, not_found", f"{bad}")
        r = ctl("kiosk", "unlock")
        ok(r.rc == 64 and "kiosk unlock KIOSK_ID" in r.err, "kiosk unlock without an id: 64",
           repr(r))
        rows = audit_rows(data)
        unlocks = [(f, t) for a, f, t in rows if a == "kiosk.unlock"]
        ok(rows == before and unlocks == [(None, kid)] * 3,
           "the audit log has kiosk.unlock with the kiosk's id, each time; none for refusals",
           f"{rows}")
        with db(os.path.join(data, "directory.db")) as c:
            details = [d for (d,) in c.execute("SELECT detail FROM audit_log WHERE action = "
                                               "'kiosk.unlock' ORDER BY seq")]
        ok(len(details) == 3 and "not locked" in details[0] and
           details[1].startswith("3 wrong PINs since ") and "not locked" in details[2],
           "each kiosk.unlock records what it ended", f"{details}")

        # The children's own locks stay: 小明's fifth wrong PIN in a row (pin-failures, 5)
        # locks him, over two of the kiosk's hours, each ended by an unlock.
        xm = post_json(srv, f"/v1/families/{fam}/members",
                       {"member_name": "小明", "role": "child", "avatar": "cat"},
                       headers=bearer(mom["token"])).json()["member"]["id"]
        code = request(srv, "POST", "/v1/kiosk/pairing-codes", headers=bearer(token)).json()
        xlink = post_json(srv, f"/v1/families/{fam}/kiosk-links",
                          {"code": code["code"], "member_id": xm, "pin": [2, 2, 2, 2]},
                          headers=bearer(mom["token"])).json()["link"]["id"]
        first = [login([9, 9, 9, 9], xlink).status for _ in range(3)]
        u1 = ctl("kiosk", "unlock", kid)
        second = [login([9, 9, 9, 9], xlink).status for _ in range(2)]
        third = login([5, 6, 7, 8]).status  # 小兰's: the kiosk's third of its new hour, its lock
        u2 = ctl("kiosk", "unlock", kid)
        mine, his = login([1, 2, 3, 4]), login([2, 2, 2, 2], xlink)
        wait = his.header("Retry-After") or ""
        shown = {ch["link_id"]: ch for ch in (ctl("kiosk", "children", kid).obj or {}).get(
            "children", [])}
        ok(first == [403, 403, 429] and second == [403, 429] and third == 429 and
           u1.obj["wrong_pins"] == 3 and u2.obj["wrong_pins"] == 3 and mine.status == 201 and
           his.status == 429 and his.json()["error"]["code"] == "pin_locked" and
           wait.isdigit() and 800 <= int(wait) <= 900 and
           shown.get(xlink, {}).get("locked") is True and
           shown.get(link, {}).get("locked") is False,
           "kiosk unlock leaves a child's own lock: 小兰 logs in, 小明 still waits his "
           "pin-lock-s (429 pin_locked, Retry-After about 900), shown locked by kiosk children",
           f"{first} {second} {third} {u1!r} {u2!r} {mine.status} {his.status} {wait} {shown}")
    finally:
        rc = srv.stop()
    ok(rc == 0, "the server ran beside kiosk unlock and exits cleanly")


def restore_without_owner(server_bin, tmp):
    """A family's mailbox put back as docs/operations.md says, but without its owner: root
    copied it in while the server runs as another user (or, run by someone else, the copy lost
    its write permission). Its requests are 503 storage_read_only while /healthz says 200; the
    log says which file and why, once, and the chown alone brings the family back (the
    operations walk-through: no event said anything, only the 503 lines)."""
    top = os.path.join(tmp, "owner")
    os.mkdir(top)
    data = os.path.join(top, "data")
    binary, as_root = server_bin, os.geteuid() == 0
    if as_root:  # the service's user, as systemd runs it; root restores
        os.chmod(tmp, 0o755)
        os.chmod(top, 0o755)
        os.mkdir(data, 0o700)
        os.chown(data, 65534, 65534)
        binary = os.path.join(top, "jiayin-as-nobody")
        with open(binary, "w") as f:
            f.write("#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups "
                    f"-- {server_bin} \"$@\"\n")
        os.chmod(binary, 0o755)
    srv = Server(binary, data=data)
    try:
        mom = post_json(srv, "/v1/families", {"family_name": "周家", "member_name": "妈妈"})
        fam, token = mom.json()["family"]["id"], mom.json()["token"]
        up = request(srv, "POST", f"/v1/families/{fam}/messages", open(SAMPLE, "rb").read(),
                     headers=bearer(token), timeout=120)
    finally:
        srv.stop()
    live = os.path.join(data, "families", f"{fam}.db")
    copy = os.path.join(top, "copy.db")
    shutil.copyfile(live, copy)
    os.unlink(live)  # the restore: a plain cp of the copy (root's, 0644), not chowned
    shutil.copyfile(copy, live)
    os.chmod(live, 0o644 if as_root else 0o400)
    srv = Server(binary, data=data)
    try:
        answers = [request(srv, "GET", f"/v1/families/{fam}/messages?since=0",
                           headers=bearer(token)) for _ in range(3)]
        health = request(srv, "GET", "/healthz")
        srv.wait_log('"family_unwritable"')
        time.sleep(0.3)
        events = [json.loads(line) for line in srv.log_text().splitlines()
                  if '"family_unwritable"' in line]
        detail = events[0]["detail"] if events else ""
        ok(up.status == 201 and
           [(a.status, a.json().get("error", {}).get("code")) for a in answers] ==
           [(503, "storage_read_only")] * 3 and health.status == 200 and len(events) == 1 and
           f"families/{fam}.db" in detail and
           ("belongs to uid 0 (mode 0644)" if as_root else "(mode 0400)") in detail and
           "chown" in detail,
           "a mailbox put back without its owner: its 503s are said once in the log, with "
           "the file, its owner and what to do", f"{[a.status for a in answers]} "
           f"{health.status} {events} {srv.log_text()[-600:]}")
        if as_root:
            os.chown(live, 65534, 65534)
        else:
            os.chmod(live, 0o600)
        after = request(srv, "GET", f"/v1/families/{fam}/messages?since=0",
                        headers=bearer(token))
        sent = request(srv, "POST", f"/v1/families/{fam}/messages", open(SAMPLE, "rb").read(),
                       headers=bearer(token), timeout=120)
        ok(after.status == 200 and len(after.json()["messages"]) == 1 and sent.status == 201,
           "given to the server's user, the family is served again and takes a new message, "
           "with no restart", f"{after.status} {after.body[:200]!r} {sent.status}")
    finally:
        rc = srv.stop()
    ok(rc == 0, "the server exits cleanly after it")


def audit_rows(data):
    with db(os.path.join(data, "directory.db")) as c:
        return c.execute("SELECT action, family_id, target FROM audit_log WHERE actor = "
                         "'jiayinctl' ORDER BY seq").fetchall()


def main():
    if len(sys.argv) not in (3, 4):
        print("usage: test_jiayinctl.py JIAYINCTL JIAYIN [EIO_PRELOAD]", file=sys.stderr)
        return 2
    ctl_bin, server_bin = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    eio_preload = os.path.abspath(sys.argv[3]) if len(sys.argv) == 4 else None
    tmp = scratch_dir("jiayinctl-")
    data = os.path.join(tmp, "data")
    ctl = Ctl(ctl_bin, data)
    os.chdir(tmp)  # so that a stray relative path would land here, where it is checked
    srv = Server(server_bin, data=data)
    try:
        sid, kid, tablet = schools_and_kiosks(ctl, srv, data)
        fam = family_checks(ctl, srv, server_bin, data, tmp, kid, tablet)
        rows = audit_rows(data)
        actions = [a for a, _, _ in rows]
        want = ["school.add", "kiosk.add", "kiosk.token", "kiosk.add", "kiosk.token",
                "kiosk.add", "kiosk.token", "device.revoke",  # the token that went unseen
                "device.revoke", "kiosk.token", "kiosk.token"]
        want += ["device.revoke"]  # the kiosk story's
        want += ["family.export", "backup.all", "backup.family", "family.delete"]
        ok(actions == want, "the audit log has one row per change, in order, and none for "
           "refusals or reads", f"{actions}")
        by = {a: (f, t) for a, f, t in rows}
        ok(by.get("family.delete") == (fam, fam) and by.get("school.add") == (None, sid) and
           by.get("kiosk.add", (0, ""))[1] in kiosks(ctl),
           "audit rows name the family and the target", f"{rows}")
        bad_input(ctl, data, tmp)
        n = len(audit_rows(data))
        ok(n == len(want) + 1, "bad input added no audit rows (only the 64-byte school)",
           f"{n}")
    finally:
        rc = srv.stop()
    verify_checks(ctl_bin, server_bin, tmp, eio_preload)
    kiosk_unlock_checks(ctl_bin, server_bin, tmp)
    restore_without_owner(server_bin, tmp)
    ok(rc == 0, "the server ran beside jiayinctl and exits cleanly")
    ok(not sanitizer_reports, "no sanitizer reports from any jiayinctl run",
       "\n# ".join(sanitizer_reports)[:4000])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
