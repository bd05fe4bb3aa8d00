#!/usr/bin/env python3
"""bench_server.py — jiayin's HTTP engine next to nginx, side by side in one run.

usage: bench_server.py JIAYIN_TEST [--runs N] [--seconds S] [--idle N] [--markdown FILE]

JIAYIN_TEST is tests/bench/jiayin-test from a release build (the real server plus the /clips
test route, which serves a stored clip through the API's audio path). nginx is Debian's, with
`worker_processes 1` like jiayin's one event loop, both logging every request to a file.
wrk, 64 connections, 2 threads, S seconds per run, runs interleaved (nginx, jiayin, ...):
  1. jiayin GET /healthz (a small JSON answer) vs nginx serving a small static file;
  2. jiayin serving a 150 KB clip from storage vs nginx serving the same bytes from a file;
then N idle keep-alive connections to each (one request each, then held), and each server's
resident memory before and after. Prints a table of medians and the ratios the issue names.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import resource

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "server"))
from serverlib import Server, request  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Nginx:
    def __init__(self, root, workdir, healthz_body, clip):
        self.dir = tempfile.mkdtemp(prefix="nginx-", dir=workdir)
        # nginx's workers run as an unprivileged user: they must be able to reach the files.
        for d in (workdir, self.dir):
            os.chmod(d, 0o755)
        self.port = free_port()
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        with open(os.path.join(www, "healthz.json"), "wb") as f:
            f.write(healthz_body)
        with open(os.path.join(www, "clip.ogg"), "wb") as f:
            f.write(clip)
        for name in ("healthz.json", "clip.ogg"):
            os.chmod(os.path.join(www, name), 0o644)
        os.chmod(www, 0o755)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
worker_processes 1;
worker_rlimit_nofile 30000;
daemon off;
master_process on;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 25000; }}
http {{
    access_log {self.dir}/access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 120s;
    keepalive_requests 1000;
    server_tokens off;
    types {{ application/json json; audio/ogg ogg; }}
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    server {{
        listen 127.0.0.1:{self.port};
        root {www};
        add_header X-Content-Type-Options nosniff;
        add_header Referrer-Policy no-referrer;
    }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-c", conf, "-p", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        self.worker = None
        deadline = time.time() + 5
        while not self.worker and time.time() < deadline:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                                 text=True).stdout.split()
            self.worker = int(out[0]) if out else None
            time.sleep(0.05)

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(url, seconds, conns=64, headers=()):
    """wrk -t2 for seconds; headers are "Name: value" strings (bench_api.py sends a token)."""
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(tag):
        m = re.search(rf"{tag}%\s+([\d.]+)(us|ms|s)\b", out)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"),
            "non2xx": int(errors.group(1)) if errors else 0,
            "sockerr": sock.group(1) if sock else ""}


def idle(port, pid, n):
    """RSS growth of pid with n idle keep-alive connections (each made one request)."""
    socks = []
    time.sleep(0.5)
    before = rss_kb(pid)
    req = b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n" if port[1] == "j" else \
        b"GET /healthz.json HTTP/1.1\r\nHost: b\r\n\r\n"
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port[0]), timeout=10)
            s.sendall(req)
            socks.append(s)
            if len(socks) % 500 == 0:
                for t in socks[-500:]:
                    t.recv(4096)
        for t in socks[len(socks) // 500 * 500:]:
            t.recv(4096)
        time.sleep(1.0)
        after = rss_kb(pid)
    finally:
        for s in socks:
            s.close()
    return before, after


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("jiayin_test")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 1000:
        sys.exit(f"need {args.idle + 1000} open files, the hard limit is {hard}")
    work = args.workdir or tempfile.mkdtemp(prefix="jiayin-bench-server-")
    os.makedirs(work, exist_ok=True)
    clip = os.urandom(150 * 1024)
    srv = Server(args.jiayin_test, "--log-file", os.path.join(work, "jiayin-requests.log"),
                 "--keepalive-ms", "120000", "--max-connections", "25000",
                 data=os.path.join(work, "jiayin-data"))
    ids = request(srv, "POST", "/clips", clip).json()
    clip_path = f"/clips/{ids['family']}/{ids['message']}"
    got = request(srv, "GET", clip_path)
    assert got.status == 200 and got.body == clip
    healthz = request(srv, "GET", "/healthz").body
    ngx = Nginx(None, work, healthz, clip)
    try:
        j_url = f"http://127.0.0.1:{srv.port}"
        n_url = f"http://127.0.0.1:{ngx.port}"
        tests = [("small JSON", j_url + "/healthz", n_url + "/healthz.json"),
                 ("150 KB clip", j_url + clip_path, n_url + "/clip.ogg")]
        res = {name: {"jiayin": [], "nginx": []} for name, _, _ in tests}
        for name, ju, nu in tests:  # warm up both
            wrk(ju, 2)
            wrk(nu, 2)
        for r in range(args.runs):
            for name, ju, nu in tests:
                res[name]["nginx"].append(wrk(nu, args.seconds))
                res[name]["jiayin"].append(wrk(ju, args.seconds))
                print(f"run {r + 1}: {name}: nginx {res[name]['nginx'][-1]['rps']:.0f}/s, "
                      f"jiayin {res[name]['jiayin'][-1]['rps']:.0f}/s", file=sys.stderr)
        j_idle = idle((srv.port, "j"), srv.proc.pid, args.idle)
        n_idle = idle((ngx.port, "n"), ngx.worker, args.idle)
    finally:
        ngx.stop()
        srv.stop()
    lines = []
    p = lines.append
    p(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    p(f"- Machine: {os.cpu_count()} CPUs; wrk -t2 -c64 -d{args.seconds}s, {args.runs} runs "
      "per server and test, interleaved; medians (min-max)")
    ver = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    p(f"- Peer: {ver}, worker_processes 1, sendfile on, access_log to a file; "
      "jiayin: one event loop, request log to a file")
    p("")
    p("| test | server | requests/s | p50 ms | p99 ms | errors |")
    p("|---|---|---:|---:|---:|---:|")
    verdicts = []
    for name, _, _ in tests:
        med = {}
        for who in ("nginx", "jiayin"):
            runs = res[name][who]
            rps = [x["rps"] for x in runs]
            med[who] = {k: statistics.median(x[k] for x in runs) for k in ("rps", "p50", "p99")}
            errs = sum(x["non2xx"] for x in runs)
            p(f"| {name} | {who} | {med[who]['rps']:.0f} ({min(rps):.0f}-{max(rps):.0f}) | "
              f"{med[who]['p50']:.2f} | {med[who]['p99']:.2f} | {errs} |")
        ratio = med["jiayin"]["rps"] / med["nginx"]["rps"]
        p99r = med["jiayin"]["p99"] / med["nginx"]["p99"]
        need = 1.0 if name == "small JSON" else 0.8
        verdicts.append(f"{'PASS' if ratio >= need else 'FAIL'}  {name}: jiayin {ratio:.2f}x "
                        f"nginx's requests/s (target >= {need}x)")
        if name == "small JSON":
            verdicts.append(f"{'PASS' if p99r <= 1.5 else 'FAIL'}  {name}: p99 {p99r:.2f}x "
                            "nginx's (target <= 1.5x)")
    jb, ja = j_idle
    nb, na = n_idle
    jper, nper = (ja - jb) * 1024 / args.idle, (na - nb) * 1024 / args.idle
    p("")
    p(f"Idle keep-alive connections: {args.idle}, each after one request. "
      f"jiayin RSS {jb} -> {ja} KB ({jper:.0f} bytes per connection); nginx worker RSS "
      f"{nb} -> {na} KB ({nper:.0f} bytes per connection).")
    verdicts.append(f"{'PASS' if jper <= 2 * max(nper, 1) else 'FAIL'}  idle connections: "
                    f"jiayin {jper:.0f} B vs nginx {nper:.0f} B each (target <= 2x)")
    p("")
    p("```")
    lines.extend(verdicts)
    p("```")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    shutil.rmtree(work, ignore_errors=True) if not args.workdir else None


if __name__ == "__main__":
    main()
