#!/usr/bin/env python3
"""
test_malformed.py — end-to-end tests of jiayin-transcode on inputs and options it must refuse.

    python3 tests/e2e/test_malformed.py build-dev/tools/jiayin-transcode

Every case is a file (built here byte by byte, or made by ffmpeg/opusenc and then damaged) and
the error code(s) the program may answer with. Each case is two TAP tests: (1) the program did
not crash (no signal, no sanitizer report), exited non-zero and left nothing in the output
directory (no OUT, no temporary file); (2) it printed exactly one JSON line
{"error":{"code","message"}} with an allowed code and exited with that code's number. Where a
case could legitimately map to two codes the allowed set has both, and a comment says why.
Then a long clip stopped midway by a signal or a file size limit, where an OUT already there
must stay as it was and no temporary file be left, and an OUT that is not a regular file,
refused as it was. Then crash sweeps: every container cut at
many lengths and mutated at random (seeded) bytes, where any outcome is fine as long as it is
consistent: success with a valid file, or an error with no file. Prints TAP; exits 1 if any
check failed.
"""
import errno
import json
import os
import random
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inputs  # noqa: E402
import measure  # noqa: E402
import tap  # noqa: E402
from inputs import chunk, wav_bytes, wav_fmt_chunk  # noqa: E402

ERRORS = {"io_error": 2, "invalid_argument": 3, "audio_unrecognized": 4,
          "audio_unsupported": 5, "audio_truncated": 6, "audio_malformed": 7,
          "audio_corrupt": 8, "audio_bad_sample_rate": 9, "audio_bad_channels": 10,
          "audio_too_short": 11, "audio_too_long": 12, "audio_too_large": 13,
          "audio_silent": 14}
EXIT_USAGE = 64
USAGE = "usage"  # pseudo-code in an allowed set: exit 64 (JSON optional)
ACCEPTED = "accepted"  # pseudo-code: reading the input as valid is right too (then: a good file)

RATE = 16000  # the base clip: espeak speech, 16 kHz mono s16


# ---------------------------------------------------------------------------------------------
# Materials every case is cut from (made once)

class Materials:
    def __init__(self, d):
        self.dir = d
        src = inputs.Sources(d)
        # 3.0 s of speech (padded), 16 kHz mono s16, raw little-endian
        self.pcm = inputs.raw_pcm(src.en, RATE, 1, 16, af="apad=whole_dur=3")[:3 * RATE * 2]
        self.wav = wav_bytes(self.pcm, RATE, 1, 16)
        wav48 = os.path.join(d, "speech48.wav")
        inputs.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", src.en, "-af",
                    "apad=whole_dur=3", "-t", "3", "-ar", "48000", wav48])
        self.ogg = self._make(["opusenc", "--quiet", wav48, "{out}"], "speech.opus")
        short = os.path.join(d, "short.wav")
        inputs.run(["sox", "-V1", wav48, short, "trim", "0", "0.3"])
        self.ogg_short = self._make(["opusenc", "--quiet", short, "{out}"], "short.opus")
        ff = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", wav48]
        self.webm = self._make(ff + ["-c:a", "libopus", "-b:a", "32k", "-f", "webm", "{out}"],
                               "speech.webm")
        self.ogg_vorbis = self._make(ff + ["-c:a", "libvorbis", "-f", "ogg", "{out}"],
                                     "vorbis.ogg")
        self.webm_vorbis = self._make(ff + ["-c:a", "libvorbis", "-f", "webm", "{out}"],
                                      "vorbis.webm")
        # One sample under 0.5 s, one past --max-duration 2: Ogg from opusenc and WebM from
        # ffmpeg keep a WAV's length to the sample (granule position, DiscardPadding).
        self.pcm8k = inputs.raw_pcm(src.en, 8000, 1, 16, af="apad=whole_dur=3")
        self.pcm11k = inputs.raw_pcm(src.en, 11025, 1, 16)
        for samples in (23999, 96001):
            cut = os.path.join(d, f"speech48_{samples}.wav")
            inputs.run(["sox", "-V1", wav48, cut, "trim", "0", f"{samples}s"])
            setattr(self, f"ogg_{samples}", self._make(["opusenc", "--quiet", cut, "{out}"],
                                                       f"{samples}.opus"))
            setattr(self, f"webm_{samples}", self._make(
                ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", cut, "-c:a", "libopus",
                 "-b:a", "32k", "-fflags", "+bitexact", "-f", "webm", "{out}"], f"{samples}.webm"))
        self.mp3ish = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400)
        self.png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10"
                    b"\x08\x02\x00\x00\x00\x90\x91h6" + bytes(64))

    def _make(self, argv, name):
        out = os.path.join(self.dir, name)
        inputs.run([a.replace("{out}", out) for a in argv])
        with open(out, "rb") as f:
            return f.read()


# ---------------------------------------------------------------------------------------------
# Byte surgery

def wav_with_fmt(m, seconds=None, **fmt_fields):
    """The base clip with a fmt chunk whose fields are overridden (rate, channels, bits...)."""
    args = {"rate": RATE, "channels": 1, "bits": 16}
    args.update(fmt_fields)
    pcm = m.pcm if seconds is None else m.pcm[:int(seconds * RATE) * 2]
    return wav_bytes(pcm, RATE, 1, 16, fmt=wav_fmt_chunk(**args))


def ogg_rebuild(data, drop=(), replace=None):
    """Re-serialise an Ogg file: drop page indexes, replace bodies ({index: (lacing, body)}),
    renumber sequence numbers and recompute every CRC, so only the intended damage remains."""
    pages = measure.ogg_pages(data)
    out = b""
    seq = 0
    for i, pg in enumerate(pages):
        if i in drop:
            continue
        lacing, body = (replace or {}).get(i, (pg.lacing, pg.body))
        out += measure.repage(pg, seq=seq, lacing=lacing, body=body)
        seq += 1
    return out


def ogg_with_head(data, head):
    """The Ogg file with its OpusHead packet replaced (it is alone on page 0)."""
    return ogg_rebuild(data, replace={0: (bytes([len(head)]), head)})


def opus_head(channels=1, family=0, version=1, extra=b""):
    return b"OpusHead" + struct.pack("<BBHIhB", version, channels, 312, 48000, 0, family) + extra


def ogg_flip_body_byte(data):
    """Flip a byte in the body of the first audio page, leaving its CRC stale."""
    pages = measure.ogg_pages(data)
    pg = pages[2]
    pos = pg.offset + pg.header_len + len(pg.body) // 2
    return data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1:]


def ogg_invalid_packet(data):
    """Make the first audio packet an invalid Opus packet (code 3 with zero frames), with a
    correct CRC: the container is fine, the audio data is not."""
    pages = measure.ogg_pages(data)
    pg = pages[2]
    first = pg.lacing[0]
    body = bytes([0x03, 0x00]) + pg.body[2:]
    assert first >= 2
    return ogg_rebuild(data, replace={2: (pg.lacing, body)})


