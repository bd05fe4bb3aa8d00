#!/usr/bin/env python3
"""test_jiayinctl_files.py — what jiayinctl and jiayin-transcode leave on disk (TAP).

usage: test_jiayinctl_files.py JIAYINCTL JIAYIN JIAYIN_TRANSCODE

A server makes a data directory (its key, a kiosk, families), then stops; on that directory:
a backup never carries the name DEST without the server's key; an export or backup killed
midway leaves nothing under the name asked for, and the next run succeeds; family delete
erases the family's unfinished uploads on every device (kiosks' too, past 512 devices);
errors give their reason; stored and typed bytes are masked on the terminal; the transcoder's
JSON line is JSON for any path, its output is 0600 and its name synced; a family whose mailbox
file is missing is shown and erased. Each check is one the review's findings failed.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server"))
from serverlib import Server, request, scratch_dir  # noqa: E402
from tap import finish, ok, skip  # noqa: E402

SAMPLE = os.path.join(HERE, "..", "data", "sample.wav")
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
SANITIZER_MARKERS = (b"AddressSanitizer", b"LeakSanitizer", b"UndefinedBehaviorSanitizer",
                     b"runtime error:")
sanitizer_reports = []


def new_id():
    return random.choice("0123") + "".join(random.choice(CROCKFORD) for _ in range(25))


class Ctl:
    def __init__(self, binary, data):
        self.binary, self.data = binary, data

    def __call__(self, *args, data=None, json_out=False, stdout=subprocess.PIPE):
        argv = [self.binary, "--data", data or self.data] + (["--json"] if json_out else [])
        p = subprocess.run(argv + list(args), stdout=stdout, stderr=subprocess.PIPE,
                           timeout=300)
        if any(m in p.stderr for m in SANITIZER_MARKERS):
            sanitizer_reports.append(f"{args}: {p.stderr[:2000]!r}")
        p.out = (p.stdout or b"").decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        return p


def post_json(srv, path, obj, token=None):
    headers = [("Content-Type", "application/json")]
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    return request(srv, "POST", path, json.dumps(obj).encode(), headers=headers)


def partials(directory, base):
    return sorted(n for n in os.listdir(directory) if n.startswith(base + ".partial") or
                  n.startswith("." + base + ".partial"))


def writing_fd(pid, directory):
    """A descriptor of pid open on a non-empty file under directory (as it is written)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(directory + "/") and \
                    os.stat(f"/proc/{pid}/fd/{fd}").st_size > 0:
                return fd
        except OSError:
            continue
    return None


