#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_http into tests/fuzz/corpus/http/seed-*: valid requests and
the adversarial ones (smuggling vectors, bad bytes, huge sizes, pipelined garbage), and some
whose body callback fails. The first
byte of each file is fuzz_http's control byte: bit 0 picks the tiny limits, the rest where the
input is split. Seeds are written once; files libFuzzer adds keep their hash names."""
import os
import sys

H = b"Host: jiayin.example\r\n"
CH = b"Transfer-Encoding: chunked\r\n"


def post(extra, body=b""):
    return b"POST /v1/messages HTTP/1.1\r\n" + H + extra + b"\r\n" + body


SEEDS = {
    # valid
    "get": b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    "get-query": b"GET /v1/messages?since=42&limit=10 HTTP/1.1\r\n" + H + b"Accept: */*\r\n\r\n",
    "head": b"HEAD /a HTTP/1.1\r\n" + H + b"\r\n",
    "options-star": b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    "http10-keepalive": b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    "http11-close": b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    "post-cl": post(b"Content-Length: 11\r\n", b"hello world"),
    "post-cl0": post(b"Content-Length: 0\r\n"),
    "post-chunked": post(CH, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    "post-chunked-ext": post(CH, b"5;a=b\r\nhello\r\n1;q=\"x y\"\r\n!\r\n0\r\n\r\n"),
    "post-expect": post(b"Expect: 100-continue\r\nContent-Length: 3\r\n", b"abc"),
    "ows": b"GET / HTTP/1.1\r\nHost:a\r\nX:  \t v \t \r\nY:\r\n\r\n",
    "leading-crlf": b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
    "pipelined-gets": (b"GET /1 HTTP/1.1\r\n" + H + b"\r\n") * 3,
    "pipelined-post-get": post(b"Content-Length: 4\r\n", b"body") + b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    "pipelined-chunked-get": post(CH, b"3\r\nabc\r\n0\r\n\r\n") + b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    "pipelined-garbage": b"GET / HTTP/1.1\r\n" + H + b"\r\n\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "pipelined-half": b"GET / HTTP/1.1\r\n" + H + b"\r\nGET /x HTTP/1.1\r\nHo",
    "ipv6-host": b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    "accept-encoding": b"GET /v1/families/f/messages HTTP/1.1\r\n" + H
    + b"Accept-Encoding: gzip, deflate, br\r\n\r\n",
    "accept-encoding-weights": b"GET / HTTP/1.1\r\n" + H
    + b"Accept-Encoding: br;q=1.0, gzip;q=0.5, *;q=0\r\naccept-encoding: x-gzip;level=\"a,b\";q=0.001\r\n\r\n",
    "accept-encoding-refused": b"GET / HTTP/1.1\r\n" + H
    + b"Accept-Encoding: *, gzip;q=0.000, identity;q=1\r\n\r\n",
    "many-headers": b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: %d\r\n" % (i, i) for i in range(70)) + b"\r\n",
    # smuggling
    "cl-te": post(b"Content-Length: 6\r\n" + CH, b"0\r\n\r\nG"),
    "te-cl": post(CH + b"Content-Length: 3\r\n", b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
    "te-te-space": post(b"Transfer-Encoding : chunked\r\n" + CH, b"0\r\n\r\n"),
    "te-te-dup": post(CH + CH, b"0\r\n\r\n"),
    "te-gzip-chunked": post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
    "te-chunked-chunked": post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
    "te-identity": post(b"Transfer-Encoding: identity\r\n", b"abc"),
    "te-xchunked": post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
    "te-obs-fold": post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
    "te-http10": b"POST / HTTP/1.0\r\n" + CH + b"\r\n0\r\n\r\n",
    "cl-dup-equal": post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
    "cl-dup-diff": post(b"Content-Length: 3\r\nContent-Length: 5\r\n", b"abcde"),
    "cl-list": post(b"Content-Length: 3, 3\r\n", b"abc"),
    "cl-negative": post(b"Content-Length: -1\r\n", b"abc"),
    "cl-overflow": post(b"Content-Length: 18446744073709551616\r\n", b"abc"),
    "cl-huge": post(b"Content-Length: 99999999999999999999999999\r\n"),
    "cl-plus": post(b"Content-Length: +3\r\n", b"abc"),
    "cl-hex": post(b"Content-Length: 0x3\r\n", b"abc"),
    "chunk-huge": post(CH, b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    "chunk-max64": post(CH, b"ffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    "chunk-cr-x": post(CH, b"5\rXhello\r\n0\r\n\r\n"),
    "chunk-lf": post(CH, b"5\nhello\n0\n\n"),
    "chunk-end-lf": post(CH, b"5\r\nhello\r\n0\r\n\n"),
    "chunk-leading-zeros": post(CH, b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n"),
    "chunk-space": post(CH, b"5 \r\nhello\r\n0\r\n\r\n"),
    "chunk-trailer": post(CH, b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n"),
    "chunk-ext-long": post(CH, b"5;" + b"a" * 400 + b"\r\nhello\r\n0\r\n\r\n"),
    "chunk-ext-quoted-lf": post(CH, b"5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n"),
    "chunk-missing-crlf": post(CH, b"5\r\nhelloXX0\r\n\r\n"),
    # bad bytes and lines
    "bare-cr": b"GET / HTTP/1.1\rHost: a\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: a\n\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
    "nul-in-target": b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
    "ctl-esc": b"GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n",
    "ws-first-header": b"GET / HTTP/1.1\r\n Host: a\r\n\r\n",
    "two-empty-lines": b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    "long-target": b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    "long-header": b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 17000 + b"\r\n\r\n",
    "absolute-form": b"GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
    "connect": b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    "star-get": b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
    "unknown-method": b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n",
    "propfind": b"PROPFIND / HTTP/1.1\r\nHost: a\r\n\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "http12": b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
    "http09": b"GET /\r\n\r\n",
    "double-space": b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    "name-space": b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad-host": b"GET / HTTP/1.1\r\nHost: a@b/c\r\n\r\n",
    "expect-other": b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
    "fragment": b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad-escape": b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
    "upgrade": b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
}


# The body callback fails (fuzz_http's trailer: FAIL_MARK, then K: past K & 0x7f bytes of a
# request's body; bit 7 picks "no memory" over "body too large"), as the server's callbacks do.
FAIL_MARK = b"\xffFAIL"
FAIL_SEEDS = {
    "fail-cl-first": ("post-cl", 0),
    "fail-cl-middle": ("post-cl", 5),
    "fail-chunked-second": ("post-chunked", 0x80 | 5),
    "fail-chunked-ext": ("post-chunked-ext", 5),
    "fail-expect": ("post-expect", 0x80 | 2),
    "fail-pipelined-post": ("pipelined-post-get", 3),
    "fail-pipelined-chunked": ("pipelined-chunked-get", 0x80),
    "fail-never": ("post-cl", 0x7f),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "http")
    os.makedirs(out, exist_ok=True)
    for i, (name, data) in enumerate(sorted(SEEDS.items())):
        # Alternate the limits (bit 0) and spread the split point over the input.
        ctl = ((i * 37) % 128) << 1 | (i % 3 == 0)
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(bytes([ctl]) + data)
    for i, (name, (seed, k)) in enumerate(sorted(FAIL_SEEDS.items())):
        ctl = ((i * 41) % 128) << 1 | (i % 2)
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(bytes([ctl]) + SEEDS[seed] + FAIL_MARK + bytes([k]))
    print(len(SEEDS), "seeds in", out, file=sys.stderr)


if __name__ == "__main__":
    main()