def ogg_cut_mid_page(data):
    pages = measure.ogg_pages(data)
    pg = pages[-2]
    return data[:pg.offset + pg.header_len + len(pg.body) // 2]


# EBML (Matroska/WebM)

def read_vint(data, pos):
    """(value with the length marker removed, length, all-ones 'unknown' flag)."""
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        raise ValueError(f"bad vint at {pos}")
    value = first & (0xFF >> length)
    for b in data[pos + 1:pos + length]:
        value = (value << 8) | b
    return value, length, value == (1 << (7 * length)) - 1


def read_id(data, pos):
    _, length, _ = read_vint(data, pos)
    return int.from_bytes(data[pos:pos + length], "big"), length


def ebml_elements(data, start, end):
    """[(id, element offset, size-field offset, size-field length, data offset, size)]"""
    out = []
    pos = start
    while pos < end:
        eid, idlen = read_id(data, pos)
        size, slen, unknown = read_vint(data, pos + idlen)
        doff = pos + idlen + slen
        out.append((eid, pos, pos + idlen, slen, doff, None if unknown else size))
        if unknown:
            break
        pos = doff + size
    return out


def ebml_find(data, path):
    """The element reached by a list of IDs from the top level (first match at each level)."""
    start, end = 0, len(data)
    found = None
    for eid in path:
        found = next((e for e in ebml_elements(data, start, end) if e[0] == eid), None)
        if found is None:
            raise ValueError(f"element {eid:#x} not found")
        start = found[4]
        end = found[4] + (found[5] if found[5] is not None else len(data) - found[4])
    return found


def encode_size(value, length):
    if value >= (1 << (7 * length)) - 1:
        raise ValueError("size does not fit")
    return ((1 << (7 * length)) | value).to_bytes(length, "big") if length < 8 else \
        (b"\x01" + value.to_bytes(7, "big"))


SEGMENT, TRACKS, TRACK_ENTRY, CLUSTER, SIMPLE_BLOCK = 0x18538067, 0x1654AE6B, 0xAE, \
    0x1F43B675, 0xA3
CODEC_PRIVATE = 0x63A2


def webm_set_size(data, path, new_size):
    e = ebml_find(data, path)
    return data[:e[2]] + encode_size(new_size, e[3]) + data[e[2] + e[3]:]


def webm_lying_track_entry(data):
    """TrackEntry claims 1000 bytes more than its parent Tracks holds."""
    e = ebml_find(data, [SEGMENT, TRACKS, TRACK_ENTRY])
    return webm_set_size(data, [SEGMENT, TRACKS, TRACK_ENTRY], e[5] + 1000)


def webm_huge_block(data):
    """The first SimpleBlock claims far more bytes than the file has."""
    e = ebml_find(data, [SEGMENT, CLUSTER, SIMPLE_BLOCK])
    return webm_set_size(data, [SEGMENT, CLUSTER, SIMPLE_BLOCK], (1 << (7 * e[3])) - 2)


def webm_cut_mid_block(data):
    """Cut inside a SimpleBlock of the first Cluster (the Segment's size then lies too)."""
    cluster = ebml_find(data, [SEGMENT, CLUSTER])
    blocks = [e for e in ebml_elements(data, cluster[4], cluster[4] + cluster[5])
              if e[0] == SIMPLE_BLOCK]
    b = blocks[len(blocks) // 2]
    return data[:b[4] + b[5] // 2]


def webm_head_channels(data, channels):
    e = ebml_find(data, [SEGMENT, TRACKS, TRACK_ENTRY, CODEC_PRIVATE])
    pos = e[4] + 9  # OpusHead channel count
    return data[:pos] + bytes([channels]) + data[pos + 1:]


# ---------------------------------------------------------------------------------------------
# Cases

def rejected_checks(allowed):
    codes = "|".join(sorted(allowed))
    if ACCEPTED in allowed:
        return ["no crash; an error leaves no output, success leaves a valid file",
                f"reports {codes}"]
    return ["exits non-zero without crashing and leaves no output",
            f"reports {codes}"]


def judge_rejection(run, out_dir, allowed):
    """{check: (ok, diags)} for a run that must fail with one of `allowed`."""
    checks = rejected_checks(allowed)
    left = sorted(os.listdir(out_dir))
    p = []
    crash = run.crash()
    if crash:
        p.append(f"crash: {crash}")
    if run.rc == 0:
        p.append("exit status 0: the input was accepted")
    if left:
        p.append(f"the output directory holds {left}")
    if ACCEPTED in allowed and run.rc == 0 and not crash:
        p = judge_any(run, out_dir)
        return {checks[0]: (not p, p or ["accepted, with a valid output file"]),
                checks[1]: (not p, p or ["accepted, with a valid output file"])}
    res = {checks[0]: (not p, p + (run.describe() if p else []))}
    q = []
    code = None
    if run.rc == EXIT_USAGE and USAGE in allowed:
        pass  # a usage error: the program need not print JSON
    elif run.json is None:
        q.append(run.json_error)
    else:
        err = run.json.get("error")
        if not isinstance(err, dict) or not isinstance(err.get("code"), str) \
                or not isinstance(err.get("message"), str) or not err.get("message"):
            q.append("the JSON line is not {\"error\":{\"code\":STRING,\"message\":STRING}}")
        else:
            code = err["code"]
            if code not in allowed:
                q.append(f"code {code!r}, expected one of {sorted(allowed)}")
            elif run.rc != ERRORS.get(code):
                q.append(f"exit status {run.rc}, but {code} is {ERRORS.get(code)}")
    if run.rc == EXIT_USAGE and USAGE not in allowed:
        q.append("exit status 64 (usage) for an input problem")
    res[checks[1]] = (not q, q + (run.describe() if q else []))
    return res


class Rejection:
    """A case whose input must be refused: name, bytes (or a builder), options, allowed codes."""

    def __init__(self, name, make, allowed, options=(), args=None):
        self.name = name
        self.make = make          # fn(materials) -> bytes, or None when `args` says it all
        self.allowed = set(allowed)
        self.options = list(options)
        self.args = args          # fn(in_path, out_path) -> argv tail, for path/usage cases


def rejection_case(program, m, c, work):
    checks = rejected_checks(c.allowed)

    def fn():
        d = os.path.join(work, c.name)
        out_dir = os.path.join(d, "out")
        os.makedirs(out_dir)
        in_path = os.path.join(d, "input.bin")
        if c.make is not None:
            with open(in_path, "wb") as f:
                f.write(c.make(m))
        out = os.path.join(out_dir, "out.ogg")
        argv = c.args(in_path, out) if c.args else c.options + [in_path, out]
        run = tap.run_program(program, argv)
        return judge_rejection(run, out_dir, c.allowed)
    return tap.Case(c.name, checks, fn)


def the_cases():
    R = Rejection
    cases = [
        # --- not audio at all. An empty file has no magic to recognise; a parser that reads
        # the first 12 bytes with "exactly n bytes" semantics could call it truncated.
        R("empty file", lambda m: b"", {"audio_unrecognized", "audio_truncated"}),
        R("3 random bytes", lambda m: b"\x00\x13\xfe", {"audio_unrecognized"}),
        R("text file", lambda m: "宝贝，晚安。This is a text file, not audio.\n".encode() * 20,
          {"audio_unrecognized"}),
        R("PNG header", lambda m: m.png, {"audio_unrecognized"}),
        R("MP3 (ID3 + frame header)", lambda m: m.mp3ish, {"audio_unrecognized"}),

        # --- WAV cut short. 10 bytes: "RIFF", size, "WA": a sniffer that needs "WAVE" may not
        # call it WAV at all, so unrecognized is as right as truncated.
        R("WAV truncated in the RIFF header (10 bytes)", lambda m: m.wav[:10],
          {"audio_truncated", "audio_unrecognized"}),
        R("WAV truncated in the fmt chunk (30 bytes)", lambda m: m.wav[:30], {"audio_truncated"}),
        R("WAV truncated mid-data with an explicit data size", lambda m: m.wav[:len(m.wav) // 2],
          {"audio_truncated"}),
        # A file that ends right after "WAVE" has no fmt: it ended early, or it is structurally
        # incomplete.
        R("WAV with nothing after WAVE", lambda m: b"RIFF\x04\x00\x00\x00WAVE",
          {"audio_truncated", "audio_malformed"}),
        R("WAV fmt chunk claims 0xFFFFFF00 bytes", lambda m: m.wav[:16] + b"\x00\xff\xff\xff" +
          m.wav[20:], {"audio_truncated", "audio_malformed"}),
        R("WAV without a data chunk", lambda m: b"RIFF" + struct.pack("<I", 28) + b"WAVE" +
          wav_fmt_chunk(RATE, 1, 16), {"audio_truncated", "audio_malformed"}),

        # --- fmt fields the program must not take
        R("WAV block_align inconsistent (3 for 16-bit mono)",
          lambda m: wav_with_fmt(m, block_align=3), {"audio_malformed"}),
        # 12 bits in 2-byte containers are taken (1aceec8, docs/codec.md): past 32 bits is not,
        # and a depth between bytes must still fill block_align with its containers.
        R("WAV 40-bit PCM", lambda m: wav_with_fmt(m, bits=40, block_align=5),
          {"audio_unsupported"}),
        R("WAV 12-bit PCM with block_align 1 (its container is 2 bytes)",
          lambda m: wav_with_fmt(m, bits=12, block_align=1), {"audio_malformed"}),
        R("WAV format tag 0x55 (MP3)", lambda m: wav_with_fmt(m, tag=0x55),
          {"audio_unsupported"}),
        R("WAV format tag 2 (MS ADPCM)", lambda m: wav_with_fmt(m, tag=2, bits=4, block_align=256),
          {"audio_unsupported"}),
        R("WAV IEEE float with 16 bits", lambda m: wav_with_fmt(m, is_float=True),
          # float16 does not exist in WAV: unsupported or simply invalid
          {"audio_unsupported", "audio_malformed"}),
        R("WAVE_FORMAT_EXTENSIBLE with the ADPCM subformat",
          lambda m: ext_subformat(m, 0x0002),
          {"audio_unsupported"}),
        # G.711 A-law and µ-law are taken (docs/codec.md): 8 bits a sample, nothing else, and
        # block_align one byte a channel; EXTENSIBLE's fields whole.
        R("WAV A-law (tag 6) with 16 bits a sample", lambda m: wav_with_fmt(m, tag=6),
          {"audio_malformed"}),
        R("WAV µ-law (tag 7) with block_align 2 for 8-bit mono",
          lambda m: wav_with_fmt(m, tag=7, bits=8, block_align=2), {"audio_malformed"}),
        R("WAVE_FORMAT_EXTENSIBLE A-law with 16 bits a sample",
          lambda m: ext_subformat(m, 0x0006), {"audio_malformed"}),
        R("WAVE_FORMAT_EXTENSIBLE µ-law with cbSize 0 (fmt of 18 bytes)",
          lambda m: wav_bytes(m.pcm, RATE, 1, 8, fmt=chunk(b"fmt ", struct.pack(
              "<HHIIHHH", 0xFFFE, 1, RATE, RATE, 1, 8, 0))), {"audio_malformed"}),
        R("WAVE_FORMAT_EXTENSIBLE with cbSize 0 (fmt of 18 bytes)",
          lambda m: wav_bytes(m.pcm, RATE, 1, 16, fmt=chunk(b"fmt ", struct.pack(
              "<HHIIHHH", 0xFFFE, 1, RATE, RATE * 2, 2, 16, 0))), {"audio_malformed"}),
        R("WAVE_FORMAT_EXTENSIBLE with valid bits 24 > container 16",
          lambda m: wav_with_fmt(m, extensible=True, valid_bits=24),
          {"audio_malformed", "audio_unsupported"}),
        # rate 0 is outside 8-192 kHz, and also a structure no writer produces: either code.
        R("WAV sample rate 0", lambda m: wav_with_fmt(m, rate=0),
          {"audio_bad_sample_rate", "audio_malformed"}),
        R("WAV sample rate 4000", lambda m: wav_with_fmt(m, rate=4000), {"audio_bad_sample_rate"}),
        R("WAV sample rate 400000", lambda m: wav_with_fmt(m, rate=400000),
          {"audio_bad_sample_rate"}),
        # channels 0 is outside 1-8 and also an impossible structure (block_align 0): either.
        R("WAV 0 channels", lambda m: wav_with_fmt(m, channels=0),
          {"audio_bad_channels", "audio_malformed"}),
        R("WAV 9 channels", lambda m: wav_with_fmt(m, channels=9), {"audio_bad_channels"}),
        # RIFF puts no order on chunks, but a streaming reader cannot decode data it has no
        # format for: malformed, or unsupported if the program calls it a layout it declines.
        R("WAV data chunk before fmt", lambda m: b"RIFF" + struct.pack(
            "<I", 4 + 8 + len(m.pcm) + 24) + b"WAVE" + chunk(b"data", m.pcm) +
          wav_fmt_chunk(RATE, 1, 16), {"audio_malformed", "audio_unsupported"}),
        R("RF64 without a ds64 chunk", lambda m: b"RF64\xff\xff\xff\xffWAVE" +
          wav_fmt_chunk(RATE, 1, 16) + chunk(b"data", m.pcm, 0xFFFFFFFF),
          # Without ds64 the real sizes are unknown: malformed. But a data size of 0xFFFFFFFF
          # is documented to mean "until the end", so reading it that way is right too.
          {"audio_malformed", ACCEPTED}),

        # --- content limits
        R("0.3 s of speech (WAV)", lambda m: wav_bytes(m.pcm[:int(0.3 * RATE) * 2], RATE, 1, 16),
          {"audio_too_short"}),
        R("0.48 s of speech (WAV, just under the 0.5 s minimum)", lambda m: wav_bytes(
            m.pcm[:int(0.48 * RATE) * 2], RATE, 1, 16), {"audio_too_short"}),
        R("0.3 s of speech (Ogg Opus)", lambda m: m.ogg_short, {"audio_too_short"}),
        # 0.5 s is taken (test_transcode.py); one sample less is not. At 11.025 kHz 0.5 s is
        # 5512.5 frames: 5513 is taken, 5512 is short.
        R("5512 frames at 11.025 kHz (WAV, 0.09 ms under 0.5 s)", lambda m: wav_bytes(
            m.pcm11k[:5512 * 2], 11025, 1, 16), {"audio_too_short"}),
        R("23999 samples (Ogg Opus, one under 0.5 s)", lambda m: m.ogg_23999,
          {"audio_too_short"}),
        R("23999 samples (WebM Opus, one under 0.5 s)", lambda m: m.webm_23999,
          {"audio_too_short"}),
        R("2 s of digital silence", lambda m: wav_bytes(bytes(4 * RATE), RATE, 1, 16),
          {"audio_silent"}),
        R("2 s of a -90 dBFS tone (under the -70 LUFS gate)", lambda m: quiet_tone(),
          {"audio_silent"}),
        # A recorder's DC offset with nothing on it (a mic unplugged): DC is no sound.
        R("2 s of constant DC at 0.3 of full scale", lambda m: wav_bytes(
            struct.pack("<h", 9830) * 2 * RATE, RATE, 1, 16), {"audio_silent"}),
        R("2 s of unsigned 8-bit mid-scale (0x80: 8-bit silence)", lambda m: wav_bytes(
            b"\x80" * 2 * 8000, 8000, 1, 8), {"audio_silent"}),
        R("2 s of white noise at -80 dBFS (under the -70 LUFS gate)", lambda m: noise_m80(),
          {"audio_silent"}),
        R("--max-duration 1 on a 3 s clip", lambda m: m.wav, {"audio_too_long"},
          ["--max-duration", "1"]),
        # Exactly 2 s is taken (test_transcode.py); one sample more is not.
        R("--max-duration 2 on 16001 frames at 8 kHz (WAV)", lambda m: wav_bytes(
            m.pcm8k[:16001 * 2], 8000, 1, 16), {"audio_too_long"}, ["--max-duration", "2"]),
        R("--max-duration 2 on 96001 samples (Ogg Opus)", lambda m: m.ogg_96001,
          {"audio_too_long"}, ["--max-duration", "2"]),
        R("--max-duration 2 on 96001 samples (WebM Opus)", lambda m: m.webm_96001,
          {"audio_too_long"}, ["--max-duration", "2"]),
        R("--max-input-bytes 1000 on a 96 KB file", lambda m: m.wav, {"audio_too_large"},
          ["--max-input-bytes", "1000"]),
        # The limit is the file's size, also where the audio ends well before it.
        R("--max-input-bytes 200000 on a 2 MB file, its audio in the first 96 KB",
          lambda m: wav_with_trailing_chunk(m, 2000000), {"audio_too_large"},
          ["--max-input-bytes", "200000"]),

        # --- Ogg
        R("Ogg with a flipped byte in a page body (bad CRC)", lambda m: ogg_flip_body_byte(m.ogg),
          {"audio_corrupt"}),
        R("Ogg with an invalid Opus packet (valid CRC)", lambda m: ogg_invalid_packet(m.ogg),
          {"audio_corrupt"}),
        R("Ogg Vorbis (no OpusHead)", lambda m: m.ogg_vorbis, {"audio_unsupported"}),
        # Without OpusTags the second packet is audio where the header must be: malformed; a
        # reader that waits for OpusTags may instead run out of file.
        R("Ogg Opus with the OpusTags page removed", lambda m: ogg_rebuild(m.ogg, drop={1}),
          {"audio_malformed", "audio_truncated"}),
        R("Ogg Opus with only the first page", lambda m: m.ogg[:measure.ogg_pages(m.ogg)[1].offset],
          {"audio_malformed", "audio_truncated"}),
        # An upload cut off at a page boundary: every page is whole but there is no EOS page.
        # Decoding what is there is as right as calling it truncated.
        R("Ogg Opus cut at a page boundary before EOS", lambda m: m.ogg[:measure.ogg_pages(
            m.ogg)[-1].offset], {"audio_truncated", ACCEPTED}),
        # Cut mid-page: the page is incomplete (truncated); a reader that checks the CRC of
        # what it has first may call it corrupt.
        R("Ogg Opus truncated mid-page", lambda m: ogg_cut_mid_page(m.ogg),
          {"audio_truncated", "audio_corrupt"}),
        R("Ogg OpusHead with 0 channels", lambda m: ogg_with_head(m.ogg, opus_head(channels=0)),
          {"audio_malformed", "audio_bad_channels"}),
        R("Ogg OpusHead with 9 channels (family 1)", lambda m: ogg_with_head(
            m.ogg, opus_head(channels=9, family=1, extra=bytes([9, 0]) + bytes(range(9)))),
          {"audio_bad_channels"}),
        R("Ogg OpusHead mapping family 255", lambda m: ogg_with_head(
            m.ogg, opus_head(family=255, extra=b"\x01\x00\x00")), {"audio_unsupported"}),
        R("Ogg OpusHead version 16 (incompatible)", lambda m: ogg_with_head(
            m.ogg, opus_head(version=16)), {"audio_unsupported"}),

        # --- WebM
        R("WebM TrackEntry larger than its Tracks (lying size)",
          lambda m: webm_lying_track_entry(m.webm), {"audio_malformed", "audio_truncated"}),
        R("WebM SimpleBlock larger than the file (lying size)", lambda m: webm_huge_block(m.webm),
          {"audio_malformed", "audio_truncated"}),
        R("WebM truncated mid-block", lambda m: webm_cut_mid_block(m.webm), {"audio_truncated"}),
        R("WebM with only a Vorbis track", lambda m: m.webm_vorbis, {"audio_unsupported"}),
        R("WebM OpusHead (CodecPrivate) with 0 channels", lambda m: webm_head_channels(m.webm, 0),
          {"audio_malformed", "audio_bad_channels"}),

        # --- options and paths. A bad option value may be refused by the option parser (usage,
        # 64) or by codec_options_check (invalid_argument, 3).
        R("--bitrate 5", lambda m: m.wav, {"invalid_argument", USAGE}, ["--bitrate", "5"]),
        R("--bitrate 65", lambda m: m.wav, {"invalid_argument", USAGE}, ["--bitrate", "65"]),
        R("--bitrate abc", lambda m: m.wav, {"invalid_argument", USAGE}, ["--bitrate", "abc"]),
        R("--target-lufs nan", lambda m: m.wav, {"invalid_argument", USAGE},
          ["--target-lufs", "nan"]),
        R("--complexity 11", lambda m: m.wav, {"invalid_argument", USAGE}, ["--complexity", "11"]),
        R("unknown option --frobnicate", lambda m: m.wav, {USAGE}, ["--frobnicate"]),
        R("no arguments", None, {USAGE}, args=lambda i, o: []),
        R("only IN, no OUT", lambda m: m.wav, {USAGE}, args=lambda i, o: [i]),
        R("IN does not exist", None, {"io_error"}, args=lambda i, o: [i + ".missing", o]),
        # read() of a directory fails with EISDIR: an I/O error, not an empty file.
        R("IN is a directory", None, {"io_error"},
          args=lambda i, o: [os.path.dirname(o), o]),
        # OUT's directory does not exist: the out/ directory itself stays empty.
        R("OUT in a directory that does not exist", lambda m: m.wav, {"io_error"},
          args=lambda i, o: [i, os.path.join(os.path.dirname(o), "nope", "out.ogg")]),
    ]
    assert all(c.allowed <= set(ERRORS) | {USAGE, ACCEPTED} for c in cases), \
        "a typo in an allowed code"
    return cases


def ext_subformat(m, sub):
    fmt = wav_fmt_chunk(RATE, 1, 16, extensible=True)
    # the subformat GUID's first two bytes sit after: "fmt " 8 + 16 base + cbSize 2 + valid 2
    # + mask 4 = offset 32 in the chunk
    fmt = fmt[:32] + struct.pack("<H", sub) + fmt[34:]
    return wav_bytes(m.pcm, RATE, 1, 16, fmt=fmt)


def wav_with_trailing_chunk(m, size):
    """The base clip with a LIST chunk of `size` zero bytes after its data chunk."""
    riff = m.wav[8:] + chunk(b"LIST", bytes(size))
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def noise_m80():
    rng = random.Random(80)
    sigma = 10 ** (-80 / 20) * 32768  # 3.3 LSB RMS
    pcm = struct.pack(f"<{2 * RATE}h", *(max(-32768, min(32767, round(rng.gauss(0, sigma))))
                                        for _ in range(2 * RATE)))
    return wav_bytes(pcm, RATE, 1, 16)


def quiet_tone():
    amp = 10 ** (-90 / 20) * 32767  # about 1 LSB: a few codes of a 16-bit sine
    pcm = b"".join(struct.pack("<h", int(round(amp * __import__("math").sin(
        2 * 3.141592653589793 * 440 * i / RATE)))) for i in range(2 * RATE))
    return wav_bytes(pcm, RATE, 1, 16)


# ---------------------------------------------------------------------------------------------
# Sweeps: cut and mutated files. Any outcome is fine when it is consistent.

def judge_any(run, out_dir):
    """Problems with a run that may succeed or fail, but must do either cleanly."""
    p = []
    crash = run.crash()
    if crash:
        return [f"crash: {crash}"]
    left = sorted(os.listdir(out_dir))
    if run.rc == 0:
        if left != ["out.ogg"]:
            p.append(f"exit 0 but the output directory holds {left}")
        elif run.json is None or "output_bytes" not in run.json:
            p.append(f"exit 0 without a success JSON line ({run.json_error})")
        else:
            err = measure.decode_errors(os.path.join(out_dir, "out.ogg"))
            if err:
                p.append("exit 0 but ffmpeg fails to decode the output: " + err[:300])
    else:
        if left:
            p.append(f"exit {run.rc} but the output directory holds {left}")
        code = (run.json or {}).get("error", {}).get("code") if run.json else None
        if run.rc == EXIT_USAGE or code not in ERRORS or ERRORS[code] != run.rc:
            p.append(f"exit {run.rc} with JSON {run.lines[:1]}")
    return p


def sweep_case(program, m, name, variants, work):
    """variants: fn(materials) -> [(label, bytes)]."""
    check = "every variant: no crash, and success with a valid file or an error without one"

    def fn():
        d = os.path.join(work, name.replace(" ", "_"))
        bad = []
        outcomes = {}
        items = variants(m)
        for i, (label, data) in enumerate(items):
            in_path = os.path.join(d, f"v{i}.bin")
            out_dir = os.path.join(d, f"out{i}")
            os.makedirs(out_dir)
            with open(in_path, "wb") as f:
                f.write(data)
            run = tap.run_program(program, [in_path, os.path.join(out_dir, "out.ogg")])
            p = judge_any(run, out_dir)
            key = "ok" if run.rc == 0 else ((run.json or {}).get("error") or {}).get("code", "?")
            outcomes[key] = outcomes.get(key, 0) + 1
            if p:
                bad.append(f"{label}: " + "; ".join(p))
                if any(x.startswith("crash") for x in p):
                    bad += ["  " + x for x in run.describe()]
            shutil.rmtree(out_dir, ignore_errors=True)
            os.unlink(in_path)
        summary = f"{len(items)} variants; outcomes: " + ", ".join(
            f"{k} x{v}" for k, v in sorted(outcomes.items()))
        return {check: (not bad, bad + [summary])}
    return tap.Case(name, [check], fn)


def cuts(data, count):
    """Prefixes of data: every length up to 64 bytes in coarse steps, then spread evenly."""
    lengths = sorted(set([1, 2, 4, 8, 11, 12, 16, 20, 24, 28, 35, 36, 40, 44, 47, 60] + [
        len(data) * k // count for k in range(1, count)]))
    return [(f"first {n} bytes", data[:n]) for n in lengths if n < len(data)]


def mutations(data, count, seed, protect=0):
    """Copies of data with 1-4 random bytes overwritten (seeded, so failures reproduce)."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        b = bytearray(data)
        spots = []
        for _ in range(rng.randint(1, 4)):
            # half the time hit the first 200 bytes, where the headers are
            limit = min(len(b), 200) if rng.random() < 0.5 else len(b)
            pos = rng.randrange(protect, limit)
            b[pos] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
            spots.append(pos)
        out.append((f"seed {seed} #{k}: bytes {spots} overwritten", bytes(b)))
    return out


def ogg_mutations(data, count, seed):
    """Copies of an Ogg file with 1-3 body bytes overwritten and every CRC made right again,
    so the damage gets past the page layer into OpusHead, OpusTags and the Opus packets."""
    rng = random.Random(seed)
    pages = measure.ogg_pages(data)
    out = []
    for k in range(count):
        replace = {}
        spots = []
        for _ in range(rng.randint(1, 3)):
            i = rng.choice([0, 0, 1, 2, rng.randrange(len(pages))])  # headers more often
            lacing, body = replace.get(i, (pages[i].lacing, bytearray(pages[i].body)))
            if not body:
                continue
            pos = rng.randrange(min(len(body), 40) if rng.random() < 0.6 else len(body))
            body[pos] = rng.choice([0x00, 0xFF, 0x01, 0x80, rng.randrange(256)])
            replace[i] = (lacing, body)
            spots.append((i, pos))
        fixed = ogg_rebuild(data, replace={i: (l, bytes(b)) for i, (l, b) in replace.items()})
        out.append((f"seed {seed} #{k}: (page, body byte) {spots} overwritten, CRCs fixed",
                    fixed))
    return out


def one_second(m):
    """Shorter materials for the sweeps (each successful variant is a full transcode)."""
    return wav_bytes(m.pcm[:RATE * 2 * 1], RATE, 1, 16)


# ---------------------------------------------------------------------------------------------
# Killed or limited midway: OUT as it was before, and no temporary file

OLD_OUT = b"the OUT that was there before"


def long_clip(m, d):
    """5 minutes of speech (the base clip 100 times): seconds of work under ASan."""
    path = os.path.join(d, "long.wav")
    with open(path, "wb") as f:
        f.write(wav_bytes(m.pcm * 100, RATE, 1, 16))
    return path


def out_dir_problems(out_dir):
    left = sorted(os.listdir(out_dir))
    if left != ["out.ogg"]:
        return [f"the output directory holds {left}: expected only the OUT that was there"]
    with open(os.path.join(out_dir, "out.ogg"), "rb") as f:
        if f.read() != OLD_OUT:
            return ["the OUT that was there before was changed"]
    return []


def signal_case(program, m, work):
    # A signal the test's own process ignores would be ignored by the program too.
    sigs = [s for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
            if signal.getsignal(s) != signal.SIG_IGN]
    checks = [f"{s.name} while the output is written: killed by it, OUT as it was, no "
              f"temporary file left" for s in sigs]

    def fn():
        d = os.path.join(work, "signals")
        os.makedirs(d)
        in_path = long_clip(m, d)
        res = {}
        for sig, check in zip(sigs, checks):
            out_dir = os.path.join(d, sig.name)
            os.makedirs(out_dir)
            with open(os.path.join(out_dir, "out.ogg"), "wb") as f:
                f.write(OLD_OUT)
            proc = subprocess.Popen([program, in_path, os.path.join(out_dir, "out.ogg")],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            # Wait until the encoded pages are being written to the temporary file.
            writing = False
            deadline = time.monotonic() + tap.PROGRAM_TIMEOUT_S
            while not writing and proc.poll() is None and time.monotonic() < deadline:
                writing = any(n.startswith(".") and os.path.getsize(os.path.join(out_dir, n))
                              for n in os.listdir(out_dir))
                time.sleep(0.005)
            if writing:
                proc.send_signal(sig)
            else:
                proc.kill()
            out, err = proc.communicate()
            p = [] if writing else ["the program ended (or hung) before it wrote the output"]
            if proc.returncode != -sig:
                p.append(f"exit status {proc.returncode}, expected death by {sig.name}")
            if any(marker in err.decode(errors="replace") for marker in tap.SANITIZER_MARKERS):
                p.append("stderr: " + err.decode(errors="replace")[:600])
            p += out_dir_problems(out_dir)
            res[check] = (not p, p)
        return res
    return tap.Case("a signal midway", checks, fn)


def file_size_limit_case(program, m, work):
    checks = ["a file size limit (ulimit -f) reached midway: io_error, exit 2, naming OUT and "
              "why, OUT as it was, no temporary file left"]

    def fn():
        d = os.path.join(work, "fsize")
        out_dir = os.path.join(d, "out")
        os.makedirs(out_dir)
        in_path = long_clip(m, d)
        with open(os.path.join(out_dir, "out.ogg"), "wb") as f:
            f.write(OLD_OUT)
        out = os.path.join(out_dir, "out.ogg")
        run = tap.run_program("prlimit", ["--fsize=65536", program, in_path, out])
        p = []
        crash = run.crash()
        if crash:
            p.append(f"crash: {crash}")
        err = (run.json or {}).get("error") or {}
        said = f"cannot write the output {out}: {os.strerror(errno.EFBIG)}"
        if err.get("code") != "io_error" or run.rc != ERRORS["io_error"] or \
                err.get("message") != said:
            p.append(f"exit {run.rc}, error {err}: expected io_error, exit 2, {said!r}")
        p += out_dir_problems(out_dir)
        return {checks[0]: (not p, p + (run.describe() if p else []))}
    return tap.Case("a file size limit midway", checks, fn)


def result_unwritten_case(program, m, work):
    checks = ["stdout a full disk (its result line unwritten): exit 2 (io_error) and said on "
              "stderr, OUT complete, no temporary file left"]

    def fn():
        d = os.path.join(work, "stdout-full")
        out_dir = os.path.join(d, "out")
        os.makedirs(out_dir)
        in_path = os.path.join(d, "in.wav")
        with open(in_path, "wb") as f:
            f.write(one_second(m))
        out = os.path.join(out_dir, "out.ogg")
        with open("/dev/full", "w") as full:
            run = subprocess.run([program, in_path, out], stdout=full,
                                 stderr=subprocess.PIPE, text=True, timeout=120)
        p = []
        if run.returncode != ERRORS["io_error"] or "result line" not in run.stderr:
            p.append(f"exit {run.returncode}, stderr {run.stderr.strip()!r}: expected exit 2 "
                     "and the reason")
        left = sorted(os.listdir(out_dir))
        with open(out, "rb") if os.path.exists(out) else open(os.devnull, "rb") as f:
            head = f.read(4)
        if left != ["out.ogg"] or head != b"OggS":
            p.append(f"the output directory holds {left}, OUT starts {head!r}: expected a "
                     "complete OUT alone")
        return {checks[0]: (not p, p)}
    return tap.Case("the result line unwritten", checks, fn)


def one_second_in(m, work, name):
    """A new directory work/name holding in.wav, a second of the materials' speech: (d, path)."""
    d = os.path.join(work, name)
    os.makedirs(d)
    in_path = os.path.join(d, "in.wav")
    with open(in_path, "wb") as f:
        f.write(one_second(m))
    return d, in_path


def special_out_case(program, m, work):
    """OUT that is not a regular file: renaming the output over it would replace it (as root,
    `jiayin-transcode IN /dev/null` made /dev/null a voice file). Refused before any work."""
    kinds = [("a FIFO", os.mkfifo, lambda p: stat.S_ISFIFO(os.lstat(p).st_mode)),
             ("a symbolic link to /dev/null", lambda p: os.symlink(os.devnull, p),
              os.path.islink),
             ("a directory", os.mkdir, os.path.isdir)]
    checks = [f"OUT {k}: io_error, exit 2, naming OUT and why; OUT as it was, no temporary "
              "file left" for k, _, _ in kinds]

    def fn():
        d, in_path = one_second_in(m, work, "special-out")
        res = {}
        for (kind, make, still), check in zip(kinds, checks):
            out_dir = os.path.join(d, kind.split()[-1].replace("/", "_"))
            os.makedirs(out_dir)
            out = os.path.join(out_dir, "out.ogg")
            make(out)
            run = tap.run_program(program, [in_path, out])
            p = []
            err = (run.json or {}).get("error") or {}
            said = f"the output {out} is there and is not a regular file"
            if err.get("code") != "io_error" or run.rc != ERRORS["io_error"] \
                    or not err.get("message", "").startswith(said):
                p.append(f"exit {run.rc}, error {err}: expected io_error, exit 2, "
                         f"{said!r}...")
            left = sorted(os.listdir(out_dir))
            if left != ["out.ogg"] or not still(out):
                p.append(f"the output directory holds {left}, OUT "
                         f"{'is no longer ' + kind if left == ['out.ogg'] else 'gone'}")
            res[check] = (not p, p + (run.describe() if p else []))
        return res
    return tap.Case("OUT not a regular file", checks, fn)


def linked_out_case(program, m, work):
    """OUT a symbolic link: written through, the file it names replaced and the link kept (the
    link was replaced: as root, `jiayin-transcode IN /dev/stdout > file` replaced the system's
    /dev/stdout link with the voice file); a link to nothing is refused, the link kept."""
    checks = ["OUT a symbolic link to a file: the file holds the voice, the link stays a link",
              "OUT a symbolic link to nothing: io_error, exit 2, naming it, the link kept, "
              "nothing made"]

    def fn():
        d, in_path = one_second_in(m, work, "linked-out")
        target, link = os.path.join(d, "target.ogg"), os.path.join(d, "link.ogg")
        with open(target, "wb") as f:
            f.write(b"old")
        os.symlink("target.ogg", link)
        run = tap.run_program(program, [in_path, link])
        with open(target, "rb") as f:
            head = f.read(4)
        left = sorted(os.listdir(d))
        p = [] if run.rc == 0 and os.path.islink(link) and head == b"OggS" and \
            left == ["in.wav", "link.ogg", "target.ogg"] else \
            [f"exit {run.rc}, link {'kept' if os.path.islink(link) else 'replaced'}, "
             f"target starts {head!r}, the directory holds {left}"]
        res = {checks[0]: (not p, p + (run.describe() if p else []))}
        dangling = os.path.join(d, "nowhere.ogg")
        os.symlink("missing/none.ogg", dangling)
        run = tap.run_program(program, [in_path, dangling])
        err = (run.json or {}).get("error") or {}
        left = sorted(os.listdir(d))
        p = [] if err.get("code") == "io_error" and run.rc == ERRORS["io_error"] and \
            err.get("message") == f"the output {dangling} is a symbolic link to nothing" and \
            os.path.islink(dangling) and left == ["in.wav", "link.ogg", "nowhere.ogg",
                                                  "target.ogg"] else \
            [f"exit {run.rc}, error {err}, the directory holds {left}"]
        res[checks[1]] = (not p, p + (run.describe() if p else []))
        return res
    return tap.Case("OUT a symbolic link", checks, fn)


def named_option_case(program, m, work):
    """A value refused names its option (the message was the same for every one), and a
    fraction where a whole number is asked for is refused (--complexity 5.5 was taken as 5)."""
    bad = [["--complexity", "5.5"], ["--max-input-bytes", "1000.5"], ["--bitrate", "65"],
           ["--min-duration", "10", "--max-duration", "5"]]
    checks = [f"{' '.join(a)}: invalid_argument, exit 3, naming {a[-2]} {a[-1]}, nothing made"
              for a in bad]

    def fn():
        d, in_path = one_second_in(m, work, "named-option")
        res = {}
        for a, check in zip(bad, checks):
            out = os.path.join(d, "out.ogg")
            run = tap.run_program(program, a + [in_path, out])
            err = (run.json or {}).get("error") or {}
            p = [] if err.get("code") == "invalid_argument" and \
                run.rc == ERRORS["invalid_argument"] and \
                f"{a[-2]} {a[-1]}" in err.get("message", "") and not os.path.exists(out) \
                else [f"exit {run.rc}, error {err}, OUT {'made' if os.path.exists(out) else 'absent'}"]
            res[check] = (not p, p + (run.describe() if p else []))
        return res
    return tap.Case("an option refused is named", checks, fn)


def piped_in_case(program, m, work):
    """IN a pipe: refused at once, saying IN must be a file (the tool reads it twice). A FIFO
    with no writer blocked in open() for ever; /dev/stdin from a pipe said 'Illegal seek'."""
    checks = ["IN a FIFO no one writes to: io_error at once, naming it and saying IN must be a "
              "file",
              "IN /dev/stdin from a pipe: io_error, naming it and saying IN must be a file, "
              "nothing made"]

    def fn():
        d, wav = one_second_in(m, work, "piped-in")
        fifo, out = os.path.join(d, "in.fifo"), os.path.join(d, "out.ogg")
        os.mkfifo(fifo)
        res = {}
        try:
            run = subprocess.run([program, fifo, out], capture_output=True, text=True,
                                 timeout=20, stdin=subprocess.DEVNULL)
            got = (run.returncode, run.stdout)
        except subprocess.TimeoutExpired:
            got = (None, "still waiting after 20 s")
        said = f"the input {fifo} is a pipe or a socket"
        p = [] if got[0] == ERRORS["io_error"] and "must be a file" in got[1] and \
            said in got[1] and not os.path.exists(out) else [f"exit {got[0]}: {got[1].strip()}"]
        res[checks[0]] = (not p, p)
        feeder = subprocess.Popen(["cat", wav], stdout=subprocess.PIPE)
        run = subprocess.run([program, "/dev/stdin", out], capture_output=True, text=True,
                             timeout=60, stdin=feeder.stdout)
        feeder.stdout.close()
        feeder.kill()
        feeder.wait()
        p = [] if run.returncode == ERRORS["io_error"] and "must be a file" in run.stdout and \
            "the input /dev/stdin is a pipe" in run.stdout and not os.path.exists(out) else \
            [f"exit {run.returncode}: {run.stdout.strip()}"]
        res[checks[1]] = (not p, p)
        return res
    return tap.Case("IN a pipe", checks, fn)


def as_another_user(program, scratch):
    """(program, run kwargs) to run the program as a user the files' modes stop: itself, or as
    root (whom no mode stops) a copy in `scratch` run as uid/gid 65534."""
    if os.geteuid() != 0:
        return program, {}
    os.chmod(scratch, 0o711)
    copy = os.path.join(scratch, "jiayin-transcode")
    shutil.copy(program, copy)
    return copy, {"user": 65534, "group": 65534, "extra_groups": []}


def named_io_error_case(program, m, work):
    """An I/O error says which file failed and names it: every one said "reading the input or
    writing the output failed: No such file or directory", the input missing or the output's
    folder, and a user could not tell which."""
    enoent, eacces = os.strerror(errno.ENOENT), os.strerror(errno.EACCES)
    kinds = ["IN missing", "IN unreadable (mode 000)", "IN a directory",
             "IN failing when read (/proc/self/mem)", "OUT in a folder that does not exist",
             "OUT in a folder not writable", "OUT a bare name, the current folder not writable",
             "IN missing, its path not UTF-8 and with a quote"]
    checks = [f"{k}: io_error, exit 2, the message naming the file and why; nothing made"
              for k in kinds]

    def fn():
        d, wav = one_second_in(m, work, "named-io-error")
        scratch = tempfile.mkdtemp(prefix="jiayin-e2e-modes-")
        try:
            return named_io_errors(program, d, wav, scratch)
        finally:
            for root, dirs, _ in os.walk(scratch):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o755)
            shutil.rmtree(scratch, ignore_errors=True)

    def named_io_errors(program, d, wav, scratch):
        out_dir = os.path.join(d, "out")
        os.mkdir(out_dir)
        out = os.path.join(out_dir, "out.ogg")
        # The modes' cases: files only another user (or the user, when not root) may not use.
        other, kwargs = as_another_user(program, scratch)
        locked_in = os.path.join(scratch, "locked.wav")
        shutil.copy(wav, locked_in)
        os.chmod(locked_in, 0o000)
        shut = os.path.join(scratch, "shut")
        os.mkdir(shut, 0o555)
        open_out = os.path.join(scratch, "open")  # where the modes' runs may write
        os.mkdir(open_out, 0o777)
        missing = os.path.join(d, "nope.wav")
        odd = os.path.join(d, "dit \"quoted\" \udcff.wav")  # a byte 0xff, not UTF-8
        shown_odd = os.path.join(d, "dit \"quoted\" \ufffd.wav")
        runs = [  # (argv, cwd, use `other`, the message, where nothing may appear)
            ([missing, out], None, False, f"cannot open the input {missing}: {enoent}",
             out_dir),
            ([locked_in, os.path.join(open_out, "out.ogg")], None, True,
             f"cannot open the input {locked_in}: {eacces}", open_out),
            ([d, out], None, False,
             f"cannot read the input {d}: {os.strerror(errno.EISDIR)}", out_dir),
            (["/proc/self/mem", out], None, False,
             f"cannot read the input /proc/self/mem: {os.strerror(errno.EIO)}", out_dir),
            ([wav, os.path.join(out_dir, "nope", "out.ogg")], None, False,
             f"cannot write the output in {os.path.join(out_dir, 'nope')}: {enoent}",
             out_dir),
            ([os.path.join(open_out, "in.wav"), os.path.join(shut, "out.ogg")], None, True,
             f"cannot write the output in {shut}: {eacces}", shut),
            ([os.path.join(open_out, "in.wav"), "out.ogg"], shut, True,
             f"cannot write the output in {os.path.realpath(shut)}: {eacces}", shut),
            ([odd, out], None, False, f"cannot open the input {shown_odd}: {enoent}",
             out_dir),
        ]
        shutil.copy(wav, os.path.join(open_out, "in.wav"))
        os.chmod(os.path.join(open_out, "in.wav"), 0o644)
        res = {}
        for (args, cwd, use_other, said, watched), check in zip(runs, checks):
            argv = [other if use_other else program] + [os.fsencode(a) for a in args]
            before = sorted(os.listdir(watched))
            proc = subprocess.run(argv, capture_output=True, timeout=tap.PROGRAM_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL, cwd=cwd,
                                  **(kwargs if use_other else {}))
            p = []
            try:  # strict UTF-8: a path's stray byte must not reach the line
                err = json.loads(proc.stdout.decode("utf-8")).get("error") or {}
            except ValueError as e:
                err = {}
                p.append(f"stdout is not one JSON line: {e}")
            if proc.returncode != ERRORS["io_error"] or err.get("code") != "io_error" or \
                    err.get("message") != said:
                p.append(f"exit {proc.returncode}, error {err}: expected io_error, exit 2, "
                         f"{said!r}")
            if sorted(os.listdir(watched)) != before:
                p.append(f"{watched} holds {sorted(os.listdir(watched))}, had {before}")
            stderr = proc.stderr.decode(errors="replace")
            if any(marker in stderr for marker in tap.SANITIZER_MARKERS):
                p.append("stderr: " + stderr[:600])
            res[check] = (not p, p)
        return res
    return tap.Case("an I/O error names its file", checks, fn)


def same_file_case(program, m, work):
    """OUT naming the same file as IN: the recording was replaced by its own transcode (exit 0).
    Refused as a usage error before anything is read, IN left as it was."""
    def hard_link(d):
        os.link(os.path.join(d, "in.wav"), os.path.join(d, "hard.ogg"))
        return "hard.ogg"

    def symbolic_link(d):
        os.symlink("in.wav", os.path.join(d, "sym.ogg"))
        return "sym.ogg"
    spellings = [("the same path", lambda d: "in.wav"),
                 ("./in.wav for in.wav", lambda d: "./in.wav"),
                 ("a hard link to IN", hard_link), ("a symbolic link to IN", symbolic_link)]
    checks = [f"OUT {k}: exit 64, said on stderr, nothing on stdout; IN byte for byte as it "
              "was, nothing made" for k, _ in spellings]

    def fn():
        res = {}
        for i, ((kind, make), check) in enumerate(zip(spellings, checks)):
            d, in_path = one_second_in(m, work, f"same-file-{i}")
            with open(in_path, "rb") as f:
                before = f.read()
            in_arg, out_arg = "in.wav", make(d)
            listed = sorted(os.listdir(d))
            run = subprocess.run([program, in_arg, out_arg], capture_output=True, text=True,
                                 timeout=tap.PROGRAM_TIMEOUT_S, stdin=subprocess.DEVNULL,
                                 cwd=d)
            with open(in_path, "rb") as f:
                after = f.read()
            p = []
            if run.returncode != EXIT_USAGE or run.stdout or \
                    f"IN {in_arg} and OUT {out_arg} are the same file" not in run.stderr:
                p.append(f"exit {run.returncode}, stdout {run.stdout.strip()[:200]!r}, stderr "
                         f"{run.stderr.strip()[:300]!r}: expected 64 and 'IN {in_arg} and OUT "
                         f"{out_arg} are the same file' on stderr")
            if after != before:
                p.append(f"IN was changed: it starts {after[:4]!r}, {len(after)} bytes "
                         f"({len(before)} before)")
            if sorted(os.listdir(d)) != listed or (kind.startswith("a symbolic") and
                                                   not os.path.islink(os.path.join(d, out_arg))):
                p.append(f"the directory holds {sorted(os.listdir(d))}, had {listed}")
            res[check] = (not p, p)
        return res
    return tap.Case("OUT the same file as IN", checks, fn)


def bytes_read(pid):
    """What process `pid` has read so far (/proc/PID/io rchar), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/io") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("rchar:"))
    except (OSError, StopIteration, ValueError):
        return None


def shrunk_in_case(program, m, work):
    """IN cut to half by another program while the tool reads it: the codec's verdict was about
    neither file, 'the file ends before the audio it announces' for a WAV that did not, or a
    success with half the clip for a WAV of unknown length (a recorder's streaming sizes) cut
    during the first pass, or a stray 'No such file or directory' for one cut during the encode.
    Refused io_error saying IN got shorter; an OUT already there kept, no temporary file."""
    sizes = [("a WAV", False), ("a WAV of unknown length (sizes 0xFFFFFFFF)", True)]
    moments = ["while the first pass reads it", "while the output is written"]
    kinds = [(f"{w} cut to half {when}", unknown, when == moments[0])
             for w, unknown in sizes for when in moments]
    checks = [f"{k}: io_error, exit 2, saying IN got shorter and how much; OUT as it was, no "
              "temporary file left" for k, _, _ in kinds]

    def fn():
        d = os.path.join(work, "shrunk-in")
        os.makedirs(d)
        clip = long_clip(m, d)
        with open(clip, "rb") as f:
            data = bytearray(f.read())
        res = {}
        for i, ((kind, unknown, first), check) in enumerate(zip(kinds, checks)):
            out_dir = os.path.join(d, f"out{i}")
            os.makedirs(out_dir)
            out = os.path.join(out_dir, "out.ogg")
            with open(out, "wb") as f:
                f.write(OLD_OUT)
            in_path = os.path.join(d, f"in{i}.wav")
            with open(in_path, "wb") as f:
                if unknown:  # RIFF and data sizes as a recorder writes them before it knows
                    at = data.index(b"data")
                    f.write(data[:4] + b"\xff" * 4 + data[8:at + 4] + b"\xff" * 4 + data[at + 8:])
                else:
                    f.write(data)
            size = os.path.getsize(in_path)
            proc = subprocess.Popen([program, in_path, out], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            # The first pass: 1 MB of IN read, nothing written yet. The encode: pages written.
            writing = cut = False
            deadline = time.monotonic() + tap.PROGRAM_TIMEOUT_S
            while not cut and proc.poll() is None and time.monotonic() < deadline:
                writing = any(n.startswith(".") and os.path.getsize(os.path.join(out_dir, n))
                              for n in os.listdir(out_dir))
                if first:
                    ready = (bytes_read(proc.pid) or 0) > 1 << 20
                else:
                    ready = writing
                if ready:
                    os.truncate(in_path, size // 2)
                    cut = True
                time.sleep(0.001)
            if not cut:
                proc.kill()
            stdout, stderr = proc.communicate()
            p = [] if cut else ["the program ended (or hung) before IN could be cut"]
            if first and writing:
                p.append("IN was cut after the output was begun, not in the first pass")
            said = f"the input {in_path} got shorter while it was read ({size} bytes, " \
                f"then {size // 2})"
            try:
                err = json.loads(stdout).get("error") or {}
            except ValueError:
                err = {}
            if proc.returncode != ERRORS["io_error"] or err.get("code") != "io_error" or \
                    not err.get("message", "").startswith(said):
                p.append(f"exit {proc.returncode}, stdout {stdout.decode()[:300]!r}: expected "
                         f"io_error, exit 2, {said!r}...")
            stderr = stderr.decode(errors="replace")
            if any(marker in stderr for marker in tap.SANITIZER_MARKERS):
                p.append("stderr: " + stderr[:600])
            p += out_dir_problems(out_dir)
            res[check] = (not p, p)
        return res
    return tap.Case("IN cut short while it is read", checks, fn)


def main(argv):
    program = tap.check_setup(argv[1] if len(argv) > 1 else None, inputs.TOOLS)
    if program is None:
        return 1
    tmp = tempfile.mkdtemp(prefix="jiayin-e2e-malformed-")
    try:
        try:
            m = Materials(os.path.join(tmp, "materials"))
        except (inputs.GenerationError, OSError) as e:
            return tap.report_setup_failure("making the materials", [str(e)])
        work = os.path.join(tmp, "cases")
        cases = [rejection_case(program, m, c, work) for c in the_cases()]
        cases += [signal_case(program, m, work), file_size_limit_case(program, m, work),
                  result_unwritten_case(program, m, work),
                  special_out_case(program, m, work), linked_out_case(program, m, work),
                  named_option_case(program, m, work), piped_in_case(program, m, work),
                  named_io_error_case(program, m, work), same_file_case(program, m, work),
                  shrunk_in_case(program, m, work)]
        cases += [
            sweep_case(program, m, "WAV cut at many lengths",
                       lambda m: cuts(one_second(m), 12), work),
            sweep_case(program, m, "Ogg Opus cut at many lengths",
                       lambda m: cuts(m.ogg, 16), work),
            sweep_case(program, m, "WebM Opus cut at many lengths",
                       lambda m: cuts(m.webm, 16), work),
            sweep_case(program, m, "WAV with random bytes overwritten",
                       lambda m: mutations(one_second(m), 16, seed=1), work),
            sweep_case(program, m, "Ogg Opus with random bytes overwritten",
                       lambda m: mutations(m.ogg, 8, seed=2), work),
            sweep_case(program, m, "Ogg Opus with random body bytes overwritten, CRCs fixed",
                       lambda m: ogg_mutations(m.ogg, 16, seed=4), work),
            sweep_case(program, m, "WebM Opus with random bytes overwritten",
                       lambda m: mutations(m.webm, 16, seed=3), work),
        ]
        return tap.run(cases, workers=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