def killed_midway(argv, directory, sig):
    """Runs argv, stops it while it writes a file under directory, kills it with sig.
    True when it was caught in the middle (the file still open: not finished)."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = False
    deadline = time.time() + 120
    while p.poll() is None and time.time() < deadline:
        fd = writing_fd(p.pid, directory)
        if fd is None:
            continue
        os.kill(p.pid, signal.SIGSTOP)
        caught = os.path.exists(f"/proc/{p.pid}/fd/{fd}")
        os.kill(p.pid, sig)
        os.kill(p.pid, signal.SIGCONT)
        break
    p.wait()
    return caught and p.returncode == -sig


def fill_family(data, fam, sender, count, size):
    """count messages of size bytes each, written as the store writes them."""
    path = os.path.join(data, "families", f"{fam}.db")
    c = sqlite3.connect(path, timeout=10)
    with c:
        top = c.execute("SELECT coalesce(max(rowid), 0) FROM messages").fetchone()[0]
        for i in range(count):
            row = top + 1 + i
            c.execute("INSERT INTO messages (rowid, id, seq, sender, recipient, created_ms, "
                      "duration_ms, lufs, bytes, waveform, sha256, state) VALUES "
                      "(?, ?, ?, ?, '', ?, 1000, -16, ?, zeroblob(64), zeroblob(32), 1)",
                      (row, new_id(), row, sender, 1700000000000 + i, size))
            c.execute("INSERT INTO audio (message, data) VALUES (?, randomblob(?))",
                      (row, size))
    c.close()


def upload_record(data, device, family, member):
    """An unfinished upload as server/uploads.c records it: DEVICE/ID.info and ID.part."""
    uid = new_id()
    d = os.path.join(data, "uploads", device)
    os.makedirs(d, mode=0o700, exist_ok=True)
    rec = {"v": 1, "id": uid, "device": device, "member": member, "family": family, "to": "",
           "idempotency_key": "", "length": 100000, "offset": 4096,
           "created_ms": int(time.time() * 1000), "updated_ms": int(time.time() * 1000),
           "message_id": ""}
    with open(os.path.join(d, uid + ".info"), "w") as f:
        json.dump(rec, f, separators=(",", ":"))
    with open(os.path.join(d, uid + ".part"), "wb") as f:
        f.write(b"voice" * 800)
    return d, uid


def backups_keep_the_key(ctl, data, tmp):
    """Finding 1: the key is in DEST before DEST has its name, or there is no DEST."""
    d2 = os.path.join(tmp, "nokey")
    subprocess.run(["cp", "-a", data, d2], check=True)
    os.unlink(os.path.join(d2, "secret"))
    bk = os.path.join(tmp, "bk-nokey")
    r = ctl("backup", bk, data=d2)
    ok(r.returncode == 1 and not os.path.exists(bk) and not partials(tmp, "bk-nokey") and
       "secret" in r.err,
       "backup of a data directory that lost its key: refused, no backup left",
       f"rc={r.returncode} exists={os.path.exists(bk)} {r.err[:300]!r} {r.out[:200]!r}")
    # A key file damaged or replaced since the server started (it keeps its key in memory):
    # the restored server would refuse such a backup's key, so there is no such backup.
    for name, key in (("bk-emptykey", b""), ("bk-otherkey", os.urandom(32))):
        with open(os.path.join(d2, "secret"), "wb") as f:
            f.write(key)
        bk = os.path.join(tmp, name)
        r = ctl("backup", bk, data=d2)
        ok(r.returncode == 1 and not os.path.exists(bk) and not partials(tmp, name) and
           "secret" in r.err and "storage_corrupt" in r.err,
           f"backup whose key is not the directory's ({len(key)} bytes): refused, no backup",
           f"rc={r.returncode} exists={os.path.exists(bk)} {r.err[:300]!r} {r.out[:200]!r}")
    os.unlink(os.path.join(d2, "secret"))
    os.mkdir(os.path.join(d2, "secret"))
    bk = os.path.join(tmp, "bk-keydir")
    r = ctl("backup", bk, data=d2)
    ok(r.returncode == 1 and not os.path.exists(bk) and not partials(tmp, "bk-keydir"),
       "backup whose key cannot be copied: fails and leaves no DEST without the key",
       f"rc={r.returncode} exists={os.path.exists(bk)} {r.err[:300]!r}")
    # A directory that never had a key (no fingerprint): backed up, and said so.
    os.rmdir(os.path.join(d2, "secret"))
    with sqlite3.connect(os.path.join(d2, "directory.db")) as c:
        c.execute("DELETE FROM meta WHERE name = 'server_key_fingerprint'")
    bk = os.path.join(tmp, "bk-never")
    r = ctl("backup", bk, data=d2)
    ok(r.returncode == 0 and not os.path.exists(os.path.join(bk, "secret")) and
       "the server's key" not in r.out and "no server key" in r.out,
       "a directory that never had a key: backed up, and the message does not claim one",
       f"rc={r.returncode} {r.out[:300]!r} {r.err[:300]!r}")
    bk = os.path.join(tmp, "bk-full") + "/"  # a trailing slash names the same directory
    r = ctl("backup", bk)
    key = os.path.join(bk, "secret")
    same = os.path.exists(key) and \
        open(key, "rb").read() == open(os.path.join(data, "secret"), "rb").read()
    ok(r.returncode == 0 and same and stat.S_IMODE(os.stat(key).st_mode) == 0o600 and
       "the server's key" in r.out,
       "backup DEST/: made, with the key (0600)", f"rc={r.returncode} {r.err[:300]!r}")


def interrupted_writes(ctl, data, tmp, fam):
    """Finding 2: killed midway, nothing under the name asked for; the next run succeeds."""
    out = os.path.join(tmp, "exports")
    os.mkdir(out)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        zpath = os.path.join(out, f"wang-{sig.name}.zip")
        argv = [ctl.binary, "--data", data, "family", "export", fam, zpath]
        caught = killed_midway(argv, out, sig)
        left = [n for n in os.listdir(out) if n.startswith(f"wang-{sig.name}")]
        ok(caught and left == [],
           f"family export killed midway ({sig.name}): no file left under its name",
           f"caught={caught} left={left}")
        r = ctl("family", "export", fam, zpath)
        ok(r.returncode == 0 and os.path.getsize(zpath) > 40 << 20 and
           stat.S_IMODE(os.stat(zpath).st_mode) == 0o600,
           f"the export run again ({sig.name}) succeeds, mode 0600",
           f"rc={r.returncode} {r.err[:300]!r}")
        os.unlink(zpath)
    ok(sorted(os.listdir(out)) == [], "no hidden leftovers of the exports",
       f"{os.listdir(out)}")

    one = os.path.join(out, "wang.db")
    argv = [ctl.binary, "--data", data, "backup-family", fam, one]
    caught = killed_midway(argv, out, signal.SIGKILL)
    ok(caught and not os.path.exists(one),
       "backup-family killed midway: no file under its name",
       f"caught={caught} {os.listdir(out)}")
    r = ctl("backup-family", fam, one)
    ok(r.returncode == 0 and os.listdir(out) == ["wang.db"],
       "backup-family run again succeeds, and removes the dead run's hidden copy",
       f"rc={r.returncode} {r.err[:300]!r} {os.listdir(out)}")

    bk = os.path.join(out, "full")
    argv = [ctl.binary, "--data", data, "backup", bk]
    caught = killed_midway(argv, out, signal.SIGINT)
    ok(caught and not os.path.exists(bk), "backup killed midway: no DEST",
       f"caught={caught} {os.listdir(out)}")
    r = ctl("backup", bk)
    ok(r.returncode == 0 and os.path.exists(os.path.join(bk, "secret")) and
       partials(out, "full") == [],
       "backup run again succeeds and removes the dead run's DEST.partial-PID",
       f"rc={r.returncode} {r.err[:300]!r} {os.listdir(out)}")


def delete_erases_uploads(ctl, data, victim, parent, other, other_parent, kiosk_device):
    """Finding 3: every upload naming the family goes, on any device; others' stay."""
    with sqlite3.connect(os.path.join(data, "directory.db")) as c:
        devices = []
        for i in range(601):
            dev = new_id()
            c.execute("INSERT INTO devices (id, token_hash, kind, member_id, name, created_ms) "
                      "VALUES (?, randomblob(32), 'personal', ?, ?, 1700000000000)",
                      (dev, parent, f"phone {i}"))
            devices.append(dev)
    dirs = [upload_record(data, dev, victim, parent)[0] for dev in devices]
    kdir, mine = upload_record(data, kiosk_device, victim, parent)
    _, theirs = upload_record(data, kiosk_device, other, other_parent)
    r = ctl("family", "delete", victim, "--yes")
    left = [d for d in dirs if os.path.exists(d)]
    ok(r.returncode == 0 and left == [],
       "family delete with 601 devices: every phone's unfinished upload is erased",
       f"rc={r.returncode} {len(left)} left {r.err[:300]!r}")
    names = sorted(os.listdir(kdir)) if os.path.isdir(kdir) else []
    ok(not any(n.startswith(mine) for n in names),
       "its child's unfinished recording at the kiosk is erased", f"{names}")
    ok(theirs + ".info" in names and theirs + ".part" in names,
       "another family's recording at the same kiosk stays", f"{names}")


