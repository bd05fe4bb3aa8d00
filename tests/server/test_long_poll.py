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
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # test_api's helpers are imported: no __pycache__ in the tree
from apiclient import metric  # noqa: E402
from serverlib import Reader, Server, request  # noqa: E402
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
        held = settle(srv, -1, 0.5)  # nothing answers them: all 40 stay open
        during = open_count(srv)
        for s in socks:
            s.close()  # the phones lose their signal (or nginx closes for them)
        took = settle(srv, base, 10)
        ok(held is None and during >= base + 40 and took is not None and took < 3,
           "40 long-polls closed by their clients are dropped at once, not after their 60 s",
           f"open: {base} before, {during} while held, back in {took} s")
        m = request(srv, "GET", "/metrics").body.decode()
        ok('jiayin_http_requests_total{route="messages.list",status="499"} 40' in m,
           "each is counted (and logged) as unanswered: 499",
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
        polls = []
        for _ in range(7):
            polls.append(parked(srv, fam, tok, seq))
            time.sleep(0.05)  # in order: the first sent is the oldest
        kid_poll = parked(srv, fam, kid["token"], seq)
        time.sleep(0.5)
        early = []
        for s, rd in polls[:3]:
            s.settimeout(5)
            r = rd.response()
            early.append(r and r.status == 200 and r.json()["messages"] == [] and
                         r.json()["seq"] == seq)
        waiting = [select.select([s], [], [], 0.3)[0] == [] for s, _ in polls[3:] + [kid_poll]]
        ok(early == [True] * 3 and waiting == [True] * 5,
           "one phone's 7 long-polls: the oldest 3 are answered at once (empty, its seq), the "
           "newest 4 wait; another phone's wait is its own", f"{early} {waiting}")
        with open(SAMPLE, "rb") as f:
            up = upload(srv, tok, fam, f.read())
        mid = up.json()["message"]["id"] if up.status == 201 else "?"
        heard = []
        for s, rd in polls[3:] + [kid_poll]:
            s.settimeout(10)
            r = rd.response()
            heard.append(r is not None and r.status == 200 and mid in r.body.decode())
            s.close()
        for s, _ in polls[:3]:
            s.close()
        ok(heard == [True] * 5, "the 4 left, and the other phone's, hear the next message",
           str(heard))
    finally:
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
        time.sleep(0.6)  # past the last 200 ms interval: the final change is heard
        seen = [answers[k][-1] if answers[k] else None for k in (0, 1)]
        stop.set()
        # wake the listeners out of their last wait
        request(srv, "POST", keep, b"", headers=bearer(mom["token"]))
        for t in threads:
            t.join(10)
        bound = spent / 0.2 + 2
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
        # a client that half-closes behind its long-poll has gone: dropped, not answered
        s = srv.connect(timeout=10)
        s.sendall(poll_head(fam, tok, up.json()["message"]["seq"], 20))
        time.sleep(0.2)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        t0 = time.monotonic()
        try:
            got = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            got = b"?"
        s.close()
        ok(got == b"" and time.monotonic() - t0 < 3,
           "a long-poll whose client shuts its side is closed at once", repr(got[:60]))
    finally:
        srv.stop()


def main():
    dropped_polls(sys.argv[1])
    share_per_token(sys.argv[1])
    burst_of_changes(sys.argv[1])
    pipelined_behind(sys.argv[1])
    sys.exit(finish())


if __name__ == "__main__":
    main()
