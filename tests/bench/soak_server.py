#!/usr/bin/env python3
"""soak_server.py — the server under a steady family workload for minutes: does it stay up,
answer every request, and hold its memory and open files flat?

usage: soak_server.py JIAYIN_BINARY [MINUTES=6] [FAMILIES=400] [CLIENTS=4]

FAMILIES families (more than the storage's 256 open at once, so the family cache evicts
and reopens), each a parent's phone and a child's. CLIENTS threads loop over random families:
the parent uploads a 3 s clip (one of four sines), the child lists the mailbox, downloads the
clip (checked to be Ogg) and marks it listened, and half the time the parent deletes it. Every
15 s the server's RSS and open file descriptors are printed; at the end, one summary line.
Exit status 1 if any request failed. Not run by the tests (it takes minutes): see
docs/performance.md for figures.
"""
import os
import random
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
import apiclient as ac  # noqa: E402
from serverlib import Server, request  # noqa: E402


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 6
    nfam = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    nclients = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    srv = Server(binary, "--signups-per-hour", "100000")
    tmp = tempfile.mkdtemp(prefix="jiayin-soak-")
    clips = []
    for i in range(4):
        p = os.path.join(tmp, f"c{i}.wav")
        ac.sine_wav(p, 300 + 100 * i, 3)
        with open(p, "rb") as f:
            clips.append(f.read())
    fams = []
    for i in range(nfam):
        parent = ac.signup(srv, f"家{i}", "妈妈")
        fams.append((parent, ac.pair(srv, parent, "child", "小明")))
    counts = {k: 0 for k in ("upload", "list", "audio", "listened", "delete", "failed")}
    lock = threading.Lock()
    stop = time.time() + minutes * 60

    def bump(k, detail=None):
        with lock:
            counts[k] += 1
            if detail and counts["failed"] <= 5:
                print("failed:", detail, flush=True)

    def worker(seed):
        rnd = random.Random(seed)
        while time.time() < stop:
            parent, child = rnd.choice(fams)
            fam, pt, ct = parent["family"]["id"], parent["token"], child["token"]
            try:
                r, _ = ac.upload(srv, pt, fam, rnd.choice(clips), os.urandom(8).hex())
                if r is None or r.status != 201:
                    bump("failed", f"upload {r and r.status}")
                    continue
                bump("upload")
                mid = r.json()["message"]["id"]
                path = f"/v1/families/{fam}/messages"
                steps = [("list", "GET", f"{path}?since=0", ct, (200,)),
                         ("audio", "GET", f"{path}/{mid}/audio", ct, (200,)),
                         ("listened", "POST", f"{path}/{mid}/listened", ct, (200, 204))]
                if rnd.random() < 0.5:
                    steps.append(("delete", "DELETE", f"{path}/{mid}", pt, (200, 204)))
                for name, method, p, tok, want in steps:
                    r = request(srv, method, p, headers=ac.bearer(tok), timeout=30)
                    if r is None or r.status not in want or (
                            name == "audio" and not r.body.startswith(b"OggS")):
                        bump("failed", f"{name} {r and r.status}")
                        break
                    bump(name)
            except Exception as e:  # noqa: BLE001 - a soak counts every failure
                bump("failed", repr(e))

    def fds():
        return len(os.listdir(f"/proc/{srv.proc.pid}/fd"))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nclients)]
    t0 = time.time()
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        time.sleep(15)
        samples.append((time.time() - t0, ac.rss_kib(srv.proc.pid), fds()))
        print(f"{samples[-1][0]:6.0f} s  RSS {samples[-1][1]} KiB  fds {samples[-1][2]}  "
              f"{counts}", flush=True)
    for t in threads:
        t.join()
    rc = srv.stop()
    half = [s for s in samples if s[0] >= minutes * 30]
    print(f"summary: {minutes:g} min, {nfam} families, {nclients} clients: {counts}; server exit "
          f"{rc}; RSS {samples[0][1]} KiB at {samples[0][0]:.0f} s, "
          f"{min(s[1] for s in half)}-{max(s[1] for s in half)} KiB over the second half, "
          f"{samples[-1][1]} KiB at the end; fds {min(s[2] for s in samples)}-"
          f"{max(s[2] for s in samples)}")
    return 1 if counts["failed"] or rc != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
