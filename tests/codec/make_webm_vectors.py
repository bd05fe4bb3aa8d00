#!/usr/bin/env python3
"""make_webm_vectors.py - remake the WebM test vectors of codec/webm.c (Python 3 stdlib only).

Always writes the libFuzzer seed corpus, tests/fuzz/corpus/webm/: small valid and broken WebM
files built by the EBML writer below around synthetic CELT packets (any byte string after a CELT
TOC byte decodes, so no encoder is needed). With --ffmpeg it also re-encodes the reference files
of tests/codec/data/ with ffmpeg/libopus; test_webm_layouts.c checks they decode to exactly the
input's length (1.5 s = 72000 frames, 1.234 s = 59232 frames at 48 kHz). Run from anywhere:

    python3 tests/codec/make_webm_vectors.py [--ffmpeg]
"""
import argparse
import hashlib
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus", "webm")
DATA = os.path.join(ROOT, "tests", "codec", "data")

EBML, SEGMENT, INFO, TRACKS, CLUSTER = 0x1A45DFA3, 0x18538067, 0x1549A966, 0x1654AE6B, 0x1F43B675
CUES, TAGS, VOID = 0x1C53BB6B, 0x1254C367, 0xEC
TRACK_ENTRY, SIMPLE_BLOCK, BLOCK_GROUP, BLOCK, DISCARD_PADDING = 0xAE, 0xA3, 0xA0, 0xA1, 0x75A2
UNKNOWN = None  # size of a master element of unknown size


def vint(value, length=None):
    """An EBML variable-length size; the shortest that is not all ones unless length is given."""
    if length is None:
        length = 1
        while value >= (1 << (7 * length)) - 1:
            length += 1
    return (value | (1 << (7 * length))).to_bytes(length, "big")


