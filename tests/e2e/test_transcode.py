#!/usr/bin/env python3
"""
test_transcode.py — end-to-end tests of jiayin-transcode on valid inputs, checked by tools that
share no code with it.

    python3 tests/e2e/test_transcode.py build-dev/tools/jiayin-transcode

For every generated clip (inputs.py: WAV in its variants, Ogg Opus, WebM/Matroska Opus) the
program runs once and its output is checked by opusinfo (no warnings), ffmpeg (decodes without
errors; ebur128 loudness -16 +/- 0.5 LUFS and true peak <= -1.0 dBTP; decoded duration equal to
the input's within 20 ms), a Python Ogg page reader (CRCs, BOS/EOS, OpusHead, granules) and
against the JSON line's documented fields. Then the options: --bitrate, --max-gain,
--target-lufs, --true-peak and --serial. Prints TAP; exits 1 if any check failed.
"""
import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inputs  # noqa: E402
import measure  # noqa: E402
import tap  # noqa: E402

TARGET_LUFS = -16.0
LUFS_TOLERANCE = 0.5      # ffmpeg's ebur128 vs the target
TRUE_PEAK_MAX = -1.0      # dBTP; ffmpeg prints one decimal, so -1.0 passes and -0.9 fails
MAX_GAIN_DB = 24.0        # the default gain cap (codec.md, Goal)
DURATION_TOLERANCE_S = 0.020
OPUS_FRAMES_TOLERANCE = 2  # ffmpeg's and the program's count of an Opus input may round apart

JSON_FIELDS = {  # documented fields of the success line and their JSON types
    "input": str, "output": str, "input_format": str, "sample_rate": int, "channels": int,
    "input_frames": int, "duration_ms": int, "input_lufs": (int, float), "gain_db": (int, float),
    "output_lufs": (int, float), "limiter_max_db": (int, float), "downmix_channel": int,
    "output_bytes": int,
    "bitrate_bps": int, "preskip": int, "waveform": list, "time_ms": (int, float),
    "realtime": (int, float),
}

CLIP_CHECKS = ["exits 0 with one JSON line and one output file", "JSON fields",
               "Ogg pages and OpusHead", "opusinfo reports no warning or error",
               "ffmpeg decodes without errors", "loudness and true peak (ffmpeg ebur128)",
               "decoded duration equals the input's"]


def ok(cond, *diags):
    return (bool(cond), [d for d in diags if d])


def transcode(program, clip_path, out_dir, *options):
    """Run the program into a fresh directory. Returns (run, out_path, problems)."""
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "out.ogg")
    run = tap.run_program(program, list(options) + [clip_path, out])
    problems = []
    crash = run.crash()
    if crash:
        problems.append(f"crash: {crash}")
    if run.rc != 0:
        problems.append(f"exit status {run.rc}, expected 0")
    if run.json is None:
        problems.append(run.json_error)
    elif "error" in run.json:
        problems.append(f"JSON reports an error: {run.json['error']}")
    left = sorted(os.listdir(out_dir))
    if left != ["out.ogg"]:
        problems.append(f"output directory holds {left}, expected exactly ['out.ogg']")
    if problems:
        problems += run.describe()
    return run, out, problems


# ---------------------------------------------------------------------------------------------
# Checks of one output