def reasons_and_masks(ctl, data, tmp, fam, sid):
    """Finding 4 (a, b, c, e)."""
    r = ctl("backup-family", fam, os.path.join(tmp, "nodir", "x.db"))
    ok(r.returncode == 1 and "No such file or directory" in r.err,
       "backup-family into a missing directory says why", r.err[:300])
    r = ctl("backup-family", fam, os.path.join(tmp, "fresh") + "/")
    ok(r.returncode == 1 and "names a directory" in r.err and
       not os.path.exists(os.path.join(tmp, "fresh")),
       "backup-family DIR/ says it names a directory", r.err[:300])
    r = ctl("backup", os.path.join(tmp, "nodir", "bk"))
    ok(r.returncode == 1 and "No such file or directory" in r.err,
       "backup into a missing directory says why", r.err[:300])
    with open("/dev/full", "wb") as full:
        r = ctl("kiosk", "add", sid, "满了", stdout=full)
    ok(r.returncode == 1 and "jiayinctl kiosk token " in r.err and
       "run the command again" not in r.err,
       "kiosk add with its output lost: advises `kiosk token KIOSK_ID`, not a second kiosk",
       r.err[:400])
    ok("No space left on device" in r.err and "temporarily" not in r.err,
       "and says the write's own error, not a stale errno", r.err[:400])
    with open("/dev/full", "wb") as full:
        r = ctl("--help", stdout=full)
    ok(r.returncode == 1 and "No space left on device" in r.err,
       "--help to a full disk: 1 and why", r.err[:300])
    with sqlite3.connect(os.path.join(data, "directory.db")) as c:
        c.execute("UPDATE families SET name = ? WHERE id = ?", ("坏\x1b[2J\x07名", fam))
    r = ctl("family", "delete", fam)
    ok(r.returncode == 64 and b"\x1b" not in r.stderr and b"\x07" not in r.stderr and
       "坏" in r.err, "family delete's refusal masks the stored name's control bytes",
       repr(r.stderr[:300]))
    with sqlite3.connect(os.path.join(data, "directory.db")) as c:
        c.execute("UPDATE families SET name = ? WHERE id = ?", ("坏\u009b2J\u0085名", fam))
    r = ctl("family", "show", fam)
    ok(r.returncode == 0 and "坏" in r.out and "名" in r.out and b"\xc2\x9b" not in r.stdout and
       b"\xc2\x85" not in r.stdout, "family show masks a stored name's C1 controls",
       repr(r.stdout[:300]))
    r = ctl("frob\x1b]0;owned\x07", "x\x1b[2J")
    ok(r.returncode == 64 and b"\x1b" not in r.stderr and b"\x07" not in r.stderr,
       "an unknown command is printed masked", repr(r.stderr[:300]))
    for args in (("family", "show", "\x1b]0;owned\x07"), ("device", "revoke", "x\x1b[2J"),
                 ("kiosk", "children", "k\u009b2J"), ("kiosk", "list", "\x1b[2J")):
        r = ctl(*args)
        ok(r.returncode == 1 and b"\x1b" not in r.stderr and b"\x07" not in r.stderr and
           b"\xc2\x9b" not in r.stderr and "?" in r.err,
           f"a typed id in {args[0]} {args[1]}'s message is printed masked",
           repr(r.stderr[:300]))