def elem_id(i):
    return i.to_bytes((i.bit_length() + 7) // 8, "big")


def el(i, payload):
    return elem_id(i) + vint(len(payload)) + payload


def el_unknown(i, payload):
    return elem_id(i) + b"\x01\xff\xff\xff\xff\xff\xff\xff" + payload


def el_uint(i, v):
    n = max(1, (v.bit_length() + 7) // 8)
    return el(i, v.to_bytes(n, "big"))


def el_sint(i, v):
    n = 1
    while not -(1 << (8 * n - 1)) <= v < (1 << (8 * n - 1)):
        n += 1
    return el(i, v.to_bytes(n, "big", signed=True))


def el_str(i, s):
    return el(i, s.encode())


def el_float(i, v):
    return el(i, struct.pack(">d", v))


def packets(count, stereo=False, seed=b"jiayin"):
    """Deterministic CELT-only 20 ms packets (TOC config 31, code 0) of varying size."""
    toc = b"\xfc" if stereo else b"\xf8"
    out = []
    for k in range(count):
        h = hashlib.sha256(seed + bytes([k])).digest()
        out.append(toc + (h * 3)[: 20 + h[0] % 40])
    return out


def opus_head(channels, preskip=312):
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, preskip, 48000, 0, 0)


def ebml_header(doctype="webm"):
    return el(EBML, el_uint(0x4286, 1) + el_uint(0x42F7, 1) + el_uint(0x42F2, 4) +
              el_uint(0x42F3, 8) + el_str(0x4282, doctype) + el_uint(0x4287, 4) +
              el_uint(0x4285, 2))


def track_entry(number, codec, channels, private=None, codec_delay=None):
    body = el_uint(0xD7, number) + el_uint(0x73C5, number * 1000) + el_uint(0x83, 2)
    body += el_str(0x86, codec)
    if codec_delay is not None:
        body += el_uint(0x56AA, codec_delay)
    if private is not None:
        body += el(0x63A2, private)
    body += el(0xE1, el_uint(0x9F, channels) + el_float(0xB5, 48000.0))
    return el(TRACK_ENTRY, body)


def block_body(track, pkts, lacing=0, flags=0x80):
    out = vint(track, 1) + b"\x00\x00" + bytes([flags | (lacing << 1 if len(pkts) > 1 else 0)])
    if len(pkts) > 1:
        out += bytes([len(pkts) - 1])
        sizes = [len(p) for p in pkts]
        if lacing == 1:  # Xiph
            for s in sizes[:-1]:
                out += b"\xff" * (s // 255) + bytes([s % 255])
        elif lacing == 3:  # EBML
            out += vint(sizes[0])
            for prev, s in zip(sizes, sizes[1:-1]):
                out += vint(s - prev + 63, 1) if abs(s - prev) < 63 else vint(s - prev + 8191, 2)
        elif lacing == 2:
            assert len(set(sizes)) == 1
    return out + b"".join(pkts)


def webm(pkts, per_block=1, lacing=0, per_cluster=10, unknown=False, discard=0, stereo=False,
         private=True, codec_delay=6500000, tail=False, doctype="webm", vorbis_first=False):
    channels = 2 if stereo else 1
    opus_track = 2 if vorbis_first else 1
    tracks = b""
    if vorbis_first:
        tracks += track_entry(1, "A_VORBIS", 2, private=b"\x02" + b"\x5a" * 300)
    tracks += track_entry(opus_track, "A_OPUS", channels,
                          opus_head(channels) if private else None, codec_delay)
    seg = el(INFO, el_uint(0x2AD7B1, 1000000) + el_str(0x4D80, "make_webm_vectors"))
    seg += el(TRACKS, tracks)
    blocks = [pkts[i:i + per_block] for i in range(0, len(pkts), per_block)]
    for c in range(0, len(blocks), per_cluster):
        body = el_uint(0xE7, c * 20 * per_block)
        for k, blk in enumerate(blocks[c:c + per_cluster], start=c):
            if vorbis_first:
                body += el(SIMPLE_BLOCK, block_body(1, [b"\xa5" * 50]))
            if discard and k == len(blocks) - 1:
                body += el(BLOCK_GROUP, el(BLOCK, block_body(opus_track, blk, lacing, 0)) +
                           el_sint(DISCARD_PADDING, discard))
            else:
                body += el(SIMPLE_BLOCK, block_body(opus_track, blk, lacing))
        seg += el_unknown(CLUSTER, body) if unknown else el(CLUSTER, body)
    if tail:
        seg += el(CUES, el(0xBB, el_uint(0xB3, 0) + el(0xB7, el_uint(0xF7, 1) +
                                                       el_uint(0xF1, 100))))
        seg += el(TAGS, el(0x7373, el(0x67C8, el_str(0x45A3, "ENCODER") +
                                      el_str(0x4487, "make_webm_vectors"))))
    return ebml_header(doctype) + (el_unknown(SEGMENT, seg) if unknown else el(SEGMENT, seg))


def corpus():
    p = packets(12)
    same = [p[0]] * 9  # equal sizes for fixed lacing
    big = [b"\xf8" + hashlib.sha256(bytes([k])).digest() * 10 for k in range(6)]  # > 255 bytes
    known = webm(p, discard=12500000, tail=True)
    seeds = {
        "known_sizes.webm": known,
        "unknown_sizes.webm": webm(p, unknown=True, per_cluster=4, tail=True),
        "unknown_no_tail.webm": webm(p, unknown=True, per_cluster=5, discard=5000000),
        "xiph_lacing.webm": webm(big, per_block=3, lacing=1),
        "ebml_lacing.webm": webm(p, per_block=4, lacing=3, discard=25000000),
        "fixed_lacing.webm": webm(same, per_block=3, lacing=2),
        "stereo_no_private.webm": webm(packets(8, stereo=True), stereo=True, private=False),
        "vorbis_then_opus.webm": webm(p[:6], vorbis_first=True, unknown=True),
        "matroska_doctype.webm": webm(p[:4], doctype="matroska", codec_delay=None),
        "chained.webm": webm(p[:4], unknown=True) + webm(p[4:8], unknown=True),
        # A known-size document, Chrome's stopped-at-once one (header, zeros), an unknown-size
        # one whose Opus track is number 2: documents decoded one after the other.
        "chained_mixed.webm": webm(p[:4], discard=5000000) + ebml_header() + bytes(74) +
        webm(p[4:10], unknown=True, vorbis_first=True, per_cluster=3),
        "truncated.webm": known[: len(known) * 2 // 3],
        "lying_size.webm": known.replace(el(BLOCK, block_body(1, p[-1:], 0, 0)),
                                         elem_id(BLOCK) + vint(len(p[-1]) + 4 + 500, 2) +
                                         block_body(1, p[-1:], 0, 0)),
        "bad_xiph_lace.webm": webm([p[0], p[1]], per_block=2, lacing=1).replace(
            bytes([0x82, 0x01, len(p[0])]), bytes([0x82, 0x01, 0xff])),
    }
    vorbis_only = webm(p[:3]).replace(b"A_OPUS", b"A_VORB")
    seeds["vorbis_only.webm"] = vorbis_only
    os.makedirs(CORPUS, exist_ok=True)
    for name, data in sorted(seeds.items()):
        assert len(data) < 8192, name
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)
        print(f"{os.path.relpath(os.path.join(CORPUS, name), ROOT)}: {len(data)} bytes")


FFMPEG = [
    # name, lavfi source, extra output options
    ("ffmpeg_mono_1500ms.webm", "sine=f=440:d=1.5", ["-b:a", "24k"]),
    ("ffmpeg_stereo_1500ms.webm", "aevalsrc=sin(2*PI*440*t)|sin(2*PI*660*t):d=1.5:s=48000",
     ["-b:a", "32k"]),
    ("ffmpeg_16k_1234ms.webm", "sine=f=300:d=1.234:sample_rate=16000",
     ["-b:a", "16k", "-ar", "16000"]),
]


def ffmpeg():
    os.makedirs(DATA, exist_ok=True)
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    exact = ["-fflags", "+bitexact", "-flags:a", "+bitexact"]  # no random UIDs or version strings
    for name, src, opts in FFMPEG:
        subprocess.run(base + ["-i", src, "-c:a", "libopus"] + opts + exact +
                       [os.path.join(DATA, name)], check=True)
    # The live variant: unknown-size Segment, written to a pipe as a live stream would be.
    live = subprocess.run(base + ["-i", "sine=f=440:d=1.5", "-c:a", "libopus", "-b:a", "24k"] +
                          exact + ["-f", "webm", "-live", "1", "pipe:1"],
                          check=True, stdout=subprocess.PIPE).stdout
    with open(os.path.join(DATA, "ffmpeg_live_1500ms.webm"), "wb") as f:
        f.write(live)
    for name in sorted(os.listdir(DATA)):
        if name.startswith("ffmpeg_"):
            size = os.path.getsize(os.path.join(DATA, name))
            assert size < 20000, name
            print(f"tests/codec/data/{name}: {size} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ffmpeg", action="store_true", help="also remake tests/codec/data/")
    args = ap.parse_args()
    corpus()
    if args.ffmpeg:
        ffmpeg()
    return 0


if __name__ == "__main__":
    sys.exit(main())
