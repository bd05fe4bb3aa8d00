#!/usr/bin/env python3
"""test_long_poll.py — long-polls that clients drop, open by the hundred, or wake in a loop (TAP).

usage: test_long_poll.py JIAYIN_BINARY

What docs/api.md promises for a held list (GET .../messages?wait=) beyond its answer: a request
whose client goes away is dropped at once (the review: 400 long-polls closed by their clients
held the connection limit full for their 60 s); a token has at most long-polls-per-device
waiting, and one more answers the oldest at once; a burst of changes wakes a waiter at most once
per 200 ms, and its next answer carries every change; a request pipelined behind a held one is
kept and answered after it.
"""
import os
import select
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # test_api's helpers are imported: no __pycache__ in the tree
from apiclient import metric  # noqa: E402
from serverlib import Reader, Server, request, until  # noqa: E402
from tap import finish, ok  # noqa: E402
from test_api import SAMPLE, bearer, invite_and_pair, signup, upload  # noqa: E402


def poll_head(fam, token, since, wait):
    return (f"GET /v1/families/{fam}/messages?since={since}&wait={wait} HTTP/1.1\r\n"
            f"Host: t\r\nAuthorization: Bearer {token}\r\n\r\n").encode()


def parked(srv, fam, token, since, wait=30):
    """A connection with a long-poll sent, and its reader."""
    s = srv.connect(timeout=10)
    s.sendall(poll_head(fam, token, since, wait))
    return s, Reader(s)


def open_count(srv):
    return metric(srv, "jiayin_connections_open")


