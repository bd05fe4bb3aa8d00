"""
inputs.py — generates the clips the end-to-end tests feed to jiayin-transcode.

Sources are real tools: espeak-ng speaks English and Mandarin, sox synthesises tones and noise,
ffmpeg resamples and writes raw PCM, opusenc and ffmpeg/libopus make Ogg Opus and WebM. WAV
headers are mostly built here byte by byte (wav_bytes), because that is the only way to choose
exactly which variant a file is (plain PCM vs WAVE_FORMAT_EXTENSIBLE, streaming sizes, odd
chunks); a few files are written by sox and ffmpeg as-is, to include real writers' quirks.

Each clip comes with what the tests should expect of it (Clip): format, rate, channels, exact
frame count, and for mono clips ffmpeg's loudness. Run alone it writes the set to a directory:
    python3 inputs.py OUTDIR
"""
import concurrent.futures
import os
import struct
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure  # noqa: E402

CODEC_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "codec", "data")

TOOLS = ["ffmpeg", "ffprobe", "sox", "espeak-ng", "opusenc", "opusinfo"]

SPEECH_EN = "Hello sweetheart, good night. Daddy missed you at the factory today."
SPEECH_CMN = "宝贝，晚安。爸爸今天在工厂想你了。"

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# KSDATAFORMAT_SUBTYPE_{PCM,IEEE_FLOAT,ALAW,MULAW}: the format tag, then
# 00000000-0010-8000-00aa00389b71.
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")

# ffmpeg raw sample formats by (bits, float)
_RAW_FMT = {(8, False): "u8", (16, False): "s16le", (24, False): "s24le", (32, False): "s32le",
            (32, True): "f32le", (64, True): "f64le"}


class GenerationError(Exception):
    pass


class Clip:
    """One generated input and what the program should report about it."""

    def __init__(self, name, path, input_format, rate, channels, frames, note=""):
        self.name = name
        self.path = path
        self.input_format = input_format  # "wav", "ogg_opus" or "webm_opus", as in the JSON
        self.rate = rate                  # sample_rate the JSON must report (48000 for Opus)
        self.channels = channels
        self.frames = frames              # input frames at `rate` (ffmpeg's decode for Opus)
        self.note = note                  # how it was made, for diagnostics
        self.mono_lufs = None             # ffmpeg's integrated loudness when channels == 1
        self.tags = set()                 # "quiet", "loud", "long", "speech", ...
        self.options = []                 # jiayin-transcode options this clip is run with
        self.quiet_s = None               # (start, end) s of a quiet part, for "bound" clips

    @property
    def duration_s(self):
        return self.frames / self.rate

    def __repr__(self):
        return (f"Clip({self.name}: {self.input_format} {self.rate} Hz {self.channels} ch "
                f"{self.frames} frames; {self.note})")


def run(argv, stdout=None):
    proc = subprocess.run([str(a) for a in argv], capture_output=stdout is None, stdout=stdout,
                          stdin=subprocess.DEVNULL, timeout=300)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace") if proc.stderr else ""
        raise GenerationError(f"{' '.join(map(str, argv))} failed ({proc.returncode}):\n{err}")
    return proc


def sox(*argv):
    """sox, quiet, in repeatable mode (-R): the same noise and dither every run."""
    return run(["sox", "-V1", "-R", *argv])


# ---------------------------------------------------------------------------------------------
# WAV building

def wav_fmt_chunk(rate, channels, bits, is_float=False, extensible=False, valid_bits=None,
                  channel_mask=None, tag=None, block_align=None, byte_rate=None, sub_tag=None):
    """A complete "fmt " chunk (header included). Every field can be overridden to lie;
    sub_tag is EXTENSIBLE's subformat when it is neither PCM nor float (G.711)."""
    if block_align is None:
        block_align = channels * ((bits + 7) // 8)
    if byte_rate is None:
        byte_rate = rate * block_align
    if tag is None:
        if extensible:
            tag = WAVE_FORMAT_EXTENSIBLE
        else:
            tag = WAVE_FORMAT_IEEE_FLOAT if is_float else WAVE_FORMAT_PCM
    body = struct.pack("<HHIIHH", tag, channels, rate, byte_rate, block_align, bits)
    if extensible:
        if channel_mask is None:
            channel_mask = {1: 0x4, 2: 0x3, 6: 0x3F}.get(channels, 0)
        sub = WAVE_FORMAT_IEEE_FLOAT if is_float else WAVE_FORMAT_PCM
        if sub_tag is not None:
            sub = sub_tag
        body += struct.pack("<HHI", 22, valid_bits or bits, channel_mask)
        body += struct.pack("<H", sub) + _GUID_TAIL
    elif is_float or tag not in (WAVE_FORMAT_PCM,):
        body += struct.pack("<H", 0)  # cbSize, as non-PCM formats carry it
    return chunk(b"fmt ", body)


def chunk(fourcc, body, size=None):
    """A RIFF chunk with its pad byte; `size` overrides the size field (to lie or stream)."""
    n = len(body) if size is None else size
    pad = b"\0" if len(body) % 2 else b""
    return fourcc + struct.pack("<I", n) + body + pad


def wav_bytes(pcm, rate, channels, bits, is_float=False, extensible=False, riff_size=None,
              data_size=None, before_data=(), after_data=(), fmt=None, fact=None):
    """A WAV file around raw little-endian PCM.

    riff_size/data_size override the size fields (0 or 0xFFFFFFFF for streaming writers);
    before_data/after_data are extra chunks (already serialised); fmt replaces the fmt chunk."""
    if fmt is None:
        fmt = wav_fmt_chunk(rate, channels, bits, is_float, extensible)
    body = fmt
    frames = len(pcm) // (channels * ((bits + 7) // 8))
    if fact or (fact is None and (is_float or extensible)):
        body += chunk(b"fact", struct.pack("<I", frames))
    for c in before_data:
        body += c
    body += chunk(b"data", pcm, data_size)
    for c in after_data:
        body += c
    size = 4 + len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size & 0xFFFFFFFF) + b"WAVE" + body


