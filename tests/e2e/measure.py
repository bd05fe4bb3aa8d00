"""
measure.py — independent measurements of audio files for the end-to-end tests.

Everything here asks tools that share no code with Jiayin's codec: ffmpeg's ebur128 filter for
loudness and true peak, ffmpeg's decoders for sample counts and decode errors, opusinfo for
RFC 7845 conformance warnings, plus a small pure-Python Ogg page reader (with its own CRC) so
the tests can look at pages, granule positions, serial numbers and OpusHead fields directly.
"""
import re
import struct
import subprocess

FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner"]


class ToolError(Exception):
    pass


def _run(argv, timeout=300):
    return subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# Loudness (EBU R128 via ffmpeg's ebur128 filter)

_SUMMARY = re.compile(r"Summary:(.*)", re.S)
_I = re.compile(r"^\s*I:\s*(-?(?:\d+(?:\.\d+)?|inf))\s*LUFS", re.M)
_PEAK = re.compile(r"True peak:\s*\n\s*Peak:\s*(-?(?:\d+(?:\.\d+)?|inf))\s*dBFS", re.M)


def parse_ebur128_summary(text):
    """(integrated LUFS, true peak dBFS or None) from ffmpeg's ebur128 log; ToolError if absent.

    The summary looks like:
        Integrated loudness:
          I:         -16.0 LUFS
        ...
        True peak:
          Peak:       -1.2 dBFS
    Only the text after the last "Summary:" is read, so per-frame lines cannot be mistaken for it.
    """
    idx = text.rfind("Summary:")
    if idx < 0:
        raise ToolError("ffmpeg printed no ebur128 summary")
    summary = text[idx:]
    m = _I.search(summary)
    if not m:
        raise ToolError("no 'I: ... LUFS' line in the ebur128 summary:\n" + summary[:800])
    integrated = float(m.group(1))
    p = _PEAK.search(summary)
    peak = float(p.group(1)) if p else None
    return integrated, peak


def _is_ogg(path):
    with open(path, "rb") as f:
        return f.read(4) == b"OggS"


def ebur128(path, pre_filter=None):
    """Measure a file: (integrated LUFS, true peak dBFS). pre_filter runs before ebur128.

    Ogg Opus is decoded with libopus (RFC 6716's reference decoder, the one browsers and
    Android play with), not ffmpeg 5.1's native Opus decoder: on some of our streams (a
    100-4000 Hz sweep) the native decoder's output differs from libopus's and opusdec's by up to
    2 LU and 13 dB of peak in mid-file, where the two reference-based decoders agree with each
    other and with Jiayin's own check. test_transcode.py still has the native decoder decode
    every output without error.
    """
    chain = "ebur128=peak=true:framelog=verbose"
    if pre_filter:
        chain = pre_filter + "," + chain
    dec = ["-c:a", "libopus"] if _is_ogg(path) else []
    proc = _run(FFMPEG + ["-nostats"] + dec + ["-i", str(path), "-af", chain, "-f", "null",
                                                "-"])
    text = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise ToolError(f"ffmpeg ebur128 failed on {path}:\n{text[-800:]}")
    return parse_ebur128_summary(text)


# ---------------------------------------------------------------------------------------------
# Decoding with ffmpeg

def decode_errors(path):
    """What `ffmpeg -v error -i PATH -f null -` prints (empty when the file decodes cleanly)."""
    proc = _run(FFMPEG + ["-v", "error", "-i", str(path), "-f", "null", "-"])
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    if proc.returncode != 0 and not text:
        text = f"ffmpeg exited with status {proc.returncode}"
    return text


def decoded_frames(path, rate=None):
    """Sample frames ffmpeg decodes from a file (pre-skip and end trimming applied).

    rate: resample to this rate first (None keeps the stream's rate). Returns (frames, rate)."""
    argv = FFMPEG + ["-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1"]
    if rate:
        argv += ["-ar", str(rate)]
    argv += ["-f", "s16le", "-"]
    proc = _run(argv)
    if proc.returncode != 0:
        raise ToolError(f"ffmpeg could not decode {path}: {proc.stderr.decode(errors='replace')}")
    if rate is None:
        rate = probe_stream(path)["sample_rate"]
    return len(proc.stdout) // 2, rate