def settle(srv, want, seconds):
    """Seconds until jiayin_connections_open is at most want (None if it never is)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        n = open_count(srv)
        if n is not None and n <= want:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def dropped_polls(binary):
    srv = Server(binary, "--long-polls-per-device", "1000")
    try:
        mom = signup(srv, "王家", "妈妈")
        fam, tok = mom["family"]["id"], mom["token"]
        seq = request(srv, "GET", f"/v1/families/{fam}/messages",
                      headers=bearer(tok)).json()["seq"]
        base = open_count(srv)  # the /metrics connection itself
        socks = [parked(srv, fam, tok, seq, 60)[0] for _ in range(40)]
        time.sleep(0.5)  # nothing answers them: all 40 stay open, unanswered
        answered = sum(1 for s in socks if select.select([s], [], [], 0)[0])
        during = open_count(srv)
        for k, s in enumerate(socks):
            if k % 2:  # a reset (a phone's network gone); the others close (nginx for them)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        took = settle(srv, base, 10)
        ok(answered == 0 and during >= base + 40 and took is not None and took < 3,
           "40 long-polls closed by their clients are let go at once, not after their 60 s",
           f"open: {base} before, {during} while held ({answered} answered), back in {took} s")
        m = request(srv, "GET", "/metrics").body.decode()
        ok('jiayin_http_requests_total{route="messages.list",status="499"} 20' in m and
           'jiayin_http_requests_total{route="messages.list",status="200"} 21' in m,
           "the 20 reset are counted (and logged) unanswered, 499; the 20 closed are answered "
           "at once (a client that shut only its side still reads)",
           [x for x in m.splitlines() if "messages.list" in x and "total" in x])
        # still serving, and a new long-poll of the same phone is answered by a change
        s, rd = parked(srv, fam, tok, seq, 20)
        time.sleep(0.3)
        with open(SAMPLE, "rb") as f:
            up = upload(srv, tok, fam, f.read())
        r = rd.response()
        s.close()
        ok(up.status == 201 and r is not None and r.status == 200 and
           up.json()["message"]["id"] in r.body.decode(),
           "the server serves on: a new long-poll hears the next message")
    finally:
        srv.stop()


def share_per_token(binary):
    srv = Server(binary)  # long-polls-per-device: 4
    try:
        mom = signup(srv, "王家", "妈妈")
        kid = invite_and_pair(srv, mom, "child", "小明")
        fam, tok = mom["family"]["id"], mom["token"]
        seq = request(srv, "GET", f"/v1/families/{fam}/messages",
                      headers=bearer(tok)).json()["seq"]
        t0 = time.monotonic()
        polls = []
        for _ in range(4):
            polls.append(parked(srv, fam, tok, seq))
            time.sleep(0.05)  # in order: the first sent is the oldest
        kid_poll = parked(srv, fam, kid["token"], seq)
        fifth = request(srv, "GET", f"/v1/families/{fam}/messages?since={seq}&wait=30",
                        headers=bearer(tok))
        waiting = [select.select([s], [], [], 0.3)[0] == [] for s, _ in polls + [kid_poll]]
        ok(fifth.status == 429 and fifth.json()["error"]["code"] == "too_many_long_polls" and
           fifth.header("Retry-After") == "10" and waiting == [True] * 5,
           "one phone's 5th long-poll while its 4 are young: 429 too_many_long_polls, "
           "Retry-After 10; its 4 and another phone's wait on (no loop of empty answers)",
           f"{fifth.status} {fifth.body[:120]} {waiting}")
        time.sleep(max(0.0, t0 + 10.3 - time.monotonic()))
        polls.append(parked(srv, fam, tok, seq))  # its old connection died behind a NAT
        s, rd = polls.pop(0)
        s.settimeout(5)
        r = rd.response()
        s.close()
        ok(r is not None and r.status == 200 and r.json()["messages"] == [] and
           r.json()["seq"] == seq and select.select([polls[-1][0]], [], [], 0.3)[0] == [],
           "one more after 10 s: its oldest is answered at once (empty, its seq), the new one "
           "waits in its place", f"{r and r.status} {r and r.body[:120]}")
        with open(SAMPLE, "rb") as f:
            up = upload(srv, tok, fam, f.read())
        mid = up.json()["message"]["id"] if up.status == 201 else "?"
        heard = []
        for s, rd in polls + [kid_poll]:
            s.settimeout(10)
            r = rd.response()
            heard.append(r is not None and r.status == 200 and mid in r.body.decode())
            s.close()
        ok(heard == [True] * 5, "the 4 waiting, and the other phone's, hear the next message",
           str(heard))
    finally:
        srv.stop()


def age_kept_when_parked_again(binary):
    """A waiter woken by a change its phone may not see waits on as old as it was: a child's
    phone whose 4 connections died is heard 10 s after they were sent, though the family
    changed meanwhile (mum kept a message of her own), where it was 429 (their age counted
    from that change)."""
    srv = Server(binary)  # long-polls-per-device: 4
    try:
        mom = signup(srv, "王家", "妈妈")
        kid = invite_and_pair(srv, mom, "child", "小明")
        fam, tok = mom["family"]["id"], mom["token"]
        with open(SAMPLE, "rb") as f:
            up = upload(srv, tok, fam, f.read(), to=mom["member"]["id"])
        mid = up.json()["message"]["id"] if up.status == 201 else "?"
        seq = request(srv, "GET", f"/v1/families/{fam}/messages",
                      headers=bearer(kid["token"])).json()["seq"]
        t0 = time.monotonic()
        polls = []
        for _ in range(4):
            polls.append(parked(srv, fam, kid["token"], seq))
            time.sleep(0.05)  # in order: the first sent is the oldest
        time.sleep(5)
        keep = request(srv, "POST", f"/v1/families/{fam}/messages/{mid}/keep",
                       headers=bearer(tok))
        time.sleep(max(0.0, t0 + 10.3 - time.monotonic()))
        polls.append(parked(srv, fam, kid["token"], seq))  # its old connections died
        s, rd = polls.pop(0)
        s.settimeout(5)
        r = rd.response()
        s.close()
        new_waits = select.select([polls[-1][0]], [], [], 0.3)[0] == []
        ok(keep.status == 200 and r is not None and r.status == 200 and
           r.json()["messages"] == [] and new_waits,
           "a child's 5th long-poll 10 s after its 4, the family changed (unseen by it) 5 s "
           "in: its oldest is answered at once, the new one waits in its place",
           f"keep {keep.status}, oldest {r and r.status} {r and r.body[:120]}, "
           f"new one waits: {new_waits}")
    finally:
        for s, _ in polls:
            s.close()
        srv.stop()


def burst_of_changes(binary):
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        dad = invite_and_pair(srv, mom, "parent", "爸爸")
        fam = mom["family"]["id"]
        with open(SAMPLE, "rb") as f:
            msg = upload(srv, mom["token"], fam, f.read()).json()["message"]
        keep = f"/v1/families/{fam}/messages/{msg['id']}/keep"
        stop = threading.Event()
        answers = {0: [], 1: []}

        def listen(k, token):
            """An app polling again the moment it is answered, as a phone does."""
            since = msg["seq"]
            s = srv.connect(timeout=20)
            rd = Reader(s)
            while not stop.is_set():
                s.sendall(poll_head(fam, token, since, 5))
                r = rd.response()
                if r is None or r.status != 200:
                    answers[k].append(None)
                    break
                since = r.json()["seq"]
                answers[k].append(since)
            s.close()
        threads = [threading.Thread(target=listen, args=(k, t))
                   for k, t in ((0, mom["token"]), (1, dad["token"]))]
        for t in threads:
            t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        toggles, last = 0, 0
        while time.monotonic() - t0 < 2.0:
            r = request(srv, "DELETE" if toggles % 2 else "POST", keep, b"",
                        headers=bearer(mom["token"]))
            toggles += 1
            last = max(last, r.json().get("seq", 0)) if r.status == 200 else last
        spent = time.monotonic() - t0
        # past the last 200 ms interval the final change is heard: asked for, where a fixed
        # 0.6 s was a race a loaded machine could lose
        until(lambda: all(answers[k] and answers[k][-1] == last for k in (0, 1)))
        seen = [answers[k][-1] if answers[k] else None for k in (0, 1)]
        stop.set()
        # wake the listeners out of their last wait
        request(srv, "POST", keep, b"", headers=bearer(mom["token"]))
        for t in threads:
            t.join(10)
        # One answer per 200 ms of the loop's clock, which a busy loop reads at the start of
        # its turn: on a loaded machine two answers may come a little closer (this flaked at
        # 13 against 12.9). Without the rule a waiter got about 1,000 in 2 s.
        bound = spent / 0.2 + 4
        counts = [len([a for a in answers[k] if a is not None and a <= last]) for k in (0, 1)]
        ok(toggles >= 20 and all(c <= bound for c in counts),
           f"{toggles} keep/unkeep changes in {spent:.1f} s wake each waiter at most once per "
           f"200 ms ({counts} answers, bound {bound:.0f})", str(answers))
        ok(seen == [last, last], "and each waiter's last answer carries the last change",
           f"last change {last}, heard {seen}")
    finally:
        srv.stop()


def pipelined_behind(binary):
    srv = Server(binary)
    try:
        mom = signup(srv, "王家", "妈妈")
        fam, tok = mom["family"]["id"], mom["token"]
        seq = request(srv, "GET", f"/v1/families/{fam}/messages",
                      headers=bearer(tok)).json()["seq"]
        s = srv.connect(timeout=20)
        s.sendall(poll_head(fam, tok, seq, 20))
        time.sleep(0.3)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")  # read while it waits
        time.sleep(0.3)
        with open(SAMPLE, "rb") as f:
            up = upload(srv, tok, fam, f.read())
        rd = Reader(s)
        first, second = rd.response(), rd.response()
        s.close()
        ok(up.status == 201 and first is not None and first.status == 200 and
           up.json()["message"]["id"] in first.body.decode() and second is not None and
           second.status == 200 and b'"status":"ok"' in second.body,
           "a request pipelined behind a held long-poll is kept and answered after it")
        # a client that shuts its side behind its long-poll may still read: answered at once
        latest = up.json()["message"]["seq"]
        s = srv.connect(timeout=10)
        s.sendall(poll_head(fam, tok, latest, 20))
        time.sleep(0.2)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        t0 = time.monotonic()
        rd = Reader(s)
        r = rd.response()
        took = time.monotonic() - t0
        ok(r is not None and r.status == 200 and r.json()["messages"] == [] and
           r.json()["seq"] == latest and rd.closed(3) and took < 2,
           "a long-poll whose client shuts its side is answered at once (empty), then closed",
           f"{r and r.status} after {took:.1f} s")
        s.close()
        # more pipelined behind it than the server keeps while it waits: answered now
        s = srv.connect(timeout=10)
        s.sendall(poll_head(fam, tok, latest, 20))
        time.sleep(0.2)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 200)  # 7 KB
        s.settimeout(5)
        rd = Reader(s)
        first = rd.response()
        rest = [rd.response() for _ in range(200)]
        s.close()
        ok(first is not None and first.status == 200 and first.json()["messages"] == [] and
           all(x is not None and x.status == 200 for x in rest),
           "7 KB pipelined behind a waiting long-poll: it is answered at once, and the 200 "
           "requests after it", f"{first and first.status}")
    finally:
        srv.stop()


def change_while_listing(binary):
    """A change made while a waiter lists again (woken by an earlier change it may not see)
    wakes it all the same: the waiters of a family list again together, one after the other,
    and those listed before the change committed missed its wake-up and waited out their
    seconds (the review of the long-poll machinery)."""
    srv = Server(binary, "--long-polls-per-device", "1000", "--max-queued-jobs", "1000")
    socks = []
    try:
        mom = signup(srv, "王家", "妈妈")
        kids = [invite_and_pair(srv, mom, "child", name) for name in ("小明", "小红", "小华")]
        fam, tok = mom["family"]["id"], mom["token"]
        with open(SAMPLE, "rb") as f:
            wav = f.read()
        # one for the third child alone (the others may not see it), one for everyone
        hidden = upload(srv, tok, fam, wav, to=kids[2]["member"]["id"]).json()["message"]
        shown = upload(srv, tok, fam, wav).json()["message"]
        seq = request(srv, "GET", f"/v1/families/{fam}/messages",
                      headers=bearer(tok)).json()["seq"]
        # two children's tokens in turn, so that no waiter shares the answer of the one
        # before it (each lists for itself): the batch takes a while
        for i in range(300):
            socks.append(parked(srv, fam, kids[i % 2]["token"], seq, 20))
        time.sleep(1.0)
        waiting = sum(select.select([s], [], [], 0)[0] == [] for s, _ in socks)
        t0 = time.monotonic()
        k1 = request(srv, "POST", f"/v1/families/{fam}/messages/{hidden['id']}/keep",
                     headers=bearer(tok))  # wakes them all, to hear nothing
        k2 = request(srv, "POST", f"/v1/families/{fam}/messages/{shown['id']}/keep",
                     headers=bearer(tok))  # while they list again: the news they wait for
        heard, late = 0, []
        for s, rd in socks:
            s.settimeout(25)
            r = rd.response()
            took = time.monotonic() - t0
            if r is not None and r.status == 200 and shown["id"] in r.body.decode():
                heard += 1
            if took > 5:
                late.append(round(took, 1))
        ok(waiting == 300 and k1.status == 200 and k2.status == 200 and heard == 300 and
           not late, "300 waiters woken by a change they may not see, and listing again when "
           "the next change comes, hear that one at once",
           f"{waiting} waiting, keeps {k1.status} {k2.status}; {heard} heard it, {len(late)} "
           f"after more than 5 s ({late[:5]}...)")
    finally:
        for s, _ in socks:
            s.close()
        srv.stop()


def main():
    dropped_polls(sys.argv[1])
    share_per_token(sys.argv[1])
    age_kept_when_parked_again(sys.argv[1])
    burst_of_changes(sys.argv[1])
    pipelined_behind(sys.argv[1])
    change_while_listing(sys.argv[1])
    sys.exit(finish())


if __name__ == "__main__":
    main()