def closed_pipe(ctl, data, kid):
    """A pipe whose reader is gone (`jiayinctl kiosk token K | true`): the token is revoked
    and the exit status is 1, where SIGPIPE killed the tool with the token valid and unseen."""
    def token_into_closed_pipe(name):
        rd, wr = os.pipe()
        os.close(rd)
        try:
            r = ctl("kiosk", "token", kid, name, stdout=wr)
        finally:
            os.close(wr)
        kiosks = json.loads(ctl("kiosk", "list", json_out=True).out)["kiosks"]
        return r, [d for k in kiosks for d in k["devices"] if d["name"] == name]

    r, devs = token_into_closed_pipe("管道")
    ok(r.returncode == 1 and "revoked again" in r.err and "Broken pipe" in r.err and
       len(devs) == 1 and devs[0]["revoked"] is True,
       "kiosk token into a pipe nobody reads: revoked, 1 and why",
       f"rc={r.returncode} {r.err[:300]!r} {devs}")
    # and when the revocation fails too (here a trigger refuses it, as a busy or full disk
    # would), the operator is told the token still works and how to retire it, where the
    # message said "revoked again"
    with sqlite3.connect(os.path.join(data, "directory.db")) as c:
        c.execute("CREATE TRIGGER no_revoke BEFORE UPDATE OF revoked_ms ON devices "
                  "BEGIN SELECT RAISE(ABORT, 'held'); END")
    try:
        r, devs = token_into_closed_pipe("管道二")
    finally:
        with sqlite3.connect(os.path.join(data, "directory.db")) as c:
            c.execute("DROP TRIGGER no_revoke")
    ok(r.returncode == 1 and "revoked again" not in r.err and "still works" in r.err and
       len(devs) == 1 and f"jiayinctl device revoke {devs[0]['id']}" in r.err and
       devs[0]["revoked"] is False,
       "a token neither shown nor revoked: 1, says it still works and how to revoke it",
       f"rc={r.returncode} {r.err[:300]!r} {devs}")
    if devs:
        ctl("device", "revoke", devs[0]["id"])


