#!/usr/bin/env python3
"""test_school_day.py — a school day of six families at one kiosk, checked against a model (TAP).

usage: test_school_day.py JIAYIN_BINARY JIAYINCTL_BINARY [SEED]

Six families (one or two parents, each with a phone, the second paired with a code; one or two
children, each paired to the school's kiosk with picture PINs) and one kiosk with two tablets.
Each round, the parents' phones and the children at the tablets act at once (a thread pool):
parents send clips (some to one member, some with an Idempotency-Key sent again, at once or
after), mark them heard, delete one now and then; children log in (a wrong PIN first now and
then), list, hear, mark, reply, and log out or are replaced by the next child. A model in
Python records what each 201, 200 and 204 acknowledged. After each round, with the server at
rest, every member's lists are held to it: each message once, with its sender, recipient and
receipts, the deleted ones gone, `since=N` consistent with the full list, nobody reaching
another family, ended sessions 401, the same audio bytes for everyone who hears a message.
The plan is drawn from SEED (printed; random when not given), so a failure can be replayed:
the server's timing is not, so a race it lost may need a few runs.
"""
import concurrent.futures
import hashlib
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # test_kiosk's and apiclient's helpers are imported
from apiclient import pair, sine_wav, signup  # noqa: E402
from serverlib import Server, request  # noqa: E402
from tap import finish, ok  # noqa: E402
from test_kiosk import call, ctl, find  # noqa: E402

FAMILIES = 6
ROUNDS = 12
PIN_FAILURES = 5  # passed to the server: a wrong PIN's attempts_left is this less the wrongs


class Member:
    def __init__(self, fam, mid, name, role):
        self.fam, self.id, self.name, self.role = fam, mid, name, role
        self.token = None  # a parent's phone
        self.link = self.pin = None  # a child's kiosk link and pictures
        self.wrongs = 0  # a child's wrong PINs since its last login
        self.seen = None  # (seq, {id: message}) of its last full list, for since=N


class Msg:
    def __init__(self, fam, mid, sender, to, key=None):
        self.fam, self.id, self.sender, self.to, self.key = fam, mid, sender, to, key
        self.deleted = False
        self.heard = set()
        self.audio = None  # SHA-256 of the first audio fetched


class Family:
    def __init__(self, fid, name):
        self.id, self.name = fid, name
        self.parents, self.children, self.msgs = [], [], {}

    def members(self):
        return self.parents + self.children


def sees(msg, member):
    """docs/api.md, Messages: a message to one member is its, its sender's and the grown-ups'."""
    return msg.to is None or member.role != "child" or member.id in (msg.to, msg.sender)


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]


def errcode(r):
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def send(srv, token, fam, clip, to=None, key=None):
    """An upload as an app sends it: again after 503 busy (before the body, nothing stored)."""
    hdrs = [("Authorization", f"Bearer {token}")] + ([("Idempotency-Key", key)] if key else [])
    path = f"/v1/families/{fam}/messages" + (f"?to={to}" if to else "")
    for _ in range(60):
        r = request(srv, "POST", path, clip, headers=hdrs, timeout=120)
        if r is None or r.status != 503 or errcode(r) != "busy":
            return r
        time.sleep(float(r.header("Retry-After") or 1))
    return r


def list_full(srv, token, fam, since=0):
    """Every change after since, page after page: (status, messages in order, last seq, ids
    listed twice in one page). A message that changed between two pages is on both."""
    out, twice = [], []
    while True:
        r = call(srv, "GET", f"/v1/families/{fam}/messages?since={since}", token)
        if r is None or r.status != 200:
            return (r.status if r else None), out, since, twice
        j = r.json()
        ids = [m["id"] for m in j["messages"]]
        twice += sorted({i for i in ids if ids.count(i) > 1})
        out += j["messages"]
        if not j["messages"] or j["seq"] <= since:
            return 200, out, j["seq"], twice
        since = j["seq"]