def probe_stream(path):
    """ffprobe's view of the first audio stream: codec_name, sample_rate, channels."""
    proc = _run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                 "stream=codec_name,sample_rate,channels", "-of", "default=nw=1", str(path)])
    if proc.returncode != 0:
        raise ToolError(f"ffprobe failed on {path}: {proc.stderr.decode(errors='replace')}")
    info = {}
    for line in proc.stdout.decode().splitlines():
        k, _, v = line.partition("=")
        info[k] = int(v) if v.isdigit() else v
    return info


# ---------------------------------------------------------------------------------------------
# opusinfo

def opusinfo_problems(path):
    """Lines of `opusinfo PATH` that mention a warning or an error ([] when clean)."""
    proc = _run(["opusinfo", str(path)])
    text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    bad = [l for l in text.splitlines() if re.search(r"warning|error", l, re.I)]
    if proc.returncode != 0 and not bad:
        bad = [f"opusinfo exited with status {proc.returncode}"]
    return bad


# ---------------------------------------------------------------------------------------------
# Ogg pages (RFC 3533) and OpusHead (RFC 7845), in plain Python

def _crc_table():
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def ogg_crc(data):
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) & 0xFF) ^ b]
    return crc


class OggPage:
    __slots__ = ("offset", "flags", "granule", "serial", "seq", "crc", "lacing", "header_len",
                 "body", "crc_ok")

    @property
    def size(self):
        return self.header_len + len(self.body)

    @property
    def bos(self):
        return bool(self.flags & 2)

    @property
    def eos(self):
        return bool(self.flags & 4)

    @property
    def continued(self):
        return bool(self.flags & 1)


def ogg_pages(data):
    """Parse every page of an Ogg file; ValueError on anything that is not a clean page run."""
    pages = []
    off = 0
    while off < len(data):
        if data[off:off + 4] != b"OggS":
            raise ValueError(f"no capture pattern at byte {off}")
        if off + 27 > len(data):
            raise ValueError(f"page header at byte {off} is truncated")
        (_, version, flags, granule, serial, seq, crc, nseg) = struct.unpack_from(
            "<4sBBqIIIB", data, off)
        if version != 0:
            raise ValueError(f"page at byte {off} has version {version}")
        lacing = data[off + 27:off + 27 + nseg]
        if len(lacing) != nseg:
            raise ValueError(f"lacing table at byte {off} is truncated")
        header_len = 27 + nseg
        body_len = sum(lacing)
        body = data[off + header_len:off + header_len + body_len]
        if len(body) != body_len:
            raise ValueError(f"page body at byte {off} is truncated")
        p = OggPage()
        p.offset, p.flags, p.granule, p.serial, p.seq, p.crc = off, flags, granule, serial, seq, crc
        p.lacing, p.header_len, p.body = bytes(lacing), header_len, bytes(body)
        raw = bytearray(data[off:off + header_len + body_len])
        raw[22:26] = b"\0\0\0\0"
        p.crc_ok = ogg_crc(raw) == crc
        pages.append(p)
        off += header_len + body_len
    return pages


def ogg_packets(pages):
    """[(packet bytes, index of the page where it ends)] of a single logical stream."""
    packets = []
    cur = b""
    for i, p in enumerate(pages):
        pos = 0
        for lv in p.lacing:
            cur += p.body[pos:pos + lv]
            pos += lv
            if lv < 255:
                packets.append((cur, i))
                cur = b""
    return packets


def repage(page, **changes):
    """A copy of a parsed page with fields changed (body, flags, granule, seq...) and a fresh CRC.
    The lacing is kept unless `lacing` is given, so a body change must keep segment sizes."""
    flags = changes.get("flags", page.flags)
    granule = changes.get("granule", page.granule)
    serial = changes.get("serial", page.serial)
    seq = changes.get("seq", page.seq)
    lacing = changes.get("lacing", page.lacing)
    body = changes.get("body", page.body)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seq, 0, len(lacing))
    out = bytearray(header + bytes(lacing) + body)
    out[22:26] = struct.pack("<I", ogg_crc(out))
    return bytes(out)


def parse_opus_head(pkt):
    """Fields of an OpusHead packet as a dict; ValueError if it is not one."""
    if len(pkt) < 19 or pkt[:8] != b"OpusHead":
        raise ValueError("not an OpusHead packet")
    version, channels, preskip, rate, gain, family = struct.unpack_from("<BBHIhB", pkt, 8)
    return {"version": version, "channels": channels, "preskip": preskip, "input_rate": rate,
            "output_gain": gain, "family": family, "length": len(pkt)}