def transcoder(binary, tmp):
    """Finding 4 (d): the JSON line is JSON for a path that is not UTF-8; the file 0600."""
    d = os.path.join(tmp, "tc").encode()
    os.mkdir(d)
    out = os.path.join(d, b"\xff\xfe-\xe5\xae.ogg")
    old = os.umask(0o022)
    try:
        p = subprocess.run([binary, SAMPLE.encode(), out], capture_output=True, timeout=300)
    finally:
        os.umask(old)
    try:
        line = json.loads(p.stdout.decode("utf-8"))
    except ValueError as e:
        line = {"error": repr(e)}
    ok(p.returncode == 0 and line.get("output", "").endswith(".ogg") and
       "\ufffd" in line.get("output", ""),
       "a non-UTF-8 OUT path: the line is valid JSON, bad bytes as U+FFFD",
       f"{p.returncode} {p.stdout[:200]!r}")
    ok(os.path.exists(out) and stat.S_IMODE(os.stat(out).st_mode) == 0o600,
       "the voice file is 0600 whatever the umask",
       oct(os.stat(out).st_mode) if os.path.exists(out) else "missing")
    synced_name(binary, tmp)


def synced_name(binary, tmp):
    """OUT's new name is synced (its directory fsync'ed after the rename) before the tool says
    0: a power loss after a success must not take OUT away (the file alone was synced)."""
    name = "the transcoder syncs OUT's directory after the rename"
    if not shutil.which("strace"):
        skip(name, "strace is not installed")
        return
    d = os.path.join(tmp, "tc-sync")
    os.mkdir(d)
    out, log = os.path.join(d, "out.ogg"), os.path.join(tmp, "tc-sync.strace")
    env = dict(os.environ)  # LeakSanitizer cannot run under ptrace: it would abort at exit
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    p = subprocess.run(["strace", "-f", "-o", log, "-e", "trace=openat,fsync,rename,renameat,"
                        "renameat2", binary, SAMPLE, out], capture_output=True, timeout=300,
                       env=env)
    with open(log, errors="replace") as f:
        calls = [line.split(None, 1)[-1].strip() for line in f]  # the pid cut off
    after = next((calls[i + 1:] for i, c in enumerate(calls)
                  if c.startswith("rename") and f'"{out}"' in c and c.endswith("= 0")), [])
    dir_fds = {c.rsplit("= ", 1)[-1] for c in after
               if c.startswith("openat") and f'"{d}"' in c and "O_DIRECTORY" in c}
    ok(p.returncode == 0 and any(c.startswith(f"fsync({fd})") and c.endswith("= 0")
                                 for c in after for fd in dir_fds),
       name, f"exit {p.returncode}; the calls after the rename: {after}")