def check_json(j, clip_path, out, clip, opts):
    """Problems with the JSON success line (a list of strings; empty when all is well)."""
    p = []
    for key, typ in JSON_FIELDS.items():
        if key not in j:
            p.append(f"missing field {key!r}")
        elif isinstance(j[key], bool) or not isinstance(j[key], typ):
            p.append(f"field {key!r} has type {type(j[key]).__name__}: {j[key]!r}")
    if p:
        return p
    expect = {"input": clip_path, "output": out, "input_format": clip.input_format,
              "sample_rate": clip.rate, "channels": clip.channels}
    for key, want in expect.items():
        if j[key] != want:
            p.append(f"{key} is {j[key]!r}, expected {want!r}")
    # bitrate_bps: the documented example (180000 bytes in 60 s, 24000) fits both the bitrate
    # asked for and the file's average; accept either, and nothing else.
    asked = opts.get("bitrate", 24) * 1000
    average = os.path.getsize(out) * 8 / (j["duration_ms"] / 1000.0) if j["duration_ms"] else 0
    if j["bitrate_bps"] != asked and abs(j["bitrate_bps"] - average) > max(2, 0.005 * average):
        p.append(f"bitrate_bps {j['bitrate_bps']} is neither the {asked} asked for nor the "
                 f"file's average {average:.0f}")
    if clip.input_format == "wav":
        if j["input_frames"] != clip.frames:
            p.append(f"input_frames is {j['input_frames']}, the WAV holds {clip.frames}")
    elif abs(j["input_frames"] - clip.frames) > OPUS_FRAMES_TOLERANCE:
        p.append(f"input_frames is {j['input_frames']}, ffmpeg decodes {clip.frames} frames "
                 f"at 48 kHz from the input")
    in_ms = clip.frames * 1000.0 / clip.rate
    if abs(j["duration_ms"] - in_ms) > DURATION_TOLERANCE_S * 1000:
        p.append(f"duration_ms is {j['duration_ms']}, the input lasts {in_ms:.1f} ms")
    size = os.path.getsize(out)
    if j["output_bytes"] != size:
        p.append(f"output_bytes is {j['output_bytes']}, the file has {size} bytes")
    if not 0 < j["preskip"] < 65536:
        p.append(f"preskip {j['preskip']} is out of range")
    # --max-gain (codec.h): "the file ends at most this much louder than the input". gain_db is
    # the gain before the limiter, so it may exceed the cap to win back what the limiter takes.
    target = opts.get("target_lufs", TARGET_LUFS)
    max_gain = opts.get("max_gain", MAX_GAIN_DB)
    rise = j["output_lufs"] - j["input_lufs"]
    if rise > max_gain + 0.05:
        p.append(f"output_lufs {j['output_lufs']} is {rise:.2f} LU above input_lufs "
                 f"{j['input_lufs']}: more than --max-gain {max_gain}")
    goal = min(target, j["input_lufs"] + max_gain)
    if "bound" in clip.tags:  # its quiet part held to the bound: the clip may stay quieter
        if j["output_lufs"] > goal + LUFS_TOLERANCE:
            p.append(f"output_lufs {j['output_lufs']} is over min(target {target}, input_lufs + "
                     f"max_gain) = {goal:.2f}")
    elif abs(j["output_lufs"] - goal) > LUFS_TOLERANCE:
        p.append(f"output_lufs {j['output_lufs']} is not within {LUFS_TOLERANCE} of "
                 f"min(target {target}, input_lufs + max_gain) = {goal:.2f}")
    if clip.mono_lufs is not None and abs(j["input_lufs"] - clip.mono_lufs) > LUFS_TOLERANCE:
        p.append(f"input_lufs {j['input_lufs']} but ffmpeg measures the (mono) input at "
                 f"{clip.mono_lufs}")
    # The mean of channels in opposite phase cancels: the loudest channel (of twins, the first)
    # is encoded alone. Every other clip keeps the mean (-1).
    want = 0 if "antiphase" in clip.tags else -1
    if j["downmix_channel"] != want:
        p.append(f"downmix_channel is {j['downmix_channel']}, expected {want}")
    if j["limiter_max_db"] > 0:
        p.append(f"limiter_max_db {j['limiter_max_db']} is positive (it is a gain reduction)")
    w = j["waveform"]
    if len(w) != 100 or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255
                                for v in w):
        p.append(f"waveform is not 100 ints in 0..255: {w!r:.300}")
    elif not any(w):
        p.append("waveform is all zeros")
    if not j["time_ms"] > 0 or not j["realtime"] > 0:
        p.append(f"time_ms {j['time_ms']} / realtime {j['realtime']} should be positive")
    return p