def rf64_bytes(pcm, rate, channels, bits, is_float=False):
    """An RF64 file (EBU Tech 3306): sizes 0xFFFFFFFF in RIFF and data, real ones in ds64."""
    fmt = wav_fmt_chunk(rate, channels, bits, is_float)
    frames = len(pcm) // (channels * (bits // 8))
    data = chunk(b"data", pcm, 0xFFFFFFFF)
    riff_size = 4 + 36 + len(fmt) + len(data)
    ds64 = chunk(b"ds64", struct.pack("<QQQI", riff_size, len(pcm), frames, 0))
    assert len(ds64) == 36
    return b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + ds64 + fmt + data


def raw_pcm(src, rate, channels, bits, is_float=False, af=None, seconds=None):
    """Decode/resample `src` with ffmpeg into raw little-endian PCM bytes."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-i", src]
    if af:
        argv += ["-af", af]
    if seconds:
        argv += ["-t", str(seconds)]
    argv += ["-ar", str(rate), "-ac", str(channels), "-f", _RAW_FMT[(bits, is_float)], "-"]
    return run(argv).stdout


def knocks_wav(path, seed=1):
    """Knocks in a quiet room: 5 s at 48 kHz (float) of noise at -80 dBFS with five 3 ms
    full-scale bursts of white noise. Broadband clicks are where a short true-peak interpolator
    reads low; their loudness is out of reach (-16 LUFS would need 30 dB of limiting)."""
    import random
    rng = random.Random(seed)
    rate = 48000
    x = [rng.gauss(0, 1) * 1e-4 for _ in range(5 * rate)]
    for _ in range(5):
        at = rng.randrange(0, len(x) - 200)
        burst = [rng.gauss(0, 1) for _ in range(144)]
        top = max(abs(v) for v in burst)
        x[at:at + len(burst)] = [v / top for v in burst]
    return write(path, wav_bytes(struct.pack(f"<{len(x)}f", *x), rate, 1, 32, is_float=True))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def wav_frames(path):
    """Frames in a WAV written by sox/ffmpeg, as ffprobe sees them (decoded sample count)."""
    return measure.decoded_frames(path)[0]


# ---------------------------------------------------------------------------------------------
# Sources

class Sources:
    """Base mono signals every clip is derived from (made once per directory)."""

    def __init__(self, d):
        self.dir = os.path.join(d, "src")
        os.makedirs(self.dir, exist_ok=True)
        self.en = self.path("speech_en.wav")
        self.cmn = self.path("speech_cmn.wav")
        run(["espeak-ng", "-v", "en", "-s", "150", "-w", self.en, SPEECH_EN])
        run(["espeak-ng", "-v", "cmn", "-s", "150", "-w", self.cmn, SPEECH_CMN])

    def path(self, name):
        return os.path.join(self.dir, name)


def sox_synth(path, rate, channels, seconds, *effect, bits=16, encoding="signed-integer"):
    sox("-n", "-r", rate, "-c", channels, "-b", bits, "-e", encoding, path, "synth", seconds,
        *effect)
    return path


# ---------------------------------------------------------------------------------------------
# The clips. Each recipe makes one file and returns its Clip.

def _own_wav(d, name, src, rate, channels, bits, is_float=False, af=None, note="", **kw):
    pcm = raw_pcm(src, rate, channels, bits, is_float, af)
    frames = len(pcm) // (channels * (bits // 8))
    path = write(os.path.join(d, name + ".wav"), wav_bytes(pcm, rate, channels, bits, is_float,
                                                           **kw))
    return Clip(name, path, "wav", rate, channels, frames, note)


STEREO_AF = "pan=stereo|c0=c0|c1=0.6*c0"  # distinct channel levels, so channel order matters


def recipes(src):
    """[(name, fn(outdir) -> Clip)] for every clip of the set."""
    en, cmn = src.en, src.cmn
    r = []

    def add(name, fn, *tags):
        def wrapped(d):
            clip = fn(d, name)
            clip.tags.update(tags)
            return clip
        r.append((name, wrapped))

    # --- WAV written by sox (a real writer)
    def sox_wav(d, name, inp, rate, channels, bits, note, remix=None, effects=()):
        path = os.path.join(d, name + ".wav")
        sox(inp, "-t", "wavpcm", "-r", rate, "-c", channels, "-b", bits, "-e", "signed-integer",
            path, *(["remix"] + remix if remix else []), *effects)
        return Clip(name, path, "wav", rate, channels, wav_frames(path), note)

    add("wav_s16_16k_mono_speech_en", lambda d, n: sox_wav(
        d, n, en, 16000, 1, 16, "sox, PCM s16"), "speech")
    add("wav_s16_44k_stereo_speech_cmn", lambda d, n: sox_wav(
        d, n, cmn, 44100, 2, 16, "sox, PCM s16, R = 0.6 L", remix=["1", "1v0.6"]), "speech")

    # A headset or USB mic with one capsule wired inverted: the channels' mean cancels (it was
    # refused audio_silent; a twin 1 dB quieter left 0.11 of L, -45.5 LUFS, and came out at
    # -21.5 LUFS, held by the 24 dB gain cap).
    add("wav_s16_44k_stereo_antiphase_speech_cmn", lambda d, n: sox_wav(
        d, n, cmn, 44100, 2, 16, "sox, R = -L", remix=["1", "1v-1"]), "speech", "antiphase")
    add("wav_s16_48k_stereo_antiphase_1db_speech_en", lambda d, n: sox_wav(
        d, n, en, 48000, 2, 16, "sox, R = -0.891 L", remix=["1", "1v-0.891"]), "speech",
        "antiphase")

    # --- WAV with headers built here
    add("wav_s24_48k_mono_speech_cmn", lambda d, n: _own_wav(
        d, n, cmn, 48000, 1, 24, note="plain PCM 24-bit"), "speech")

    def tone8k(d, name):
        tone = sox_synth(os.path.join(src.dir, "tone8k.wav"), 8000, 1, 3,
                         "sine", "440", "sine", "660", "vol", "0.5", "fade", "0.05", "3", "0.05")
        return _own_wav(d, name, tone, 8000, 1, 16, note="plain PCM s16, 440+660 Hz")
    add("wav_s16_8k_mono_tone", tone8k, "tone")

    def pink96(d, name):
        noise = sox_synth(os.path.join(src.dir, "pink96.wav"), 96000, 2, 4, "pinknoise",
                          "vol", "0.25", bits=32, encoding="floating-point")
        return _own_wav(d, name, noise, 96000, 2, 32, True, note="IEEE float 32, fact chunk")
    add("wav_f32_96k_stereo_pink", pink96, "noise")

    def white_u8(d, name):
        noise = sox_synth(os.path.join(src.dir, "white22.wav"), 22050, 1, 2.5, "whitenoise",
                          "vol", "0.3")
        pcm = raw_pcm(noise, 22050, 1, 8)
        if len(pcm) % 2 == 0:
            pcm = pcm[:-1]  # an odd data size, so the chunk needs its pad byte
        info = chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 6) + b"jiayi\0")
        path = write(os.path.join(d, name + ".wav"),
                     wav_bytes(pcm, 22050, 1, 8, after_data=[info]))
        return Clip(name, path, "wav", 22050, 1, len(pcm),
                    "unsigned 8-bit, odd data size + pad byte, LIST chunk after data")
    add("wav_u8_22k_mono_white_odd", white_u8, "noise")

    add("wav_s32_48k_stereo_speech_en", lambda d, n: _own_wav(
        d, n, en, 48000, 2, 32, af=STEREO_AF, note="plain PCM 32-bit int"), "speech")

    def sweep64(d, name):
        sweep = sox_synth(os.path.join(src.dir, "sweep32.wav"), 32000, 1, 3, "sine",
                          "100-4000", "vol", "0.4")
        return _own_wav(d, name, sweep, 32000, 1, 64, True, note="IEEE float 64, 100-4000 Hz")
    add("wav_f64_32k_mono_sweep", sweep64, "tone")

    add("wav_ext_s16_16k_mono_speech_cmn", lambda d, n: _own_wav(
        d, n, cmn, 16000, 1, 16, extensible=True, note="WAVE_FORMAT_EXTENSIBLE PCM 16"),
        "speech")

    def ext_f32(d, name):
        noise = sox_synth(os.path.join(src.dir, "pink48.wav"), 48000, 2, 3, "pinknoise",
                          "vol", "0.3")
        return _own_wav(d, name, noise, 48000, 2, 32, True, extensible=True,
                        note="WAVE_FORMAT_EXTENSIBLE IEEE float 32")
    add("wav_ext_f32_48k_stereo_pink", ext_f32, "noise")

    def surround(d, name):
        path = os.path.join(d, name + ".wav")
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", surround_source(src), "-c:a",
             "pcm_s24le", path])
        return Clip(name, path, "wav", 48000, 6, wav_frames(path),
                    "ffmpeg-written 5.1 (EXTENSIBLE, mask 0x3F) 24-bit")
    add("wav_ext_s24_48k_51_speech", surround, "speech")

    def rf64(d, name):
        path = os.path.join(d, name + ".wav")
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", en, "-af", STEREO_AF, "-ar",
             "48000", "-c:a", "pcm_s16le", "-rf64", "always", path])
        return Clip(name, path, "wav", 48000, 2, wav_frames(path),
                    "ffmpeg -rf64 always (ds64 chunk, 32-bit sizes 0xFFFFFFFF)")
    add("rf64_s16_48k_stereo_speech_en_ffmpeg", rf64, "speech")

    def rf64_own(d, name):
        pcm = raw_pcm(cmn, 24000, 1, 16)
        path = write(os.path.join(d, name + ".wav"), rf64_bytes(pcm, 24000, 1, 16))
        return Clip(name, path, "wav", 24000, 1, len(pcm) // 2, "RF64 built by hand")
    add("rf64_s16_24k_mono_speech_cmn_own", rf64_own, "speech")

    def stream_ffff(d, name):
        path = os.path.join(d, name + ".wav")
        with open(path, "wb") as f:  # ffmpeg writing to a pipe cannot seek back to fix sizes
            run(["ffmpeg", "-nostdin", "-v", "error", "-i", en, "-ar", "44100", "-ac", "1",
                 "-f", "wav", "-"], stdout=f)
        with open(path, "rb") as f:
            head = f.read(8)
        if head[4:8] != b"\xff\xff\xff\xff":
            raise GenerationError(f"ffmpeg pipe WAV no longer has streaming sizes: {head!r}")
        with open(path, "rb") as f:
            data = f.read()
        start = data.index(b"data") + 8  # the first "data" fourcc: ffmpeg's LIST holds none
        return Clip(name, path, "wav", 44100, 1, (len(data) - start) // 2,
                    "ffmpeg to a pipe: RIFF and data sizes 0xFFFFFFFF, LIST chunk")
    add("wav_stream_ffff_44k_mono_speech_en", stream_ffff, "speech")

    def stream_zero(d, name):
        tone = sox_synth(os.path.join(src.dir, "tone16.wav"), 16000, 2, 2.5, "sine", "300",
                         "sine", "500", "vol", "0.5")
        return _own_wav(d, name, tone, 16000, 2, 16, riff_size=0, data_size=0,
                        note="RIFF and data sizes 0 (streaming writer)")
    add("wav_stream_zero_16k_stereo_tone", stream_zero, "tone")

    def with_chunks(d, name):
        junk = chunk(b"JUNK", b"\x01" * 27)   # odd size: a pad byte follows
        lst = chunk(b"LIST", b"INFOINAM" + struct.pack("<I", 4) + b"hi!\0")
        return _own_wav(d, name, en, 24000, 1, 16, before_data=[junk, lst],
                        note="odd JUNK chunk (padded) and LIST before data")
    add("wav_s16_24k_mono_speech_en_chunks", with_chunks, "speech")

    # G.711 (tags 6 and 7): telephone systems' recordings, cheap phones' call and voice
    # recorders. As sox writes them (`sox in.wav -e a-law out.wav`: a fmt of 18 bytes, a fact
    # chunk), and µ-law in WAVE_FORMAT_EXTENSIBLE (subformat KSDATAFORMAT_SUBTYPE_MULAW) from a
    # recorder that never came back to its sizes.
    def g711_sox(d, name, inp, encoding, rate, channels, note, remix=()):
        path = os.path.join(d, name + ".wav")
        sox(inp, "-r", rate, "-c", channels, "-e", encoding, path, *remix)
        return Clip(name, path, "wav", rate, channels, wav_frames(path), note)
    add("wav_alaw_8k_mono_speech_en", lambda d, n: g711_sox(
        d, n, en, "a-law", 8000, 1, "sox -e a-law"), "speech")
    add("wav_ulaw_8k_mono_speech_cmn", lambda d, n: g711_sox(
        d, n, cmn, "u-law", 8000, 1, "sox -e u-law"), "speech")
    add("wav_alaw_16k_stereo_speech_cmn", lambda d, n: g711_sox(
        d, n, cmn, "a-law", 16000, 2, "sox -e a-law, R = 0.6 L", ("remix", "1", "1v0.6")),
        "speech")

    def ext_ulaw(d, name):
        raw = src.path("en8k.ulaw")
        sox(en, "-t", "raw", "-r", "8000", "-c", "1", "-e", "u-law", raw)
        with open(raw, "rb") as f:
            codes = f.read()
        fmt = wav_fmt_chunk(8000, 1, 8, extensible=True, sub_tag=WAVE_FORMAT_MULAW)
        path = write(os.path.join(d, name + ".wav"),
                     wav_bytes(codes, 8000, 1, 8, extensible=True, fmt=fmt, riff_size=0,
                               data_size=0))
        return Clip(name, path, "wav", 8000, 1, len(codes),
                    "WAVE_FORMAT_EXTENSIBLE µ-law, RIFF and data sizes 0 (streaming)")
    add("wav_ext_ulaw_8k_mono_speech_en_stream", ext_ulaw, "speech")

    def quiet(d, name, limited):
        base = os.path.join(src.dir, f"en48_{'limited' if limited else 'raw'}.wav")
        # The limited one has its peaks cut first: espeak's peak-to-loudness ratio is ~18 dB, so
        # +24 dB puts its peaks ~3 dB over a -1 dBTP ceiling at -16 LUFS. At PLR <= 14 dB the
        # +24 dB needs no limiting at all; the raw one makes the program win back what its
        # limiter takes (--max-gain bounds the loudness rise, not the gain before the limiter).
        af = "alimiter=limit=0.3:level=disabled:attack=2:release=30:asc=1," if limited else ""
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", en, "-af", af + "anull", "-ar",
             "48000", "-c:a", "pcm_f32le", base])
        level, peak = measure.ebur128(base)
        if limited and peak - level > 14:
            raise GenerationError(f"{name}: peak-to-loudness ratio {peak - level:.1f} dB > 14")
        gain = -40.0 - level
        for _ in range(3):  # s16 quantisation and ffmpeg's 0.1 LU steps: converge, re-measure
            pcm = raw_pcm(base, 48000, 1, 16, af=f"volume={gain:.3f}dB")
            path = write(os.path.join(d, name + ".wav"), wav_bytes(pcm, 48000, 1, 16))
            got, _ = measure.ebur128(path)
            if abs(got + 40.0) <= 0.1:
                break
            gain += -40.0 - got
        else:
            raise GenerationError(f"could not scale {name} to -40 LUFS (got {got})")
        return Clip(name, path, "wav", 48000, 1, len(pcm) // 2,
                    f"{'peak-limited ' if limited else ''}speech at {got} LUFS, "
                    f"peak-to-loudness ratio {peak - level:.1f} dB")
    add("wav_s16_48k_mono_quiet_m40", lambda d, n: quiet(d, n, True), "speech", "quiet")
    add("wav_s16_48k_mono_quiet_m40_peaky", lambda d, n: quiet(d, n, False), "speech", "quiet")

    def shortest(d, name):
        tone = sox_synth(os.path.join(src.dir, "tone_half.wav"), 44100, 1, 0.5, "sine", "1000",
                         "vol", "0.5")
        return _own_wav(d, name, tone, 44100, 1, 16, note="0.5 s: the default minimum duration")
    add("wav_s16_44k_mono_tone_0.5s", shortest, "tone")

    def loud(d, name):
        path = os.path.join(d, name + ".wav")
        # +30 dB then s16 conversion clips hard (sox warns about it; that is the point).
        sox(cmn, "-t", "wavpcm", "-r", "44100", "-c", "2", "-b", "16", path, "remix", "1",
            "1v0.8", "gain", "30")
        return Clip(name, path, "wav", 44100, 2, wav_frames(path), "speech +30 dB, clipped")
    add("wav_s16_44k_stereo_loud_clipped", loud, "speech", "loud")

    def dc_offset(d, name):
        # A recorder's DC offset (a cheap ADC, a mic's bias): half of full scale under speech.
        return sox_wav(d, name, en, 22050, 1, 16, "sox, speech at 0.4 on a DC offset of 0.5",
                       effects=["vol", "0.4", "dcshift", "0.5"])
    add("wav_s16_22k_mono_speech_en_dc_offset", dc_offset, "speech")

    def long30(d, name):
        # Speech, a pause, more speech, a tone, repeated up to exactly 30 s.
        pieces = os.path.join(src.dir, "long_pieces.wav")
        sox(en, cmn, "-r", "22050", pieces, "pad", "0", "0.7")
        path = os.path.join(d, name + ".wav")
        sox(pieces, "-t", "wavpcm", "-r", "44100", "-c", "2", "-b", "16", path, "repeat", "4",
            "trim", "0", "30", "remix", "1", "1v0.7")
        return Clip(name, path, "wav", 44100, 2, wav_frames(path), "30 s speech, sox")
    add("wav_s16_44k_stereo_long30", long30, "speech", "long")

    # --- Ogg Opus
    def ogg(d, name, wav, note, kbps=64, channels=None):
        path = os.path.join(d, name + ".opus")
        run(["opusenc", "--quiet", "--bitrate", kbps, wav, path])
        clip = opus_clip(name, path, "ogg_opus", note)
        if channels and clip.channels != channels:
            raise GenerationError(f"opusenc made {clip.channels} channels, not {channels}")
        return clip

    def ogg_mono(d, name):
        wav = os.path.join(src.dir, "en48m.wav")
        sox(en, "-r", "48000", wav)
        return ogg(d, name, wav, "opusenc, mono 48 kHz source")
    add("ogg_opus_mono_speech_en", ogg_mono, "speech")

    def ogg_stereo(d, name):
        wav = os.path.join(src.dir, "cmn44s.wav")
        sox(cmn, "-r", "44100", "-c", "2", wav, "remix", "1", "1v0.6")
        return ogg(d, name, wav, "opusenc, stereo 44.1 kHz source (OpusHead rate 44100)")
    add("ogg_opus_stereo_speech_cmn", ogg_stereo, "speech")

    def ogg_51(d, name):
        # opusenc downmixes to stereo below ~20 kbit/s per channel: give it enough to keep 5.1.
        return ogg(d, name, surround_source(src), "opusenc on a 6-channel WAV: family 1",
                   kbps=160, channels=6)
    add("ogg_opus_51_speech", ogg_51, "speech")

    def ogg_chained(d, name):
        # Two opusenc files one after the other (RFC 7845 chaining, as `cat` makes, or a
        # recorder that pauses by starting a new stream): both links are the recording.
        links = []
        for i, (inp, rate) in enumerate(((en, "48000"), (cmn, "44100"))):
            wav = os.path.join(src.dir, f"chain{i}.wav")
            sox(inp, "-r", rate, "-c", "2", wav, "remix", "1", "1v0.8")
            link = os.path.join(d, f"{name}.{i}.opus")
            run(["opusenc", "--quiet", "--bitrate", "48", wav, link])
            links.append(link)
        path = os.path.join(d, name + ".opus")
        with open(path, "wb") as out:
            for link in links:
                with open(link, "rb") as f:
                    out.write(f.read())
        # ffmpeg decodes each link alone; the chain is their sum.
        frames = sum(measure.decoded_frames(link, 48000)[0] for link in links)
        for link in links:
            os.unlink(link)
        return Clip(name, path, "ogg_opus", 48000, 2, frames,
                    "two opusenc links chained (English, then Mandarin)")
    add("ogg_opus_chained_two_links", ogg_chained, "speech")

    def ogg_ffmpeg(d, name):
        path = os.path.join(d, name + ".ogg")
        run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", cmn, "-ar", "16000", "-c:a",
             "libopus", "-b:a", "32k", "-f", "ogg", path])
        return opus_clip(name, path, "ogg_opus", "ffmpeg libopus -f ogg (ffmpeg's Ogg muxer)")
    add("ogg_opus_ffmpeg_mono_speech_cmn", ogg_ffmpeg, "speech")

    # --- WebM / Matroska Opus
    def webm(d, name, inp, extra, note, fmt="webm", ext="webm", live=False):
        path = os.path.join(d, f"{name}.{ext}")
        argv = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", inp] + extra + [
            "-c:a", "libopus", "-b:a", "48k", "-f", fmt]
        if live:
            with open(path, "wb") as f:  # a pipe: unknown-size Segment and Clusters
                run(argv + ["-live", "1", "-"], stdout=f)
        else:
            run(argv + [path])
        return opus_clip(name, path, "webm_opus", note)

    add("webm_opus_mono_speech_cmn", lambda d, n: webm(
        d, n, cmn, ["-ar", "48000"], "ffmpeg libopus webm"), "speech")

    def webm_stereo(d, name):
        noise = sox_synth(os.path.join(src.dir, "pink44s.wav"), 44100, 2, 3, "pinknoise",
                          "vol", "0.3")
        return webm(d, name, noise, [], "ffmpeg libopus webm, stereo pink noise")
    add("webm_opus_stereo_pink", webm_stereo, "noise")

    add("webm_opus_live_mono_speech_en", lambda d, n: webm(
        d, n, en, [], "ffmpeg -f webm -live 1 to a pipe: unknown sizes", live=True), "speech")
    add("mka_opus_stereo_speech_en", lambda d, n: webm(
        d, n, en, ["-af", STEREO_AF], "ffmpeg libopus matroska (DocType matroska)",
        fmt="matroska", ext="mka"), "speech")

    # --- Real browsers' MediaRecorder output, what the web client sends: made once with
    # tests/codec/record_browser/ and kept in tests/codec/data/ (README.md there).
    def browser(fixture, fmt, note):
        def make(d, name):
            path = os.path.join(d, name + os.path.splitext(fixture)[1])
            with open(os.path.join(CODEC_DATA, fixture), "rb") as f:
                write(path, f.read())
            return opus_clip(name, path, fmt, note)
        return make

    for name, fixture, fmt, note in (
            ("webm_opus_chrome_timeslice_speech_en", "chrome_mediarecorder_timeslice.webm",
             "webm_opus", "Chromium MediaRecorder, 1 s timeslice chunks concatenated"),
            ("webm_opus_chrome_pause_speech_en", "chrome_mediarecorder_pause.webm", "webm_opus",
             "Chromium MediaRecorder, paused 2 s"),
            ("webm_opus_chrome_stereo_speech", "chrome_mediarecorder_stereo.webm", "webm_opus",
             "Chromium MediaRecorder, stereo 44.1 kHz source"),
            ("ogg_opus_firefox_pause_speech_en", "firefox_mediarecorder_pause.ogg", "ogg_opus",
             "Firefox MediaRecorder audio/ogg, paused 2 s"),
            ("webm_opus_firefox_stereo_speech", "firefox_mediarecorder_stereo.webm", "webm_opus",
             "Firefox MediaRecorder audio/webm, stereo 44.1 kHz source")):
        add(name, browser(fixture, fmt, note), "speech", "browser")
    real_world(src, add)
    return r


# ---------------------------------------------------------------------------------------------
# Real-world recordings: what phones, tablets and headsets send that a clean voice does not.
# Each was measured by hand first; sox (above) is repeatable and Python's noise is seeded, so
# every run makes the same files.

def real_world(src, add):
    en = src.en
    cache = {}

    def base48():
        """The English speech at 48 kHz (made once)."""
        with _surround_lock:
            if "en48" not in cache:
                cache["en48"] = src.path("en48_rw.wav")
                sox(en, "-r", "48000", "-b", "16", cache["en48"])
        return cache["en48"]

    def speech_wav(d, name, rate, *effects, note="", pre=(), channels=1):
        """A 16-bit WAV by sox from the 48 kHz speech, or from `pre` (inputs, maybe with -m)."""
        path = os.path.join(d, name + ".wav")
        sox(*(list(pre) or [base48()]), "-t", "wavpcm", "-r", rate, "-c", channels, "-b", 16,
            path, *effects)
        return Clip(name, path, "wav", rate, channels, wav_frames(path), note)

    def piece(name, seconds, *synth, rate=48000):
        return sox_piece(src.path(name), rate, seconds, *synth)

    # A whispered bedtime story (room noise at -78 dBFS RMS) with a pause, then a cough: the
    # cough sets the loudness (-30 LUFS), the whisper (-60) needs 44 dB. The bound (codec.md,
    # Fit): the whisper is raised at most 18 dB past what reaches the goal unlimited (+2 the
    # output gain gives back).
    def whisper_cough(d, name):
        whisper = src.path("whisper48.wav")
        sox(base48(), whisper, "vol", "0.02", "pad", "0", "1")
        cough = piece("cough.wav", 0.25, "pinknoise", "fade", "0.01", "0.25", "0.2", "vol", "0.9")
        dry = src.path("whisper_cough_dry.wav")
        sox(whisper, cough, dry)
        room = piece("room.wav", float(wav_frames(dry)) / 48000, "whitenoise", "vol", "0.0005")
        path = os.path.join(d, name + ".wav")
        sox("-m", dry, room, "-b", "32", "-e", "floating-point", path)
        clip = Clip(name, path, "wav", 48000, 1, wav_frames(path),
                    "speech at vol 0.02, a 1 s pause, a 0.25 s pink-noise cough at 0.9; room noise")
        clip.quiet_s = (0.0, soxi_seconds(whisper) - 1.0)
        return clip
    add("wav_f32_48k_mono_whisper_pause_cough", whisper_cough, "speech", "quiet", "bound")

    # Quiet speech, then the phone dropped on a table: the crash sets the loudness (-12 LUFS,
    # over the target: unlimited, the clip would be turned down 3.6 dB), so the speech (-46)
    # is held to the bound, raised 14.4 dB at most (+2).
    def quiet_drop(d, name):
        speech = src.path("quiet_speech48.wav")
        sox(base48(), speech, "vol", "0.05")
        crash = piece("crash_q.wav", 0.3, "whitenoise", "fade", "0", "0.3", "0.28", "vol", "1")
        clip = speech_wav(d, name, 48000, note="speech at vol 0.05, then a 0.3 s full-scale crash",
                          pre=(speech, crash))
        clip.quiet_s = (0.0, soxi_seconds(speech))
        return clip
    add("wav_s16_48k_mono_quiet_speech_then_drop", quiet_drop, "speech", "quiet", "bound")

    def click_first(d, name):
        click = piece("click.wav", 0.002, "square", "1000", "vol", "1.0")
        return speech_wav(d, name, 48000, note="a 2 ms full-scale click, then speech",
                          pre=(click, base48()))
    add("wav_s16_48k_mono_click_then_speech", click_first, "speech")

    def drop(d, name):
        crash = piece("crash.wav", 0.3, "whitenoise", "fade", "0", "0.3", "0.28", "vol", "1")
        return speech_wav(d, name, 44100, note="speech, then a 0.3 s full-scale crash",
                          pre=(base48(), crash))
    add("wav_s16_44k_mono_speech_then_drop", drop, "speech")

    def wind(d, name):
        gust = piece("wind.wav", soxi_seconds(base48()), "brownnoise", "tremolo", "0.7", "90",
                     "vol", "0.8")
        return speech_wav(d, name, 48000, note="speech under wind (brown noise, 0.7 Hz gusts)",
                          pre=("-m", base48(), gust))
    add("wav_s16_48k_mono_speech_wind", wind, "speech", "noise")

    # Loud speech clipped to a square wave, as a phone's narrowband recorder or an old PC's
    # 11.025 kHz capture keeps it.
    add("wav_s16_8k_mono_loud_clipped", lambda d, n: speech_wav(
        d, n, 8000, "sinc", "300-3400", "gain", "30", note="300-3400 Hz speech +30 dB, clipped"),
        "speech", "loud")
    add("wav_s16_11k_mono_loud_clipped", lambda d, n: speech_wav(
        d, n, 11025, "gain", "30", note="speech +30 dB, clipped"), "speech", "loud")

    def child(d, name):
        shout = src.path("shout.wav")
        run(["espeak-ng", "-v", "en", "-p", "90", "-a", "200", "-s", "200", "-w", shout,
             "Mummy! Look what I made today! A big red dragon!"])
        return speech_wav(d, name, 48000, "gain", "12", "overdrive", "20",
                          note="espeak pitch 90 +12 dB, overdrive 20", pre=(shout,))
    add("wav_s16_48k_mono_child_shout_overdriven", child, "speech", "loud")

    def hum(d, name, rate, freqs, speech_vol, hum_vol):
        synth = []
        for f in freqs:
            synth += ["sine", str(f)]
        mains = piece(f"hum{freqs[0]}.wav", soxi_seconds(base48()), *synth, "vol", hum_vol)
        return speech_wav(d, name, rate, note=f"speech at {speech_vol} over {freqs} Hz hum at "
                          f"{hum_vol}", pre=("-m", "-v", speech_vol, base48(), mains))
    add("wav_s16_48k_mono_hum50_quiet_speech", lambda d, n: hum(
        d, n, 48000, (50, 150), "0.05", "0.05"), "speech", "quiet")
    add("wav_s16_11k_mono_hum60_quiet_speech", lambda d, n: hum(
        d, n, 11025, (60,), "0.03", "0.1"), "speech", "quiet")

    add("wav_u8_8k_mono_speech_en", lambda d, n: _own_wav(
        d, n, en, 8000, 1, 8, note="unsigned 8-bit, 8 kHz"), "speech")

    # One capsule dead (a headset plugged in half-way): the mean keeps the voice 6 dB down, 3
    # under the channels' mean energy (not the 10 that picks one channel): the gain makes it up.
    add("wav_s16_48k_stereo_left_dead", lambda d, n: speech_wav(
        d, n, 48000, "remix", "0", "1", channels=2, note="left channel digital zero"), "speech")
    add("wav_s16_22k_stereo_antiphase_0.98_speech_en", lambda d, n: speech_wav(
        d, n, 22050, "remix", "1", "1v-0.98", channels=2, note="R = -0.98 L"), "speech",
        "antiphase")

    def square(d, name):
        path = sox_piece(os.path.join(d, name + ".wav"), 48000, 2, "square", "440")
        return Clip(name, path, "wav", 48000, 1, wav_frames(path), "440 Hz square, full scale")
    add("wav_s16_48k_mono_square_full_scale", square, "tone", "loud")

    # -60 dBFS noise (a room with nobody speaking) is held by the +24 dB cap.
    def noise60(d, name):
        import random
        rng = random.Random(60)
        x = [rng.gauss(0, 1e-3) for _ in range(3 * 48000)]
        path = write(os.path.join(d, name + ".wav"),
                     wav_bytes(struct.pack(f"<{len(x)}f", *x), 48000, 1, 32, is_float=True))
        return Clip(name, path, "wav", 48000, 1, len(x), "gaussian noise at -60 dBFS RMS")
    add("wav_f32_48k_mono_noise_m60", noise60, "noise", "quiet", "capped")

    # --- exact lengths: the shortest clip taken (0.5 s; at 11.025 kHz 5513 frames) and the
    # longest under --max-duration 2. One sample less / more: test_malformed.py.
    def exact(d, name, fmt, samples, rate=48000):
        wav = src.path(f"{name}.src.wav")
        sox(base48(), wav, "rate", rate, "trim", "0", f"{samples}s")
        if fmt == "wav":
            path = os.path.join(d, name + ".wav")
            os.replace(wav, path)
            return Clip(name, path, "wav", rate, 1, wav_frames(path), f"{samples} frames")
        return encoded(d, name, fmt, wav, f"{samples} samples")

    add("wav_s16_11k_mono_0.5s", lambda d, n: exact(d, n, "wav", 5513, 11025), "speech")
    add("ogg_opus_mono_0.5s", lambda d, n: exact(d, n, "ogg", 24000), "speech")
    add("webm_opus_mono_0.5s", lambda d, n: exact(d, n, "webm", 24000), "speech")
    for name, fmt, rate in (("wav_s16_8k", "wav", 8000), ("ogg_opus", "ogg", 48000),
                            ("webm_opus", "webm", 48000)):
        def at_max(d, name, fmt=fmt, rate=rate):
            clip = exact(d, name, fmt, 2 * rate, rate)
            clip.options = ["--max-duration", "2"]
            return clip
        add(f"{name}_mono_2s_max_duration_2", at_max, "speech")

    # --- bitrates at both ends of what Opus allows (510 kb/s is stereo's top; mono's is 256)
    def bitrate(d, name, fmt, kbps, channels):
        wav = src.path(f"{name}.src.wav")
        sox(base48(), "-c", channels, wav, *(["remix", "1", "1v0.8"] if channels == 2 else []))
        return encoded(d, name, fmt, wav, f"{kbps} kb/s", kbps)
    add("ogg_opus_mono_6k", lambda d, n: bitrate(d, n, "ogg", 6, 1), "speech")
    add("ogg_opus_stereo_510k", lambda d, n: bitrate(d, n, "ogg", 510, 2), "speech")
    add("webm_opus_mono_6k", lambda d, n: bitrate(d, n, "webm", 6, 1), "speech")
    add("webm_opus_stereo_510k", lambda d, n: bitrate(d, n, "webm", 510, 2), "speech")

    # --- OpusHead output gain (RFC 7845 5.1: every decoder applies it): -30 dB is held by the
    # +24 dB cap; +30 dB puts the speech at +10 LUFS, its peaks far over full scale.
    for db in (6, -12, 30, -30):
        def gained(d, name, db=db):
            wav = src.path(f"{name}.src.wav")
            sox(base48(), wav)
            plain = encoded(d, name + ".plain", "ogg", wav, "")
            with open(plain.path, "rb") as f:
                data = f.read()
            # ffmpeg's libopus decode clips to 16 bits (+30 dB read as -3 LUFS, not +9.7): the
            # gain is exact arithmetic on the decoded samples, so add it to the plain file's.
            lufs = measure.ebur128(plain.path)[0] + db
            os.unlink(plain.path)
            pages = measure.ogg_pages(data)
            body = bytearray(pages[0].body)
            struct.pack_into("<h", body, 16, db * 256)
            path = write(os.path.join(d, name + ".opus"), measure.repage(pages[0], body=bytes(
                body)) + data[pages[1].offset:])
            clip = opus_clip(name, path, "ogg_opus", f"opusenc, OpusHead output gain {db:+d} dB")
            clip.mono_lufs = lufs
            return clip
        add(f"ogg_opus_mono_output_gain_{'p' if db > 0 else 'm'}{abs(db)}", gained, "speech",
            *(("quiet", "capped") if db < -20 else ()))


def sox_piece(path, rate, seconds, *synth):
    """A mono 16-bit WAV of sox synth (seeded: -R)."""
    sox("-n", "-r", rate, "-c", "1", "-b", "16", path, "synth", seconds, *synth)
    return path


def soxi_seconds(path):
    return wav_frames(path) / measure.probe_stream(path)["sample_rate"]


def encoded(d, name, fmt, wav, note, kbps=None):
    """Ogg Opus from opusenc or WebM from ffmpeg/libopus, of a WAV (its length kept exactly)."""
    if fmt == "ogg":
        path = os.path.join(d, name + ".opus")
        run(["opusenc", "--quiet", "--serial", "1"] + (["--bitrate", kbps] if kbps else []) +
            [wav, path])
        return opus_clip(name, path, "ogg_opus", f"opusenc, {note}")
    path = os.path.join(d, name + ".webm")
    run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", wav, "-c:a", "libopus", "-b:a",
         f"{kbps or 32}k", "-fflags", "+bitexact", "-f", "webm", path])  # no random UIDs
    return opus_clip(name, path, "webm_opus", f"ffmpeg libopus webm, {note}")


_surround_lock = __import__("threading").Lock()


def surround_source(src):
    """A 6-channel 48 kHz WAV (FL FR FC LFE BL BR) with different content per channel."""
    path = src.path("surround51.wav")
    with _surround_lock:
        if os.path.exists(path):
            return path
        chans = []
        for i, (inp, effect) in enumerate([(src.en, []), (src.cmn, []), (src.en, ["vol", "0.7"]),
                                           (None, ["sine", "60", "vol", "0.3"]),
                                           (None, ["pinknoise", "vol", "0.05"]),
                                           (None, ["pinknoise", "vol", "0.05"])]):
            c = src.path(f"surround_c{i}.wav")
            if inp:
                sox(inp, "-r", "48000", "-b", "16", c, "pad", "0", "1", "trim", "0", "4", *effect)
            else:
                sox_synth(c, 48000, 1, 4, *effect)
            chans.append(c)
        tmp = path + ".tmp.wav"
        sox("-M", *chans, "-b", "16", tmp)
        os.replace(tmp, path)
        return path


def opus_clip(name, path, fmt, note):
    frames, rate = measure.decoded_frames(path, 48000)
    info = measure.probe_stream(path)
    if info.get("codec_name") != "opus":
        raise GenerationError(f"{path} is not Opus according to ffprobe: {info}")
    return Clip(name, path, fmt, 48000, info["channels"], frames, note)


def generate(d, workers=2, only=None):
    """Make every clip into directory d. Returns [(name, Clip or GenerationError text)]."""
    missing = [t for t in TOOLS if not __import__("shutil").which(t)]
    if missing:
        raise GenerationError("missing tools: " + ", ".join(missing))
    src = Sources(d)
    todo = [(n, fn) for n, fn in recipes(src) if only is None or n in only]

    def make(item):
        name, fn = item
        try:
            clip = fn(d)
            if clip.channels == 1 and clip.mono_lufs is None:
                clip.mono_lufs = measure.ebur128(clip.path)[0]
            return name, clip
        except (GenerationError, measure.ToolError, OSError) as e:
            return name, f"{type(e).__name__}: {e}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(make, todo))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: inputs.py OUTDIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    bad = 0
    for name, clip in generate(sys.argv[1]):
        print(clip if isinstance(clip, Clip) else f"{name}: FAILED {clip}")
        bad += not isinstance(clip, Clip)
    sys.exit(1 if bad else 0)