def mailbox_missing(ctl, data, fam):
    """A family whose mailbox file is missing (an older directory.db restored beside newer
    families/) can be seen and erased (the review: show and delete both said no family)."""
    aside = os.path.join(data, "quarantine", fam + ".1795000000.db")  # as a damaged one is
    os.rename(os.path.join(data, "families", fam + ".db"), aside)
    for suffix in ("-wal", "-shm"):
        p = os.path.join(data, "families", fam + ".db" + suffix)
        if os.path.exists(p):
            os.unlink(p)
    shown = ctl("family", "show", fam)
    js = ctl("family", "show", fam, json_out=True)
    fam_js = json.loads(js.out)["family"] if js.returncode == 0 else {}
    ok(shown.returncode == 0 and "mailbox file" in shown.out and "missing" in shown.out and
       "set aside in quarantine/" in shown.out and
       fam_js.get("mailbox_missing") is True and fam_js.get("usage_bytes") == 0,
       "family show of a family whose mailbox file is missing: shown, and said",
       f"{shown.returncode} {shown.out[-200:]!r} {shown.err[-200:]!r}")
    # A backup goes on without its mailbox, keeps its rows and says so (the review: it erased
    # them from the copy as an erased family's, and a restore lost the family for good).
    dest = os.path.join(data, "..", "backup-damaged")
    b = ctl("backup", dest)
    bj = ctl("backup", dest + "-json", json_out=True)
    res = json.loads(bj.out) if bj.returncode == 0 else {}
    with sqlite3.connect(os.path.join(dest, "directory.db")) as c:
        rows = c.execute("SELECT count(*) FROM families WHERE id = ?", (fam,)).fetchone()[0]
        members = c.execute("SELECT count(*) FROM members WHERE family_id = ?",
                            (fam,)).fetchone()[0]
    ok(b.returncode == 0 and f"family {fam} has a damaged mailbox" in b.err and
       rows == 1 and members >= 1 and
       not os.path.exists(os.path.join(dest, "families", fam + ".db")) and
       res.get("damaged") == [fam],
       "backup of a family whose mailbox is set aside: done, its rows kept, its id said "
       "(stderr, and \"damaged\" in --json)", f"{b.returncode} {b.err[-300:]!r} {bj.out!r}")
    # Nothing to export or copy: said as it is (the review: "a database file is damaged and
    # was set aside", of a file that was neither), and no file made.
    zpath, one = os.path.join(data, "..", "nomailbox.zip"), os.path.join(data, "..", "nm.db")
    ex, bf = ctl("family", "export", fam, zpath), ctl("backup-family", fam, one)
    ok(all(r.returncode == 1 and "no mailbox file" in r.err and "missing" in r.err and
           "quarantine/" in r.err and "was set aside (" not in r.err for r in (ex, bf)) and
       not os.path.exists(zpath) and not os.path.exists(one),
       "family export and backup-family of it: 1, the file said missing, nothing made",
       f"{ex.returncode} {ex.err[-300:]!r} {bf.returncode} {bf.err[-300:]!r}")
    refused = ctl("family", "delete", fam)
    gone = ctl("family", "delete", fam, "--yes")
    after = ctl("family", "show", fam)
    ok(refused.returncode == 64 and "mailbox file is missing" in refused.err and
       gone.returncode == 0 and after.returncode == 1 and "not_found" in after.err and
       not os.path.exists(aside),
       "family delete erases it, its damaged copy in quarantine/ too (without --yes it says "
       "the file is missing)",
       f"{refused.err[-200:]!r} {gone.returncode} {gone.err[-200:]!r}")