def check_ogg(out, j):
    """Problems with the Ogg Opus structure (RFC 3533 / RFC 7845), read by our own parser."""
    with open(out, "rb") as f:
        data = f.read()
    try:
        pages = measure.ogg_pages(data)
    except ValueError as e:
        return [f"not a clean sequence of Ogg pages: {e}"], None
    p = []
    if not pages:
        return ["no Ogg pages"], None
    bad_crc = [pg.seq for pg in pages if not pg.crc_ok]
    if bad_crc:
        p.append(f"pages with a bad CRC: {bad_crc[:10]}")
    serials = {pg.serial for pg in pages}
    if len(serials) != 1:
        p.append(f"{len(serials)} serial numbers, expected one logical stream")
    if [pg.seq for pg in pages] != list(range(len(pages))):
        p.append("page sequence numbers are not 0, 1, 2, ...")
    if not pages[0].bos or any(pg.bos for pg in pages[1:]):
        p.append("BOS flag must be on the first page only")
    if not pages[-1].eos or any(pg.eos for pg in pages[:-1]):
        p.append("EOS flag must be on the last page only")
    packets = measure.ogg_packets(pages)
    if len(packets) < 3:
        return p + [f"only {len(packets)} packets"], None
    head_pkt, head_page = packets[0]
    try:
        head = measure.parse_opus_head(head_pkt)
    except ValueError as e:
        return p + [f"first packet: {e}"], None
    if head_page != 0 or len(pages[0].lacing) != 1 or pages[0].granule != 0:
        p.append("OpusHead must be alone on the first page, with granule position 0")
    if (head["channels"], head["family"], head["version"]) != (1, 0, 1):
        p.append(f"OpusHead should be version 1, mono, family 0: {head}")
    # RFC 7845: input_rate is the original input's rate, informational. Either the input's
    # rate (as opusenc writes it) or the 48 kHz the encoder ran at is honest.
    rates = {48000} | ({j.get("sample_rate")} if j is not None else set())
    if head["input_rate"] not in rates:
        p.append(f"OpusHead input_rate is {head['input_rate']}, expected one of {sorted(rates)}")
    if j is not None and head["preskip"] != j.get("preskip"):
        p.append(f"OpusHead pre-skip {head['preskip']} != JSON preskip {j.get('preskip')}")
    tags_pkt, tags_page = packets[1]
    if not tags_pkt.startswith(b"OpusTags"):
        p.append("second packet is not OpusTags")
    if pages[tags_page].granule != 0:
        p.append("the page that ends OpusTags must have granule position 0")
    if packets[2][1] == tags_page or pages[tags_page + 1].continued:
        p.append("audio data must begin on a fresh page after OpusTags (RFC 7845 s3)")
    last = -1
    for pg in pages[tags_page + 1:]:
        if pg.granule != -1 and pg.granule < last:
            p.append(f"granule position goes backwards on page {pg.seq}")
            break
        if pg.granule != -1:
            last = pg.granule
    samples = pages[-1].granule - head["preskip"]
    if j is not None and abs(round(samples / 48.0) - j.get("duration_ms", -1)) > 1:
        p.append(f"last granule {pages[-1].granule} - pre-skip {head['preskip']} = {samples} "
                 f"samples = {samples / 48.0:.1f} ms, JSON duration_ms {j.get('duration_ms')}")
    return p, head


LOUDNESS_FIELDS = ("input_lufs", "gain_db", "encoder_input_lufs", "codec_loss_db", "output_lufs",
                   "output_peak_dbtp", "limiter_max_db", "fit_passes", "encodes")


def program_says(j):
    """The program's own loudness numbers, for a diagnostic line (fields it has)."""
    return "program: " + " ".join(f"{k} {j[k]}" for k in LOUDNESS_FIELDS if k in j)