class Day:
    def __init__(self, binary, jiayinctl, seed):
        self.rng = random.Random(seed)
        self.jiayinctl = jiayinctl
        self.srv = Server(binary, "--pin-failures", str(PIN_FAILURES))
        self.fams = []
        self.tablets = []  # device tokens
        self.at_tablet = []  # per tablet: (child, session token) or None
        self.ended = []  # (child, session token, why) that must be 401
        self.clips = [sine_wav(os.path.join(self.srv.tmp, f"{i}.wav"), 220 + 70 * i,
                               0.6 + 0.15 * (i % 5)) for i in range(8)]

    # --- the morning: families, phones, the kiosk and its children ---

    def setup(self):
        srv, rng = self.srv, self.rng
        school = find(ctl(self.jiayinctl, srv.data, "school", "add", "希望小学"), "id")
        kiosk = ctl(self.jiayinctl, srv.data, "kiosk", "add", school, "宿舍平板")
        kid = find(kiosk, "kiosk")["id"]
        self.tablets = [find(kiosk, "token"),
                        find(ctl(self.jiayinctl, srv.data, "kiosk", "token", kid, "二号平板"),
                             "token")]
        self.at_tablet = [None, None]
        problems = []
        for f in range(FAMILIES):
            first = signup(srv, f"家{f}", f"妈妈{f}")
            fam = Family(first["family"]["id"], f"家{f}")
            mom = Member(fam, first["member"]["id"], f"妈妈{f}", "parent")
            mom.token = first["token"]
            fam.parents.append(mom)
            if rng.random() < 0.6:
                second = pair(srv, first, "parent", f"爸爸{f}")
                dad = Member(fam, second["member"]["id"], f"爸爸{f}", "parent")
                dad.token = second["token"]
                if second["family"]["id"] != fam.id or second["member"]["role"] != "parent":
                    problems.append(f"{dad.name} paired into {second['family']}")
                fam.parents.append(dad)
            for c in range(rng.choice((1, 2))):
                name = f"孩{f}{c}"
                by = rng.choice(fam.parents)
                r = call(srv, "POST", f"/v1/families/{fam.id}/members", by.token,
                         {"member_name": name, "role": "child", "avatar": f"a{c}"})
                child = Member(fam, r.json()["member"]["id"], name, "child")
                child.pin = [rng.randrange(12) for _ in range(4)]
                code = call(srv, "POST", "/v1/kiosk/pairing-codes",
                            rng.choice(self.tablets)).json()["code"]
                r = call(srv, "POST", f"/v1/families/{fam.id}/kiosk-links", by.token,
                         {"code": code, "member_id": child.id, "pin": child.pin})
                link = r.json().get("link", {}) if r.status == 201 else {}
                if (link.get("member_id") != child.id or link.get("pin_set") is not True or
                        link.get("pin_set_by") != by.id):
                    problems.append(f"{name}'s link: {r.status} {r.body[:200]!r}")
                child.link = link.get("id")
                fam.children.append(child)
            self.fams.append(fam)
        ok(not problems, f"{FAMILIES} families sign up, pair their second parents' phones and "
           "their children to the kiosk, each link in its chooser's name", problems)
        want = sorted((c.link, c.name) for f in self.fams for c in f.children)
        screens = [call(srv, "GET", "/v1/kiosk/children", t).json()["children"]
                   for t in self.tablets]
        got = [sorted((c["id"], c["name"]) for c in screen) for screen in screens]
        ok(got == [want, want] and all(set(c) == {"id", "name", "avatar", "pin_set",
                                                  "locked_until"}
                                       for screen in screens for c in screen),
           f"either tablet lists all {len(want)} children by name, no family or member id",
           f"{got} != {want}")

    # --- what each party does in a round (on the pool; results go back to the model after) ---

    def parent_acts(self, p, rng, doomed, others):
        fam, srv, log = p.fam, self.srv, []
        for n in range(rng.choice((0, 1, 1, 2))):
            clip = rng.choice(self.clips)
            to = rng.choice([None, None, None] + [m.id for m in fam.members() if m is not p])
            key = f"clip {rng.getrandbits(64):016x}" if rng.random() < 0.5 else None
            if key and rng.random() < 0.3:
                # the same key twice at once (a retry racing the first try): one message
                with concurrent.futures.ThreadPoolExecutor(2) as ex:
                    rs = list(ex.map(lambda _: send(srv, p.token, fam.id, clip, to, key), (0, 1)))
                log.append(("sent_twice", p, to, key, rs))
                continue
            r = send(srv, p.token, fam.id, clip, to, key)
            log.append(("sent", p, to, key, r))
            if key and r is not None and r.status == 201:
                log.append(("resent", p, key, r.json()["message"]["id"],
                            send(srv, p.token, fam.id, clip, to, key)))
        heard = [m for m in list(fam.msgs.values()) if not m.deleted and m not in doomed]
        for m in rng.sample(heard, min(len(heard), rng.choice((0, 1, 2)))):
            r = call(srv, "POST", f"/v1/families/{fam.id}/messages/{m.id}/listened", p.token)
            log.append(("heard", p, m, r.status))
        for m in doomed:
            r = call(srv, "DELETE", f"/v1/families/{fam.id}/messages/{m.id}", p.token)
            log.append(("deleted", p, m, r.status))
        if others:
            o = rng.choice(others)
            log.append(("stranger", p, o, self.reach(p, o)))
        return log

    def reach(self, who, msg):
        """What a member's token gets for another family's message: list, audio (through
        either family's path), receipt. All should be 404."""
        srv, tok, mine, theirs = self.srv, who.token, who.fam.id, msg.fam.id
        return [call(srv, "GET", f"/v1/families/{theirs}/messages", tok).status,
                call(srv, "GET", f"/v1/families/{theirs}/messages/{msg.id}/audio", tok).status,
                call(srv, "GET", f"/v1/families/{mine}/messages/{msg.id}/audio", tok).status,
                call(srv, "POST", f"/v1/families/{theirs}/messages/{msg.id}/listened",
                     tok).status]

    def tablet_acts(self, t, children, rng, everyone):
        """Children at tablet t, one after another: each logs in (a wrong PIN first now and
        then), lists, hears, marks, replies, and logs out or stays for the next."""
        srv, log = self.srv, []
        tab = self.tablets[t]
        before = self.at_tablet[t]
        for i, c in enumerate(children):
            if rng.random() < 0.3:
                wrong, i = list(c.pin), rng.randrange(4)
                wrong[i] = (wrong[i] + 1 + rng.randrange(11)) % 12
                r = call(srv, "POST", "/v1/kiosk/sessions", tab, {"child": c.link, "pin": wrong})
                left = r.json()["error"].get("attempts_left") if r.status == 403 else None
                log.append(("wrong_pin", c, r.status, errcode(r), left))
                if before:  # the tablet is at its login screen: its session is over already
                    log.append(("replaced", t, before[0], before[1],
                                call(srv, "GET", "/v1/me", before[1]).status))
                    before = None
            r = call(srv, "POST", "/v1/kiosk/sessions", tab, {"child": c.link, "pin": c.pin})
            j = r.json() if r.status == 201 else {}
            log.append(("login", t, c, r.status, j.get("member", {}).get("id"),
                        j.get("family", {}).get("id")))
            if r.status != 201:
                continue
            c.token = tok = j["token"]
            if before:  # whoever was at this tablet is logged out by this login
                log.append(("replaced", t, before[0], before[1],
                            call(srv, "GET", "/v1/me", before[1]).status))
            before = (c, tok)
            st, msgs, _, twice = list_full(srv, tok, c.fam.id)
            log.append(("child_list", c, st, msgs, twice))
            visible = [m["id"] for m in msgs if m.get("state") == "visible"]
            for mid in rng.sample(visible, min(len(visible), rng.choice((1, 2)))):
                a = call(srv, "GET", f"/v1/families/{c.fam.id}/messages/{mid}/audio", tok)
                log.append(("audio", c, mid, a.status, sha(a.body) if a.status == 200 else None))
                if rng.random() < 0.7:
                    h = call(srv, "POST", f"/v1/families/{c.fam.id}/messages/{mid}/listened",
                             tok)
                    log.append(("child_heard", c, mid, h.status))
            if rng.random() < 0.7:
                to = rng.choice([None, None, rng.choice(c.fam.parents).id])
                log.append(("sent", c, to, None,
                            send(srv, tok, c.fam.id, rng.choice(self.clips), to)))
            others = [m for m in everyone if m.fam is not c.fam]
            if others:
                o = rng.choice(others)
                log.append(("stranger", c, o, self.reach(c, o)))
            last = i == len(children) - 1
            how = rng.choice(("stay", "home", "self")) if last else "stay"
            if how != "stay":
                r = call(srv, "DELETE", "/v1/kiosk/session", tab if how == "home" else tok)
                log.append(("logout", t, c, tok, how, r.status,
                            call(srv, "GET", "/v1/me", tok).status))
                before = None
        return log

    # --- the rounds ---

    def play(self, rnd):
        rng = self.rng
        acts = []
        everyone = [m for f in self.fams for m in f.msgs.values()]
        for f in self.fams:
            live = [m for m in f.msgs.values() if not m.deleted]
            doomed = {}
            if live and rng.random() < 0.4:
                doomed[rng.choice(f.parents)] = [rng.choice(live)]
            others = [m for m in everyone if m.fam is not f]
            for p in f.parents:
                acts.append((self.parent_acts, p, random.Random(rng.getrandbits(64)),
                             doomed.get(p, []), others))
        kids = [c for f in self.fams for c in f.children]
        rng.shuffle(kids)
        for t in range(len(self.tablets)):
            n = rng.choice((1, 1, 2))
            chosen, kids = kids[:n], kids[n:]
            acts.append((self.tablet_acts, t, chosen, random.Random(rng.getrandbits(64)),
                         everyone))
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            futures = [ex.submit(fn, *args) for fn, *args in acts]
            logs = [fut.result() for fut in futures]
        return self.apply(rnd, [e for log in logs for e in log])

    def apply(self, rnd, events):
        """The round's answers into the model; the problems answers showed on their own."""
        bad = {"acks": [], "strangers": [], "logins": [], "child_lists": [], "audio": []}
        lists, audio = [], []
        # Sent and deleted first: a receipt or a fetch that raced them is judged by them.
        first = ("sent", "sent_twice", "deleted")
        events = [e for e in events if e[0] in first] + [e for e in events if e[0] not in first]
        for e in events:
            kind = e[0]
            if kind == "sent":
                _, who, to, key, r = e
                if r is None or r.status != 201:
                    bad["acks"].append(f"{who.name} sent: {r and r.status} {r and r.body[:200]}")
                    continue
                m = r.json()["message"]
                if m["sender"] != who.id or m["to"] != to or m["state"] != "visible":
                    bad["acks"].append(f"{who.name}'s 201: {m}")
                who.fam.msgs[m["id"]] = Msg(who.fam, m["id"], who.id, to, key)
            elif kind == "sent_twice":
                _, who, to, key, rs = e
                got = sorted((r.status if r else None) for r in rs)
                ids = {r.json()["message"]["id"] for r in rs if r and r.status in (200, 201)}
                if got != [200, 201] or len(ids) != 1:
                    bad["acks"].append(f"{who.name}'s key {key} sent twice at once: {got} "
                                       f"{ids}")
                for r in rs:
                    if r and r.status == 201:
                        mid = r.json()["message"]["id"]
                        who.fam.msgs[mid] = Msg(who.fam, mid, who.id, to, key)
            elif kind == "resent":
                _, who, key, mid, r = e
                if r is None or r.status != 200 or r.json()["message"]["id"] != mid:
                    bad["acks"].append(f"{who.name}'s key {key} sent again: "
                                       f"{r and r.status} {r and r.body[:200]} (was {mid})")
            elif kind in ("heard", "child_heard"):
                _, who, m, status = e
                m = who.fam.msgs.get(m) if isinstance(m, str) else m
                if status == 200 and m is not None:
                    m.heard.add(who.id)
                elif status != 404 or m is None or not m.deleted:
                    bad["acks"].append(f"{who.name} marked {m and m.id} heard: {status}")
            elif kind == "deleted":
                _, who, m, status = e
                if status == 204:
                    m.deleted = True
                else:
                    bad["acks"].append(f"{who.name} deleted {m.id}: {status}")
            elif kind == "stranger":
                _, who, m, statuses = e
                if statuses != [404] * 4:
                    bad["strangers"].append(f"{who.name} ({who.fam.name}) reached "
                                            f"{m.fam.name}'s {m.id}: {statuses}")
            elif kind == "wrong_pin":
                _, c, status, code, left = e
                c.wrongs += 1
                if status != 403 or code != "wrong_pin" or left != PIN_FAILURES - c.wrongs:
                    bad["logins"].append(f"{c.name}'s wrong PIN: {status} {code} "
                                         f"attempts_left {left}, model {PIN_FAILURES - c.wrongs}")
            elif kind == "login":
                _, t, c, status, member, fam = e
                if status != 201 or member != c.id or fam != c.fam.id:
                    bad["logins"].append(f"{c.name} at tablet {t}: {status} {member} {fam}")
                    continue
                c.wrongs = 0
                for u, held in enumerate(self.at_tablet):
                    # the tablet's session ends, and so does the child's at the other tablet
                    if held and (u == t or held[0] is c):
                        self.ended.append((held[0], held[1], f"{c.name} logged in at {t}"))
                        self.at_tablet[u] = None
                self.at_tablet[t] = (c, c.token)
            elif kind == "replaced":
                _, t, was, tok, status = e
                if status != 401:
                    bad["logins"].append(f"{was.name}'s session at tablet {t}, replaced: "
                                         f"{status}")
            elif kind == "logout":
                _, t, c, tok, how, status, after = e
                if status != 204 or after != 401:
                    bad["logins"].append(f"{c.name} logged out ({how}): {status}, then {after}")
                if self.at_tablet[t] and self.at_tablet[t][1] == tok:
                    self.at_tablet[t] = None
                    self.ended.append((c, tok, f"logged out ({how})"))
            elif kind == "child_list":
                lists.append(e)
            elif kind == "audio":
                audio.append(e)
        # What children saw during the round, against the model now that it has the round:
        # their family's messages only, those they may see, with the right sender.
        for _, c, status, msgs, twice in lists:
            for m in msgs:
                mine = c.fam.msgs.get(m["id"])
                if mine is None or not sees(mine, c) or (
                        m["state"] == "visible" and m["sender"] != mine.sender):
                    bad["child_lists"].append(f"{c.name} listed {m} "
                                              f"({'unknown' if mine is None else 'not theirs'})")
            if status != 200 or twice:
                bad["child_lists"].append(f"{c.name}'s list: {status}, twice in a page: "
                                          f"{twice}")
        for _, c, mid, status, digest in audio:
            m = c.fam.msgs.get(mid)
            if m is None or (status != 200 and not (status == 404 and m.deleted)):
                bad["audio"].append(f"{c.name} fetched {mid}: {status}")
            elif status == 200:
                if m.audio is None:
                    m.audio = digest
                if digest != m.audio:
                    bad["audio"].append(f"{c.name} heard {mid} as {digest}, before {m.audio}")
        return bad

    # --- the checks at rest, after each round ---

    def viewers(self, f):
        """Who lists family f now: its parents' phones, its children logged in at a tablet."""
        out = [(p, p.token) for p in f.parents]
        out += [(c, tok) for c, tok in filter(None, self.at_tablet) if c.fam is f]
        return out

    def check(self, rnd, bad):
        srv = self.srv
        bad.update({"lists": [], "since": [], "receipts": [], "deleted": [], "ended": []})
        for f in self.fams:
            for who, tok in self.viewers(f):
                st, msgs, seq, _ = list_full(srv, tok, f.id)
                if st != 200:
                    bad["lists"].append(f"{who.name} listed: {st}")
                    continue
                got = {}
                for m in msgs:
                    if m["id"] in got:
                        bad["lists"].append(f"{who.name} listed {m['id']} twice")
                    got[m["id"]] = m
                want = {m.id for m in f.msgs.values() if not m.deleted and sees(m, who)}
                shown = {i for i, m in got.items() if m["state"] == "visible"}
                if shown != want:
                    bad["lists"].append(f"{who.name} ({f.name}) lists {len(shown)}, model "
                                        f"{len(want)}: missing {sorted(want - shown)}, "
                                        f"extra {sorted(shown - want)}")
                for i, m in got.items():
                    mine = f.msgs.get(i)
                    if mine is None or not sees(mine, who):
                        bad["lists"].append(f"{who.name} lists {m}, not theirs")
                    elif m["state"] == "deleted":
                        if not mine.deleted:
                            bad["deleted"].append(f"{who.name} lists {i} deleted, model not")
                    elif mine.deleted:
                        bad["deleted"].append(f"{who.name} lists deleted {i} as {m['state']}")
                    elif m["sender"] != mine.sender or m["to"] != mine.to:
                        bad["lists"].append(f"{who.name} lists {i} from {m['sender']} to "
                                            f"{m['to']}; model {mine.sender} to {mine.to}")
                    elif set(m["listened_by"]) != mine.heard or \
                            len(m["listened_by"]) != len(mine.heard):
                        bad["receipts"].append(f"{who.name} lists {i} heard by "
                                               f"{m['listened_by']}; model {sorted(mine.heard)}")
                if who.seen is not None:
                    self.check_since(who, tok, f, got, seq, bad["since"])
                who.seen = (seq, got)
                self.check_audio(who, tok, f, bad)
        for c, tok, why in self.ended:
            st = call(srv, "GET", "/v1/me", tok).status
            ls = call(srv, "GET", f"/v1/families/{c.fam.id}/messages", tok).status
            if (st, ls) != (401, 401):
                bad["ended"].append(f"{c.name}'s session ended ({why}): me {st}, list {ls}")
        for c, tok in filter(None, self.at_tablet):
            me = call(srv, "GET", "/v1/me", tok)
            if me.status != 200 or me.json()["member"]["id"] != c.id:
                bad["ended"].append(f"{c.name}'s open session: {me.status}")
        what = {
            "acks": "every upload, receipt and deletion acknowledged as sent",
            "strangers": "nobody lists, hears or marks another family's message (404)",
            "logins": "logins at both tablets as the model says: wrong PINs' attempts left, "
                      "the replaced or logged-out session 401 at once",
            "child_lists": "a child's lists during the round hold only its family's messages "
                           "it may see, each once, with the right sender",
            "audio": "audio heard during the round is the same bytes for everyone",
            "lists": "every acknowledged message listed exactly once for each member who may "
                     "see it, with its sender and recipient",
            "since": "since=N lists the changes that turn the last round's list into this one",
            "receipts": "each message's listened_by is who marked it",
            "deleted": "deleted messages are gone for everyone (listed deleted, audio 404)",
            "ended": "replaced and ended kiosk sessions are 401, open ones still 200",
        }
        count = {}
        for f in self.fams:
            for m in f.msgs.values():
                count["deleted" if m.deleted else "live"] = count.get(
                    "deleted" if m.deleted else "live", 0) + 1
        print(f"# round {rnd}: {count.get('live', 0)} messages live, {count.get('deleted', 0)} "
              f"deleted, {len(self.ended)} sessions ended, "
              f"{sum(1 for x in self.at_tablet if x)} open", flush=True)
        for k, text in what.items():
            ok(not bad[k], f"round {rnd}: {text}", "\n".join(bad[k][:20]))

    def check_since(self, who, tok, f, got, seq, bad):
        prev_seq, prev = who.seen
        st, changes, since_seq, _ = list_full(self.srv, tok, f.id, prev_seq)
        if st != 200:
            bad.append(f"{who.name} since={prev_seq}: {st}")
            return
        rebuilt = dict(prev)
        for m in changes:
            if m["seq"] <= prev_seq:
                bad.append(f"{who.name} since={prev_seq} lists {m['id']} of seq {m['seq']}")
            rebuilt[m["id"]] = m
        # A full list may leave out a message deleted before it was first listed; since=N
        # lists the deletion of one it had listed.
        if rebuilt != got or since_seq != seq:
            diff = sorted(set(rebuilt) ^ set(got)) + sorted(
                i for i in set(rebuilt) & set(got) if rebuilt[i] != got[i])
            bad.append(f"{who.name} since={prev_seq}: {len(changes)} changes, seq {since_seq}; "
                       f"full seq {seq}; differ in {diff[:5]}")

    def check_audio(self, who, tok, f, bad):
        """Each message this member may see: the same bytes as everyone heard; deleted ones and
        those for a sibling 404."""
        for m in f.msgs.values():
            r = call(self.srv, "GET", f"/v1/families/{f.id}/messages/{m.id}/audio", tok)
            if m.deleted or not sees(m, who):
                if r.status != 404:
                    bad["deleted" if m.deleted else "lists"].append(
                        f"{who.name} fetched {m.id} ({'deleted' if m.deleted else 'not theirs'})"
                        f": {r.status}")
                continue
            if r.status != 200 or r.body[:4] != b"OggS":
                bad["audio"].append(f"{who.name} fetched {m.id}: {r.status} {r.body[:50]}")
                continue
            if m.audio is None:
                m.audio = sha(r.body)
            elif sha(r.body) != m.audio:
                bad["audio"].append(f"{who.name} heard {m.id} as {sha(r.body)}, before {m.audio}")

    def deleted_keys(self):
        """A deleted message's key sent again by its sender: 200, the message as deleted.
        (The keys sent again, the problems.)"""
        problems, sent = [], 0
        for f in self.fams:
            for m in f.msgs.values():
                if m.deleted and m.key:
                    p = next(x for x in f.parents if x.id == m.sender)
                    r = send(self.srv, p.token, f.id, self.clips[0], m.to, m.key)
                    sent += 1
                    j = r.json().get("message", {}) if r is not None and r.status == 200 else {}
                    if j != {"id": m.id, "seq": j.get("seq"), "state": "deleted"}:
                        problems.append(f"{m.key}: {r and r.status} {r and r.body[:200]}")
        return sent, problems


def main():
    binary, jiayinctl = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else random.SystemRandom().getrandbits(32)
    print(f"# seed {seed} (replay: test_school_day.py JIAYIN JIAYINCTL {seed})", flush=True)
    day = Day(binary, jiayinctl, seed)
    try:
        day.setup()
        for rnd in range(1, ROUNDS + 1):
            day.check(rnd, day.play(rnd))
        sent, problems = day.deleted_keys()
        ok(sent and not problems, f"a deleted message's Idempotency-Key sent again ({sent} "
           "keys): 200, the message as deleted, never a second one",
           "\n".join(problems) or "the day deleted no message sent with a key")
    finally:
        rc = day.srv.stop()
    ok(rc == 0, f"the server stops cleanly (exit {rc}; ASan and leaks)",
       day.srv.log_text()[-3000:])
    return finish()


if __name__ == "__main__":
    sys.exit(main())