def malformed_ids(ctl, data, tmp, fam, sender):
    """A tampered mailbox: one message's id is a path, which the storage never writes. verify
    names its row as a problem (exit 1, storage_corrupt) and checks the other voices; export
    says which row it left out and names no file after it (the review: both skipped the row
    without a word)."""
    path = os.path.join(data, "families", f"{fam}.db")
    c = sqlite3.connect(path, timeout=10)
    with c:
        top = c.execute("SELECT coalesce(max(rowid), 0) FROM messages").fetchone()[0]
        for row, mid in ((top + 1, "../../x\"y"), (top + 2, new_id())):
            voice = os.urandom(3000)
            c.execute("INSERT INTO messages (rowid, id, seq, sender, recipient, created_ms, "
                      "duration_ms, lufs, bytes, waveform, sha256, state) VALUES "
                      "(?, ?, ?, ?, '', 1700000000000, 1000, -16, ?, zeroblob(64), ?, 1)",
                      (row, mid, row, sender, len(voice), hashlib.sha256(voice).digest()))
            c.execute("INSERT INTO audio (message, data) VALUES (?, ?)", (row, voice))
    c.close()
    bad = top + 1
    r = ctl("verify", fam, json_out=True)
    res = json.loads(r.out) if r.out.strip() else {}
    per = (res.get("families") or [{}])[0]
    ok(r.returncode == 1 and per.get("malformed") == [bad] and res.get("malformed") == 1 and
       per.get("messages") == top + 1 and per.get("damaged") == [] and
       res.get("error", {}).get("code") == "storage_corrupt",
       "verify of a mailbox holding a malformed message id: exit 1, the row named, the other "
       "voices checked", f"{r.returncode} {r.out[-400:]!r}")
    r = ctl("verify", fam)
    ok(r.returncode == 1 and f"message row {bad}: its id is malformed" in r.out and
       "1 MALFORMED" in r.out and "1 message row with a malformed id" in r.err and
       "storage_corrupt" in r.err,
       "verify's text names the row too", f"{r.returncode} {r.out[-400:]!r} {r.err[-300:]!r}")
    zpath = os.path.join(tmp, "malformed.zip")
    r = ctl("family", "export", fam, zpath, json_out=True)
    res = json.loads(r.out) if r.out.strip() else {}
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        index = json.loads(z.read("index.json"))
    ok(r.returncode == 0 and res.get("left_out_rows") == [bad] and
       not any(c in n for n in names for c in ('"', "/", "..")) and
       len(index["messages"]) == top + 1 and len(names) == top + 2,
       "export leaves the row out of the zip, names no file after its id, and says which row "
       "(--json left_out_rows)", f"{r.returncode} {r.out[-300:]!r} {names}")
    os.unlink(zpath)
    r = ctl("family", "export", fam, zpath)
    ok(r.returncode == 0 and "LEFT OUT 1 message row whose id is malformed" in r.out and
       r.out.rstrip().endswith(f"row {bad}"),
       "export's text says which row it left out", f"{r.returncode} {r.out[-300:]!r}")
    os.unlink(zpath)