def loudness_problems(out, target=TARGET_LUFS, peak_max=TRUE_PEAK_MAX, tol=LUFS_TOLERANCE,
                      at_most=False):
    """at_most: the loudness may be anywhere below target + tol (a clip held to the bound)."""
    integrated, peak = measure.ebur128(out)
    diag = f"ffmpeg ebur128: I = {integrated} LUFS, true peak = {peak} dBTP"
    p = []
    if at_most and integrated > target + tol:
        p.append(f"integrated loudness {integrated} LUFS is over {target} + {tol}")
    elif not at_most and abs(integrated - target) > tol:
        p.append(f"integrated loudness {integrated} LUFS is not {target} +/- {tol}")
    if peak is None or peak > peak_max:
        p.append(f"true peak {peak} dBTP is above {peak_max}")
    return p, diag


# ---------------------------------------------------------------------------------------------
# Cases

def goal_of(clip):
    """codec.md, Goal: the target, or the clip's own loudness (ffmpeg's reading of the input)
    plus the gain cap, whichever is lower."""
    return min(TARGET_LUFS, clip.mono_lufs + MAX_GAIN_DB)


def expected_lufs(clip):
    """What the decoded file must measure (ffmpeg): the target, or for a clip held by the gain
    cap its goal."""
    if "capped" in clip.tags:
        return round(goal_of(clip), 2)
    return TARGET_LUFS


# codec.md, Fit: the gain goes at most 18 dB past what would reach the goal with no limiting;
# the limiter keeps peaks 2 dB under the ceiling, which the output gain may give back.
BOUND_EXTRA_DB = 18.0 + 2.0
BOUND_CHECK = "its quiet part is raised within codec.md's bound (18 dB past the unlimited gain)"


def quiet_part_problems(clip, out):
    """A clip whose loudness is a short loud sound's (a cough, a dropped phone): the quiet part
    before it, as ffmpeg measures it in the input and in the decoded file, rises no more than
    BOUND_EXTRA_DB past goal - L (L the whole input's loudness), and no less than goal - L."""
    start, end = clip.quiet_s
    trim = f"atrim={start}:{end}"
    before = measure.ebur128(clip.path, trim)[0]
    after = measure.ebur128(out, trim)[0]
    unlimited = goal_of(clip) - clip.mono_lufs
    rise = after - before
    diag = (f"the input measures {clip.mono_lufs} LUFS, its {start:.2f}-{end:.2f} s part {before} "
            f"LUFS, {after} LUFS decoded: raised {rise:.1f} dB; goal - input = {unlimited:.1f}, "
            f"the bound {unlimited + BOUND_EXTRA_DB:.1f} (+{LUFS_TOLERANCE})")
    p = []
    if rise > unlimited + BOUND_EXTRA_DB + LUFS_TOLERANCE:
        p.append(f"the quiet part is raised {rise:.1f} dB, past the bound")
    if rise < unlimited - LUFS_TOLERANCE:
        p.append(f"the quiet part is raised {rise:.1f} dB, less than goal - input "
                 f"{unlimited:.1f}: limiting a loud moment took loudness from the rest")
    return p, diag


def clip_case(program, name, clip, work):
    checks = CLIP_CHECKS + ([BOUND_CHECK] if isinstance(clip, inputs.Clip) and clip.quiet_s
                            else [])

    def fn():
        res = {}
        if not isinstance(clip, inputs.Clip):
            res[CLIP_CHECKS[0]] = ok(False, f"could not generate the input: {clip}")
            return res
        run, out, problems = transcode(program, clip.path, os.path.join(work, name),
                                       *clip.options)
        res[CLIP_CHECKS[0]] = ok(not problems, *([repr(clip)] + problems if problems else []))
        if problems:
            return res
        j = run.json
        p = check_json(j, clip.path, out, clip, {})
        res["JSON fields"] = ok(not p, *p, *([run.lines[0][:400]] if p else []))
        p, head = check_ogg(out, j)
        res["Ogg pages and OpusHead"] = ok(not p, *p, *([
            f"OpusHead: pre-skip {head['preskip']}, input rate {head['input_rate']}, output gain "
            f"{head['output_gain'] / 256:+.2f} dB (decoders apply it; ffmpeg's numbers include it)"]
            if head else []))
        p = measure.opusinfo_problems(out)
        res["opusinfo reports no warning or error"] = ok(not p, *p)
        err = measure.decode_errors(out)
        res["ffmpeg decodes without errors"] = ok(not err, err)
        p, diag = loudness_problems(out, expected_lufs(clip), at_most="bound" in clip.tags)
        res["loudness and true peak (ffmpeg ebur128)"] = ok(not p, *p, diag, program_says(j))
        if clip.quiet_s:
            p, diag = quiet_part_problems(clip, out)
            res[BOUND_CHECK] = ok(not p, *p, diag, program_says(j))
        frames, rate = measure.decoded_frames(out)
        got = frames / rate
        diff = got - clip.duration_s
        res["decoded duration equals the input's"] = ok(
            rate == 48000 and abs(diff) <= DURATION_TOLERANCE_S,
            *([] if rate == 48000 else [f"ffmpeg decodes at {rate} Hz, expected 48000"]),
            f"input {clip.frames} frames at {clip.rate} Hz = {clip.duration_s * 1000:.2f} ms; "
            f"output decodes to {frames} samples at {rate} Hz = {got * 1000:.2f} ms "
            f"(difference {diff * 1000:+.2f} ms, {frames - clip.duration_s * 48000:+.1f} samples)")
        return res
    return tap.Case(name, checks, fn)


def bitrate_case(program, clip, work):
    checks = ["both runs succeed", "JSON bitrate_bps follows --bitrate",
              "average bitrate follows --bitrate", "both meet loudness and true peak"]

    def fn():
        res = {}
        runs = {}
        for kbps in (12, 64):
            run, out, problems = transcode(program, clip.path, os.path.join(work, f"b{kbps}"),
                                           "--bitrate", kbps)
            if problems:
                res[checks[0]] = ok(False, f"--bitrate {kbps}:", *problems)
                return res
            runs[kbps] = (run.json, out)
        res[checks[0]] = ok(True)
        got = {k: j["bitrate_bps"] for k, (j, _) in runs.items()}
        # the bitrate asked for, or the file's average (see check_json): within 0.5..1.5x
        res[checks[1]] = ok(all(0.5 <= got[k] / (k * 1000) <= 1.5 for k in got) and
                            got[64] > 2.5 * got[12], f"bitrate_bps: {got}")
        avg = {k: os.path.getsize(out) * 8 / clip.duration_s for k, (_, out) in runs.items()}
        ratio = avg[64] / avg[12]
        diags = [f"{k} kbit/s asked: {avg[k] / 1000:.1f} kbit/s average (file size * 8 / "
                 f"duration)" for k in avg] + [f"ratio {ratio:.2f}, nominal {64 / 12:.2f}"]
        # VBR on speech with pauses spends less than the nominal rate, and Ogg/OpusTags add a
        # little; "roughly in proportion" = each within 0.5..1.5x and the ratio within 2.5..8.
        fine = all(0.5 <= avg[k] / (k * 1000) <= 1.5 for k in avg) and 2.5 <= ratio <= 8
        res[checks[2]] = ok(fine, *diags)
        problems, diags = [], []
        for k, (_, out) in runs.items():
            q, diag = loudness_problems(out)
            problems += [f"--bitrate {k}: {x}" for x in q]
            diags += [f"--bitrate {k}: {diag}", f"--bitrate {k}: {program_says(runs[k][0])}"]
        res[checks[3]] = ok(not problems, *problems, *diags)
        return res
    return tap.Case(f"--bitrate 12 vs 64 ({clip.name})", checks, fn)