def damage(path):
    """Every b-tree page's header after the first overwritten: the opening's quick_check fails."""
    with open(path, "r+b") as f:
        size = os.path.getsize(path)
        for page in range(1, size // 4096):
            f.seek(page * 4096)
            f.write(b"\xff" * 8)


def mailbox_damaged(ctl, data, fam):
    """A family whose mailbox is damaged: family show shows the family and says so, and leaves
    the file where it is (a look changes nothing on disk: the server sets it aside as it next
    opens it); family delete erases it on the first run (the review: both failed "the family
    could not be read", storage_corrupt, on the first run, and only a second run showed or
    erased the family)."""
    live = os.path.join(data, "families", fam + ".db")
    damage(live)
    with open(live, "rb") as f:
        damaged = f.read()
    shown = ctl("family", "show", fam)
    js = ctl("family", "show", fam, json_out=True)
    fam_js = json.loads(js.out).get("family", {}) if js.out.strip() else {}
    aside = [n for n in os.listdir(os.path.join(data, "quarantine")) if n.startswith(fam)]
    same = os.path.exists(live) and open(live, "rb").read() == damaged
    ok(shown.returncode == 0 and "is damaged, left where it is" in shown.out and
       "usage      not counted" in shown.out and "妈妈" in shown.out and same and not aside,
       "family show of a family whose mailbox is damaged: shown (members, phones), the "
       "damage said, the file left as it is", f"{shown.returncode} {shown.out[-300:]!r} "
       f"{shown.err[-300:]!r} {aside}")
    ok(js.returncode == 0 and fam_js.get("mailbox_damaged") is True and
       fam_js.get("usage_bytes", 0) is None and "mailbox_missing" not in fam_js,
       "family show --json of it: mailbox_damaged, usage_bytes null",
       f"{js.returncode} {js.out[-300:]!r}")
    gone = ctl("family", "delete", fam, "--yes")
    after = ctl("family", "show", fam)
    left = [n for n in os.listdir(os.path.join(data, "quarantine")) if n.startswith(fam)]
    ok(gone.returncode == 0 and after.returncode == 1 and "not_found" in after.err and
       not os.path.exists(live) and left == [],
       "family delete --yes of it erases it on the first run, its damaged copy too",
       f"{gone.returncode} {gone.err[-300:]!r} {left}")


def older_directory(ctl, data):
    """A directory.db of an older version (the new jiayinctl installed while the old server
    still runs): refused, untouched (the review: it migrated the data away under the running
    server, which could then not start again)."""
    path = os.path.join(data, "directory.db")
    db = sqlite3.connect(path)
    now = db.execute("PRAGMA user_version").fetchone()[0]
    db.execute(f"PRAGMA user_version = {now - 1}")
    db.commit()
    r = ctl("school", "list")
    # The same refusal of a backup taken before an upgrade (verify may check a backup's copy):
    # "start this version's server on it first" alone had the operator upgrade the backup the
    # older version was to go back with (the operations walk-through).
    v = ctl("verify")
    after = db.execute("PRAGMA user_version").fetchone()[0]
    db.execute(f"PRAGMA user_version = {now}")  # as it was: nothing else changed
    db.commit()
    db.close()
    ok(r.returncode == 1 and "storage_schema_old" in r.err and "server on it first" in r.err
       and after == now - 1,
       "jiayinctl refuses a data directory of an older version, saying why, and changes "
       "nothing", f"{r.returncode} {r.err[-200:]!r} {after}")
    ok(v.returncode == 1 and "storage_schema_old" in v.err and
       "A backup: use the jiayinctl of the version that made it" in v.err and
       "could no longer restore it" in v.err,
       "verify of a backup of an older version: told not to start a server on it, which "
       "would upgrade it for good", f"{v.returncode} {v.err[-400:]!r}")


def main():
    if len(sys.argv) != 4:
        print("usage: test_jiayinctl_files.py JIAYINCTL JIAYIN JIAYIN_TRANSCODE",
              file=sys.stderr)
        return 2
    ctl_bin, server_bin, tc_bin = (os.path.abspath(a) for a in sys.argv[1:])
    tmp = scratch_dir("jiayinctl-files-")
    data = os.path.join(tmp, "data")
    ctl = Ctl(ctl_bin, data)
    os.chdir(tmp)
    srv = Server(server_bin, data=data)
    try:
        fams = []
        for name in ("王家", "李家", "张家", "赵家", "孙家"):
            r = post_json(srv, "/v1/families", {"family_name": name, "member_name": "妈妈"})
            fams.append(r.json())
        sid = json.loads(ctl("school", "add", "希望小学", json_out=True).out)["school"]["id"]
        k = json.loads(ctl("kiosk", "add", sid, "宿舍平板", json_out=True).out)
    finally:
        srv.stop()
    big, victim, other = (f["family"]["id"] for f in fams[:3])
    parent = fams[1]["member"]["id"]
    fill_family(data, big, fams[0]["member"]["id"], 24, 2 << 20)  # a 48 MB export

    backups_keep_the_key(ctl, data, tmp)
    interrupted_writes(ctl, data, tmp, big)
    delete_erases_uploads(ctl, data, victim, parent, other, fams[2]["member"]["id"],
                          k["device"]["id"])
    reasons_and_masks(ctl, data, tmp, big, sid)
    closed_pipe(ctl, data, k["kiosk"]["id"])
    malformed_ids(ctl, data, tmp, other, fams[2]["member"]["id"])
    mailbox_missing(ctl, data, fams[3]["family"]["id"])
    mailbox_damaged(ctl, data, fams[4]["family"]["id"])
    older_directory(ctl, data)
    transcoder(tc_bin, tmp)
    ok(not sanitizer_reports, "no sanitizer reports", "\n# ".join(sanitizer_reports)[:4000])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