def max_gain_case(program, clip, work):
    checks = ["default --max-gain 24 brings -40 LUFS to -16", "--max-gain 10 leaves it near -30"]

    def fn():
        res = {}
        run, out, problems = transcode(program, clip.path, os.path.join(work, "g24"))
        if problems:
            res[checks[0]] = ok(False, *problems)
        else:
            p, diag = loudness_problems(out)
            j = run.json
            if j["output_lufs"] - j["input_lufs"] > MAX_GAIN_DB + 0.05:
                p.append(f"JSON output_lufs - input_lufs = {j['output_lufs'] - j['input_lufs']:.2f}"
                         f" LU, over the default cap of 24")
            res[checks[0]] = ok(not p, *p, diag, program_says(j))
        run, out, problems = transcode(program, clip.path, os.path.join(work, "g10"),
                                       "--max-gain", 10)
        if problems:
            res[checks[1]] = ok(False, *problems)
            return res
        j = run.json
        expected = clip.mono_lufs + 10.0
        p, diag = loudness_problems(out, target=expected)
        rise = j["output_lufs"] - j["input_lufs"]
        if not 9.5 <= rise <= 10.05:
            p.append(f"JSON output_lufs - input_lufs = {rise:.2f} LU; --max-gain 10 caps it at 10 "
                     f"and -30 is reachable, so it should be 10")
        res[checks[1]] = ok(not p, *p, diag, f"expected {expected:.1f} LUFS (input "
                            f"{clip.mono_lufs} + 10 dB)", program_says(j))
        return res
    return tap.Case(f"--max-gain ({clip.name})", checks, fn)


def target_case(program, clip, work):
    checks = ["--target-lufs -23 reaches -23"]

    def fn():
        run, out, problems = transcode(program, clip.path, os.path.join(work, "t23"),
                                       "--target-lufs", -23)
        if problems:
            return {checks[0]: ok(False, *problems)}
        p, diag = loudness_problems(out, target=-23.0)
        j = run.json
        if abs(j["output_lufs"] + 23.0) > LUFS_TOLERANCE:
            p.append(f"JSON output_lufs {j['output_lufs']}, expected -23")
        return {checks[0]: ok(not p, *p, diag, program_says(j))}
    return tap.Case(f"--target-lufs ({clip.name})", checks, fn)


def true_peak_case(program, clip, work):
    checks = ["--true-peak -3 keeps the decoded true peak at or below -3 dBTP"]

    def fn():
        run, out, problems = transcode(program, clip.path, os.path.join(work, "tp3"),
                                       "--true-peak", -3)
        if problems:
            return {checks[0]: ok(False, *problems)}
        p, diag = loudness_problems(out, peak_max=-3.0)
        j = run.json
        return {checks[0]: ok(not p, *p, diag, program_says(j))}
    return tap.Case(f"--true-peak ({clip.name})", checks, fn)


def knocks_case(program, work):
    bitrates = (12, 16, 24, 32, 48, 64)
    checks = ["knocks in a quiet room: the decoded true peak is at or below -1.0 dBTP at "
              "12 to 64 kb/s", "JSON output_peak_dbtp is not below ffmpeg's reading"]

    def fn():
        os.makedirs(work, exist_ok=True)
        clip = inputs.knocks_wav(os.path.join(work, "knocks.wav"))
        over, under, diags = [], [], []
        for kbps in bitrates:
            run, out, problems = transcode(program, clip, os.path.join(work, str(kbps)),
                                           "--bitrate", kbps)
            if problems:
                return {c: ok(False, f"--bitrate {kbps}:", *problems) for c in checks}
            integrated, peak = measure.ebur128(out)
            said = run.json["output_peak_dbtp"]
            diags.append(f"--bitrate {kbps}: ffmpeg {integrated} LUFS, {peak} dBTP; the "
                         f"program said {said} dBTP")
            if peak is None or peak > TRUE_PEAK_MAX:
                over.append(f"--bitrate {kbps}: true peak {peak} dBTP")
            # ffmpeg prints one decimal: a reading 0.15 dB under it is under by 0.1 or more
            elif said < peak - 0.15:
                under.append(f"--bitrate {kbps}: said {said} dBTP, ffmpeg {peak}")
        return {checks[0]: ok(not over, *over, *diags), checks[1]: ok(not under, *under, *diags)}
    return tap.Case("knocks in a quiet room, every bitrate", checks, fn)


def serial_case(program, clip, work):
    checks = ["the same --serial twice gives byte-identical files",
              "the Ogg serial number is the one asked for",
              "without --serial two runs get different serial numbers"]

    def fn():
        res = {}
        blobs = []
        for i in range(2):
            run, out, problems = transcode(program, clip.path, os.path.join(work, f"s{i}"),
                                           "--serial", 1234)
            if problems:
                res[checks[0]] = ok(False, *problems)
                return res
            with open(out, "rb") as f:
                blobs.append(f.read())
        same = blobs[0] == blobs[1]
        first_diff = next((i for i, (a, b) in enumerate(zip(*blobs)) if a != b), None)
        res[checks[0]] = ok(same, f"sizes {len(blobs[0])} and {len(blobs[1])}, first "
                            f"differing byte {first_diff}" if not same else "")
        serials = {pg.serial for pg in measure.ogg_pages(blobs[0])}
        res[checks[1]] = ok(serials == {1234}, f"serials in the file: {sorted(serials)}")
        random_serials = []
        for i in range(2):
            run, out, problems = transcode(program, clip.path, os.path.join(work, f"r{i}"))
            if problems:
                res[checks[2]] = ok(False, *problems)
                return res
            with open(out, "rb") as f:
                random_serials.append(measure.ogg_pages(f.read())[0].serial)
        res[checks[2]] = ok(random_serials[0] != random_serials[1],
                            f"serials: {random_serials}")
        return res
    return tap.Case(f"--serial ({clip.name})", checks, fn)


def path_case(program, clip, work):
    checks = ["paths with spaces, quotes, a backslash and Chinese are echoed exactly in JSON"]

    def fn():
        d = os.path.join(work, "宝贝 \"晚安\" \\ dir")
        os.makedirs(d)
        in_path = os.path.join(d, "爸爸的 \"留言\" \\ 1.wav")
        shutil.copyfile(clip.path, in_path)
        out = os.path.join(d, "输出 'x' \"y\".ogg")
        run = tap.run_program(program, [in_path, out])
        p = []
        if run.crash() or run.rc != 0 or run.json is None:
            return {checks[0]: ok(False, *run.describe(), run.json_error or "")}
        for key, want in (("input", in_path), ("output", out)):
            if run.json.get(key) != want:
                p.append(f"{key} is {run.json.get(key)!r}, expected {want!r}")
        if not os.path.isfile(out):
            p.append("the output file is not where OUT says")
        left = sorted(os.listdir(d))
        if len(left) != 2:
            p.append(f"the directory holds {left}: expected only the input and the output")
        return {checks[0]: ok(not p, *p)}
    return tap.Case(f"odd paths ({clip.name})", checks, fn)


def main(argv):
    program = tap.check_setup(argv[1] if len(argv) > 1 else None, inputs.TOOLS)
    if program is None:
        return 1
    tmp = tempfile.mkdtemp(prefix="jiayin-e2e-transcode-")
    try:
        in_dir = os.path.join(tmp, "in")
        os.makedirs(in_dir)
        try:
            clips = inputs.generate(in_dir)
        except inputs.GenerationError as e:
            return tap.report_setup_failure("generating the inputs", [str(e)])
        by_name = {n: c for n, c in clips}
        cases = [clip_case(program, n, c, os.path.join(tmp, "out")) for n, c in clips]

        def extra(maker, clip_name, sub):
            clip = by_name.get(clip_name)
            case = maker(program, clip, os.path.join(tmp, sub)) if isinstance(
                clip, inputs.Clip) else None
            if case is None:
                case = tap.Case(f"{sub} (input {clip_name} missing)", ["input available"],
                                lambda: {"input available": ok(False, str(clip))})
            cases.append(case)
        extra(bitrate_case, "wav_s16_44k_stereo_speech_cmn", "bitrate")
        extra(max_gain_case, "wav_s16_48k_mono_quiet_m40", "max_gain")
        extra(target_case, "wav_s16_16k_mono_speech_en", "target")
        extra(true_peak_case, "wav_s16_44k_stereo_loud_clipped", "true_peak")
        extra(serial_case, "wav_s16_8k_mono_tone", "serial")
        extra(path_case, "wav_s16_16k_mono_speech_en", "paths")
        cases.append(knocks_case(program, os.path.join(tmp, "knocks")))
        return tap.run(cases, workers=2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
