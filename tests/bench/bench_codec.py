#!/usr/bin/env python3
"""bench_codec.py — how fast and how well jiayin-transcode does its job, next to its peers.

Generates speech clips (espeak-ng, English + Mandarin, 44.1 kHz stereo 16-bit, about -24 LUFS,
exactly 60 s, and the same clip repeated to --long-minutes), caches them in --workdir, then times,
interleaved run by run on the same machine in the same run:
  jiayin   jiayin-transcode IN OUT.ogg (the whole pipeline: decode, downmix, resample, R128,
           gain + true-peak limiter, Opus 24 kbps, Ogg)
  ffmpeg   the same job with ffmpeg: downmix, two-pass loudnorm, resample, libopus 24 kbps
  ffmpeg-stereo  the usual ffmpeg command for it: two-pass loudnorm on the input's channels as
           they come, the downmix left to the encoder's -ac 1 (more work than the job needs)
  opusenc  opusenc --bitrate 24 (no loudness work at all)
  bare     bare_encode: libopus alone on pre-converted 48 kHz mono PCM, in memory; the floor
It then measures every output once (size, integrated LUFS and true peak with ffmpeg's ebur128),
Jiayin's peak RSS on both clips, prints a table with medians (min-max), checks the issue-3 targets
and prints PASS/FAIL for each. Every figure comes from this run; nothing is hard-coded.
It is a report, not a test: it exits 0 when targets fail, 1 only when a tool could not run.
Python 3 standard library only; besides the tools compared it runs sox, espeak-ng and GNU time
(for peak RSS: see find_gnu_time).
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave

# What the inputs are. Changing the recipe changes RECIPE so stale cached inputs are not reused.
# sox runs with -R (repeatable dither): the same tool versions give byte-identical inputs, and
# the report prints each input's SHA-256 prefix so runs on other machines can be compared.
RECIPE = "v2"
INPUT_RATE = 44100
INPUT_SECONDS = 60
INPUT_LUFS = -24.0
SENTENCE_GAP_S = 0.45
SENTENCES = [
    ("en-us", "Hello Grandma, it's me. I just wanted to tell you about our week."),
    ("cmn", "奶奶好，是我。我想告诉你我们这个星期过得怎么样。"),
    ("en-us", "The children started school again on Monday, and they already have new friends."),
    ("cmn", "孩子们星期一开学了，他们已经交了新朋友。"),
    ("en-us", "It rained all weekend, so we stayed home, cooked dumplings and watched old films."),
    ("cmn", "周末一直下雨，所以我们在家包饺子，看老电影。"),
    ("en-us", "Please call us when you get this message. We miss you and love you very much."),
    ("cmn", "收到留言请给我们回电话。我们很想念你，也很爱你。"),
]

# The issue-3 targets.
TARGET_FFMPEG_SPEEDUP = 4.0   # Jiayin at least this many times faster than ffmpeg two-pass
TARGET_BARE_RATIO = 1.3       # Jiayin at most this many times the bare libopus encode
TARGET_RSS_GROWTH_KIB = 4096  # RSS(long) - RSS(60 s), KiB (ru_maxrss is in KiB on Linux)
TARGET_LUFS = -16.0
TARGET_LUFS_TOLERANCE = 0.5
TARGET_MAX_DBTP = -1.0
MIN_RUNS = 5                  # issue 3: medians of at least 5 runs

TOOLS = ["jiayin", "ffmpeg", "ffmpeg-stereo", "opusenc", "bare"]
TOOL_LABEL = {
    "jiayin": "Jiayin (jiayin-transcode)",
    "ffmpeg": "ffmpeg 2-pass loudnorm + libopus, mono first",
    "ffmpeg-stereo": "ffmpeg 2-pass loudnorm on stereo, -ac 1",
    "opusenc": "opusenc (no loudness)",
    "bare": "bare libopus encode (floor)",
}


class ToolFailed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def find_gnu_time():
    """Path of GNU time, or None.

    Peak RSS has to be read by a small parent. A child that Python spawns (vfork or fork, then
    exec) starts with Python's own resident pages, and Linux carries that high-water mark across
    exec into ru_maxrss, so os.wait4 from here reports at least the interpreter's ~15 MB for any
    program. GNU time forks from a ~1 MB image and reports the child's wait4 ru_maxrss."""
    path = shutil.which("time")
    if not path:
        return None
    r = subprocess.run([path, "--version"], capture_output=True, text=True)
    return path if "GNU" in r.stdout + r.stderr else None


GNU_TIME = find_gnu_time()


def run(argv, what):
    """Runs argv to completion. Returns (wall seconds, peak RSS KiB or None, stdout, stderr)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", prefix="rss-") as rss:
        cmd = [GNU_TIME, "-f", "%M", "-o", rss.name, "--"] + argv if GNU_TIME else argv
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, _ = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        lines = rss.read().split()
        peak = int(lines[-1]) if GNU_TIME and lines and lines[-1].isdigit() else None
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        raise ToolFailed(f"{what} exited with {proc.returncode}: {shlex.join(argv)}\n{tail}")
    return wall, peak, stdout, stderr


def peak_of(values):
    """The largest peak RSS of several runs, or None when any of them is unknown."""
    values = list(values)
    return None if None in values else max(values)


def check_output(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


# ---------------------------------------------------------------------------------------------
# Loudness measurement (ffmpeg ebur128, not timed)

def measure_loudness(path, workdir):
    """Integrated loudness (LUFS) and true peak (dBTP) of any file ffmpeg can decode.

    The filter's summary rounds to 0.1; its per-frame metadata has three decimals, so we read the
    last frame's integrated value and the maximum true peak from it, and keep the summary as a
    cross-check."""
    fd, meta = tempfile.mkstemp(prefix="ebur128-", suffix=".txt", dir=workdir)
    os.close(fd)
    try:
        _, _, _, stderr = run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", path,
                               "-af", f"ebur128=peak=true:metadata=1,"
                               f"ametadata=mode=print:file={meta}", "-f", "null", "-"],
                              "ffmpeg ebur128")
        with open(meta) as f:
            text = f.read()
    finally:
        os.unlink(meta)
    integrated = None
    peak = 0.0
    for line in text.splitlines():
        if line.startswith("lavfi.r128.I="):
            integrated = float(line.split("=", 1)[1])
        elif line.startswith("lavfi.r128.true_peak="):
            peak = max(peak, float(line.split("=", 1)[1]))
    summary = stderr[stderr.rfind("Summary:"):]
    m_i = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    m_p = re.search(r"Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    if integrated is None or m_i is None:
        raise ToolFailed(f"could not parse ebur128 output for {path}")
    summary_i = float(m_i.group(1))
    if abs(summary_i - integrated) > 0.1:  # the last frame missed the tail: trust the summary
        integrated = summary_i
    dbtp = 20 * math.log10(peak) if peak > 0 else float("-inf")
    if m_p and abs(float(m_p.group(1)) - dbtp) > 0.1:
        dbtp = float(m_p.group(1))
    return integrated, dbtp


# ---------------------------------------------------------------------------------------------
# Inputs (generated once, cached in the workdir)

def wav_info(path):
    with wave.open(path, "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def make_speech_60s(workdir, path):
    tmp = os.path.join(workdir, "gen")
    os.makedirs(tmp, exist_ok=True)
    parts = []
    for i, (voice, text) in enumerate(SENTENCES):
        raw = os.path.join(tmp, f"s{i}.wav")
        part = os.path.join(tmp, f"s{i}-44k.wav")
        check_output(["espeak-ng", "-v", voice, "-w", raw, text])
        # 44.1 kHz, a short pause after each sentence, as people leave them between sentences.
        check_output(["sox", "-R", raw, "-r", str(INPUT_RATE), "-c", "1", "-b", "16", part,
                      "rate", "-v", str(INPUT_RATE), "pad", "0", str(SENTENCE_GAP_S)])
        parts.append((part, wav_info(part)[3]))
    # Cycle through the sentences while the next one fits, then pad with silence to exactly 60 s.
    want = INPUT_RATE * INPUT_SECONDS
    chosen, total = [], 0
    while True:
        part, frames = parts[len(chosen) % len(parts)]
        if total + frames > want:
            break
        chosen.append(part)
        total += frames
    cat = os.path.join(tmp, "cat.wav")
    check_output(["sox", "-R"] + chosen + [cat])
    unity = os.path.join(tmp, "unity.wav")
    check_output(["sox", "-R", cat, "-c", "2", unity, "pad", "0", f"{want - total}s",
                  "trim", "0", f"{want}s"])
    lufs, _ = measure_loudness(unity, workdir)
    out = path + ".tmp.wav"
    check_output(["sox", "-R", unity, out, "gain", f"{INPUT_LUFS - lufs:.2f}"])
    os.replace(out, path)
    shutil.rmtree(tmp)


def make_repeated(src, minutes, path):
    out = path + ".tmp.wav"
    check_output(["sox", "-R", src, out] + (["repeat", str(minutes - 1)] if minutes > 1 else []))
    os.replace(out, path)


def make_bare_input(src, path):
    """48 kHz mono 16-bit PCM for bare_encode: sox averages the channels and resamples."""
    out = path + ".tmp.wav"
    check_output(["sox", "-R", src, "-r", "48000", "-c", "1", "-b", "16", out,
                  "rate", "-v", "48000"])
    os.replace(out, path)


def prepare_inputs(workdir, long_minutes):
    inputs_dir = os.path.join(workdir, "inputs")
    os.makedirs(inputs_dir, exist_ok=True)
    short = os.path.join(inputs_dir, f"speech-60s-{RECIPE}.wav")
    want_frames = INPUT_RATE * INPUT_SECONDS
    if not (os.path.exists(short) and wav_info(short) == (INPUT_RATE, 2, 2, want_frames)):
        log(f"generating {short}")
        make_speech_60s(workdir, short)
    longp = os.path.join(inputs_dir, f"speech-{long_minutes}min-{RECIPE}.wav")
    want_long = want_frames * long_minutes
    if not (os.path.exists(longp) and wav_info(longp) == (INPUT_RATE, 2, 2, want_long)
            and os.path.getmtime(longp) >= os.path.getmtime(short)):
        log(f"generating {longp}")
        make_repeated(short, long_minutes, longp)
    result = []
    for name, path in (("60 s", short), (f"{long_minutes} min", longp)):
        bare = path[:-4] + "-48k-mono.wav"
        if not (os.path.exists(bare) and os.path.getmtime(bare) >= os.path.getmtime(path)):
            log(f"generating {bare}")
            make_bare_input(path, bare)
        rate, channels, _, frames = wav_info(path)
        lufs, dbtp = measure_loudness(path, workdir)
        mono_lufs, mono_dbtp = measure_loudness(bare, workdir)
        result.append({"name": name, "path": path, "bare_path": bare, "seconds": frames / rate,
                       "rate": rate, "channels": channels, "bytes": os.path.getsize(path),
                       "sha256": sha256(path), "lufs": lufs, "dbtp": dbtp,
                       "mono_lufs": mono_lufs, "mono_dbtp": mono_dbtp})
    return result


# ---------------------------------------------------------------------------------------------
# The tools. Each returns {"seconds", "rss_kib", ...}; "out" names the file it produced.

def last_json_line(text, what):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ToolFailed(f"{what} printed no JSON line:\n{text[-500:]}")


def run_jiayin(args, inp, out):
    wall, rss, stdout, _ = run([args.jiayin, inp["path"], out], "jiayin-transcode")
    report = last_json_line(stdout, "jiayin-transcode")
    return {"seconds": wall, "rss_kib": rss, "out": out, "report": report,
            "self_seconds": float(report["time_ms"]) / 1000 if "time_ms" in report else None}


LOUDNORM = "loudnorm=I=-16:TP=-1.5:LRA=11"
# The same job as Jiayin's: downmix to mono (the channels' mean, as codec/resample.c does) before
# the loudness is measured and normalised, in both passes. With the downmix left to `-ac 1` after
# the filters, loudnorm measured, upsampled to 192 kHz and limited both channels, twice the work
# of the mono job (a side check on the 60 s clip: its two passes took 1.4x as long, the median
# of 8 interleaved pairs, 1.2x-1.5x), and normalised the stereo signal rather than the mono one
# it wrote. (`-ac 1` stays for the encoder: without it ffmpeg 5.1 cannot pick the libopus
# encoder's channel layout.) ffmpeg-stereo keeps the command most users would write, with the
# downmix left to -ac 1, so both are reported side by side: the same job, and the usual command.
DOWNMIX = "pan=mono|c0=0.5*c0+0.5*c1"


def run_ffmpeg(args, inp, out, mono_first=True):
    base = ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-y", "-i", inp["path"]]
    first = f"{DOWNMIX}," if mono_first else ""
    wall1, rss1, _, stderr = run(base + ["-af", f"{first}{LOUDNORM}:print_format=json", "-f",
                                         "null", "-"], "ffmpeg loudnorm pass 1")
    try:
        m = json.loads(stderr[stderr.rindex("{"):stderr.rindex("}") + 1])
        measured = {k: float(m[k]) for k in
                    ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")}
    except (ValueError, KeyError) as e:
        raise ToolFailed(f"could not parse loudnorm pass 1 output ({e}):\n{stderr[-800:]}")
    af = (f"{first}{LOUDNORM}:measured_I={measured['input_i']}"
          f":measured_TP={measured['input_tp']}:measured_LRA={measured['input_lra']}"
          f":measured_thresh={measured['input_thresh']}:offset={measured['target_offset']}"
          ":linear=true:print_format=summary,aresample=48000")
    wall2, rss2, _, stderr2 = run(base + ["-af", af, "-ac", "1", "-c:a", "libopus", "-b:a", "24k",
                                    "-application", "voip", "-frame_duration", "20",
                                    "-compression_level", "10", "-vbr", "on", out],
                            "ffmpeg loudnorm pass 2")
    # loudnorm falls back from linear to dynamic (compressing) mode when the linear gain would
    # push the true peak over TP; say which mode it used, since it explains its output loudness.
    mode = re.search(r"Normalization Type:\s*(\w+)", stderr2)
    return {"seconds": wall1 + wall2, "rss_kib": peak_of([rss1, rss2]), "out": out,
            "mode": mode.group(1).lower() if mode else "unknown"}


def run_opusenc(args, inp, out):
    wall, rss, _, _ = run(["opusenc", "--bitrate", "24", "--quiet", inp["path"], out], "opusenc")
    return {"seconds": wall, "rss_kib": rss, "out": out}


def run_bare(args, inp, out):
    wall, rss, stdout, _ = run([args.bare, inp["bare_path"]], "bare_encode")
    report = last_json_line(stdout, "bare_encode")
    # The floor is the encode loop alone (what bare_encode times), not process start or I/O.
    return {"seconds": float(report["seconds"]), "wall_seconds": wall, "rss_kib": rss,
            "out": None, "bytes": int(report["bytes"]), "frames": int(report["frames"])}


RUNNERS = {"jiayin": run_jiayin, "ffmpeg": run_ffmpeg,
           "ffmpeg-stereo": lambda args, inp, out: run_ffmpeg(args, inp, out, mono_first=False),
           "opusenc": run_opusenc, "bare": run_bare}


# ---------------------------------------------------------------------------------------------
# Measuring

def bench_input(args, inp, tools, runs, outdir, budget_note=None):
    """Runs every tool `runs` times, interleaved (A B C D, A B C D, ...)."""
    results = {t: [] for t in tools}
    slug = inp["name"].replace(" ", "")
    outs = {t: os.path.join(outdir, f"{slug}-{t}.ogg") for t in tools}
    i = 0
    while i < runs:
        line = []
        round_start = time.perf_counter()
        for t in tools:
            if outs[t] and os.path.exists(outs[t]):
                os.unlink(outs[t])
            r = RUNNERS[t](args, inp, outs[t])
            results[t].append(r)
            line.append(f"{t} {r['seconds']:.3f}s")
        i += 1
        log(f"[{inp['name']} run {i}/{runs}] " + "  ".join(line))
        if budget_note is not None and i == 1:
            runs = budget_note(runs, time.perf_counter() - round_start)
    return results, outs


def summarize(inp, tools, results, outs, workdir):
    rows = {}
    for t in tools:
        secs = [r["seconds"] for r in results[t]]
        row = {"runs": len(secs), "median": statistics.median(secs), "min": min(secs),
               "max": max(secs), "rss_kib": peak_of(r["rss_kib"] for r in results[t])}
        row["xrt"] = inp["seconds"] / row["median"]
        if t == "bare":
            row["bytes"] = results[t][-1]["bytes"]
            row["lufs"] = row["dbtp"] = None
            row["wall_median"] = statistics.median(r["wall_seconds"] for r in results[t])
        else:
            row["bytes"] = os.path.getsize(outs[t])
            row["lufs"], row["dbtp"] = measure_loudness(outs[t], workdir)
        if t == "jiayin":
            row["report"] = results[t][-1]["report"]
            selfs = [r["self_seconds"] for r in results[t] if r["self_seconds"] is not None]
            row["self_median"] = statistics.median(selfs) if selfs else None
        if t.startswith("ffmpeg"):
            row["modes"] = sorted({r["mode"] for r in results[t]})
        rows[t] = row
    if "jiayin" in rows:
        for t in tools:
            rows[t]["vs_jiayin"] = rows[t]["median"] / rows["jiayin"]["median"]
    return rows


# ---------------------------------------------------------------------------------------------
# Reporting

def fmt_db(v, unit):
    if v is None:
        return "n/a"
    return f"{v:.2f} {unit}" if math.isfinite(v) else f"-inf {unit}"


def table_rows(inp, tools, rows):
    out = []
    for t in tools:
        r = rows[t]
        out.append([
            TOOL_LABEL[t],
            f"{r['median']:.3f} ({r['min']:.3f}–{r['max']:.3f})",
            str(r["runs"]),
            f"{r['xrt']:.1f}×",
            f"{r['vs_jiayin']:.2f}×" if "vs_jiayin" in r else "n/a",
            f"{r['bytes']:,}" + (" ¹" if t == "bare" else ""),
            fmt_db(r["lufs"], "LUFS"),
            fmt_db(r["dbtp"], "dBTP"),
            f"{r['rss_kib'] / 1024:.1f}" if r["rss_kib"] is not None else "n/a",
        ])
    return out


HEADER = ["tool", "median s (min–max)", "runs", "× realtime", "time / Jiayin's",
          "output bytes", "output loudness", "output true peak", "peak RSS MiB"]


def text_table(rows):
    widths = [max(len(r[i]) for r in [HEADER] + rows) for i in range(len(HEADER))]
    lines = []
    for k, r in enumerate([HEADER] + rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(rows):
    lines = ["| " + " | ".join(HEADER) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def checks(inputs, tools, all_rows):
    """Returns [(ok or None, text)]: None means the check could not be made."""
    res = []
    have = set(tools)
    for inp in inputs:
        rows = all_rows[inp["name"]]
        n = inp["name"]
        if "jiayin" not in have:
            res.append((None, f"[{n}] Jiayin targets: jiayin-transcode was not run"))
            continue
        j = rows["jiayin"]
        for f, what in (("ffmpeg", "doing the same job (mono first)"),
                        ("ffmpeg-stereo", "as usually written (loudnorm on stereo, -ac 1)")):
            if f not in have:
                continue
            s = rows[f]["median"] / j["median"]
            res.append((s >= TARGET_FFMPEG_SPEEDUP,
                        f"[{n}] Jiayin ≥ {TARGET_FFMPEG_SPEEDUP:g}× faster than ffmpeg 2-pass "
                        f"{what}: ffmpeg {rows[f]['median']:.3f} s / Jiayin "
                        f"{j['median']:.3f} s = {s:.2f}×"))
        if "bare" in have:
            s = j["median"] / rows["bare"]["median"]
            res.append((s <= TARGET_BARE_RATIO,
                        f"[{n}] Jiayin ≤ {TARGET_BARE_RATIO:g}× bare libopus encode: "
                        f"Jiayin {j['median']:.3f} s / bare {rows['bare']['median']:.3f} s "
                        f"= {s:.2f}×"))
        if "opusenc" in have:
            o = rows["opusenc"]
            res.append((j["median"] < o["median"],
                        f"[{n}] Jiayin faster than opusenc: Jiayin {j['median']:.3f} s vs "
                        f"opusenc {o['median']:.3f} s (opusenc/Jiayin = "
                        f"{o['median'] / j['median']:.2f}×)"))
            res.append((j["bytes"] <= o["bytes"],
                        f"[{n}] Jiayin file no larger than opusenc's: {j['bytes']:,} vs "
                        f"{o['bytes']:,} bytes ({j['bytes'] / o['bytes']:.3f}×)"))
        res.append((abs(j["lufs"] - TARGET_LUFS) <= TARGET_LUFS_TOLERANCE,
                    f"[{n}] Jiayin output {TARGET_LUFS:g} ± {TARGET_LUFS_TOLERANCE:g} LUFS: "
                    f"{j['lufs']:.2f} LUFS"))
        res.append((j["dbtp"] <= TARGET_MAX_DBTP,
                    f"[{n}] Jiayin output ≤ {TARGET_MAX_DBTP:.1f} dBTP: {j['dbtp']:.2f} dBTP"))
    if "jiayin" in have:
        a, b = (all_rows[inp["name"]]["jiayin"]["rss_kib"] for inp in inputs)
        if a is None or b is None:
            res.append((None, "Jiayin peak RSS growth: not measured (needs GNU time, see "
                        "find_gnu_time)"))
        else:
            res.append((b - a <= TARGET_RSS_GROWTH_KIB,
                        f"Jiayin peak RSS growth {inputs[0]['name']} → {inputs[1]['name']} ≤ "
                        f"{TARGET_RSS_GROWTH_KIB // 1024} MiB: {a:,} KiB → {b:,} KiB = "
                        f"{(b - a) / 1024:+.2f} MiB"))
    return res


def observations(inputs, tools, all_rows):
    """Things in Jiayin's output worth a second look, beyond the pass/fail targets."""
    notes = []
    if "jiayin" not in tools:
        return notes
    for inp in inputs:
        j = all_rows[inp["name"]]["jiayin"]
        rep = j["report"]
        n = inp["name"]
        if "output_bytes" in rep and int(rep["output_bytes"]) != j["bytes"]:
            notes.append(f"[{n}] jiayin-transcode reported output_bytes {rep['output_bytes']} "
                         f"but the file has {j['bytes']} bytes")
        if "output_lufs" in rep and abs(float(rep["output_lufs"]) - j["lufs"]) > 0.3:
            notes.append(f"[{n}] jiayin-transcode reported output_lufs {rep['output_lufs']} "
                         f"but ffmpeg measures {j['lufs']:.2f} LUFS in the file")
        if "duration_ms" in rep and abs(float(rep["duration_ms"]) / 1000 - inp["seconds"]) > 0.03:
            notes.append(f"[{n}] jiayin-transcode reported duration_ms {rep['duration_ms']} "
                         f"for a {inp['seconds']:.3f} s input")
        if j.get("self_median") and j["self_median"] > j["median"] * 1.05:
            notes.append(f"[{n}] jiayin-transcode's own time_ms exceeds the wall time")
    return notes


def versions(args):
    v = {}
    v["ffmpeg"] = check_output(["ffmpeg", "-version"]).splitlines()[0].split(" Copyright")[0]
    r = subprocess.run(["opusenc", "--version"], capture_output=True, text=True)
    v["opusenc"] = (r.stdout or r.stderr).splitlines()[0]
    try:
        v["libopus"] = "libopus " + check_output(["pkg-config", "--modversion", "opus"]).strip()
    except (OSError, subprocess.CalledProcessError):
        v["libopus"] = "unknown"
    v["sox"] = " ".join(check_output(["sox", "--version"]).split())
    v["espeak-ng"] = check_output(["espeak-ng", "--version"]).split(" Data at")[0].strip()
    v["python"] = "Python " + platform.python_version()
    return v


def source_revision():
    """HEAD, the last commit that touched codec/ or tools/, and whether they have uncommitted
    changes (read-only git; the binary is whatever was built, so this is a hint, not proof)."""
    here = os.path.dirname(os.path.abspath(__file__))
    git = ["git", "--no-optional-locks", "-C", here]
    try:
        head = check_output(git + ["rev-parse", "--short=12", "HEAD"]).strip()
        last = check_output(git + ["log", "-1", "--format=%h", "--abbrev=12", "--",
                                   ":/codec", ":/tools"]).strip()
        dirty = check_output(git + ["status", "--porcelain", "--untracked-files=no", "--",
                                    ":/codec", ":/tools"]).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return (f"HEAD {head}; codec/ and tools/ last changed in {last}"
            + ("; codec/ or tools/ have uncommitted changes" if dirty else ""))


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release()}


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jiayin", help="path to jiayin-transcode (a release build)")
    ap.add_argument("bare", help="path to the bare_encode binary")
    ap.add_argument("--runs", type=int, default=5, help="runs per tool per input (default 5)")
    ap.add_argument("--long-runs", type=int, default=None,
                    help=f"runs on the long clip (default: --runs, lowered to no fewer than "
                    f"{MIN_RUNS} when the benchmark would exceed --budget-minutes)")
    ap.add_argument("--budget-minutes", type=float, default=15.0,
                    help="time budget used to lower the long clip's runs (default 15)")
    ap.add_argument("--long-minutes", type=int, default=10,
                    help="length of the long clip in minutes (default 10)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "jiayin-bench"),
                    help="where inputs are cached and outputs written")
    ap.add_argument("--markdown", help="also write the report as Markdown to this file")
    ap.add_argument("--tools", default=",".join(TOOLS),
                    help="comma-separated subset of " + ",".join(TOOLS) + " (for development)")
    args = ap.parse_args()
    tools = [t for t in TOOLS if t in args.tools.split(",")]
    if args.runs < 1 or args.long_minutes < 1 or (args.long_runs is not None
                                                  and args.long_runs < 1):
        ap.error("--runs, --long-runs and --long-minutes must be at least 1")
    for t, path in (("jiayin", args.jiayin), ("bare", args.bare)):
        if t in tools and not os.access(path, os.X_OK):
            ap.error(f"{path} is not an executable ({t}); see tests/bench/README.md")
    for prog in ("ffmpeg", "sox", "espeak-ng", "opusenc"):
        if not shutil.which(prog):
            ap.error(f"{prog} is not on PATH")
    args.jiayin = os.path.abspath(args.jiayin)
    args.bare = os.path.abspath(args.bare)
    os.makedirs(args.workdir, exist_ok=True)
    outdir = os.path.join(args.workdir, "out")
    os.makedirs(outdir, exist_ok=True)

    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc).astimezone()
    command = shlex.join([sys.argv[0]] + sys.argv[1:])
    rev = source_revision()  # at the start: the tree may move while the benchmark runs
    inputs = prepare_inputs(args.workdir, args.long_minutes)
    long_runs = args.long_runs if args.long_runs is not None else args.runs
    notes = []
    if min(args.runs, long_runs) < MIN_RUNS:
        notes.append(f"Fewer than the {MIN_RUNS} runs issue 3 asks for (--runs {args.runs}, "
                     f"long clip {long_runs}): these medians are not evidence for its targets.")
        log("note: " + notes[-1])

    def budget(runs, first_round):
        if args.long_runs is not None:
            return runs
        elapsed = time.perf_counter() - started
        projected = elapsed + first_round * (runs - 1) + first_round * 0.3
        if projected <= args.budget_minutes * 60:
            return runs
        fit = 1 + int((args.budget_minutes * 60 - elapsed - first_round * 0.3) // first_round)
        lowered = max(min(runs, MIN_RUNS), min(runs, fit))
        if lowered < runs:
            notes.append(f"The {inputs[1]['name']} clip ran {lowered} times instead of {runs}: "
                         f"one round took {first_round:.0f} s and {runs} runs would have taken "
                         f"the benchmark past {args.budget_minutes:g} min (--long-runs forces a "
                         f"count).")
            log("note: " + notes[-1])
        return lowered

    all_rows = {}
    failed = None
    try:
        for k, inp in enumerate(inputs):
            results, outs = bench_input(args, inp, tools, args.runs if k == 0 else long_runs,
                                        outdir, budget if k == 1 else None)
            all_rows[inp["name"]] = summarize(inp, tools, results, outs, args.workdir)
    except ToolFailed as e:
        failed = str(e)
        log(f"error: {failed}")

    ver = versions(args)
    mach = machine()
    total = time.perf_counter() - started
    text, md = [], []
    text.append(f"Jiayin codec benchmark — {when:%Y-%m-%d %H:%M %Z}")
    text.append(f"machine: {mach['nproc']} CPUs, {mach['cpu']}, Linux {mach['kernel']}")
    text.append("versions: " + "; ".join(ver.values()))
    text.append(f"source: {rev}")
    text.append(f"command: {command}")
    md.append(f"- Date: {when:%Y-%m-%d %H:%M %Z}")
    md.append(f"- Machine: {mach['nproc']} CPUs (nproc), {mach['cpu']}, Linux {mach['kernel']}")
    md.append("- Versions: " + "; ".join(f"`{v}`" for v in ver.values()))
    md.append(f"- Source: {rev}")
    md.append(f"- Command: `{command}`")
    md.append(f"- Benchmark wall time: {total / 60:.1f} min")

    for inp in inputs:
        desc = (f"{inp['name']} input: {inp['seconds']:.3f} s, {inp['rate']} Hz, "
                f"{inp['channels']} ch, 16-bit WAV ({inp['bytes']:,} bytes, sha256 "
                f"{inp['sha256']}…), "
                f"{inp['lufs']:.2f} LUFS, {inp['dbtp']:.2f} dBTP; its 48 kHz mono downmix: "
                f"{inp['mono_lufs']:.2f} LUFS, {inp['mono_dbtp']:.2f} dBTP")
        text += ["", desc]
        md += ["", f"**{desc}**", ""]
        if inp["name"] not in all_rows:
            text.append("  not measured")
            md.append("not measured")
            continue
        rows = table_rows(inp, tools, all_rows[inp["name"]])
        text.append(text_table(rows))
        md.append(md_table(rows))
        j = all_rows[inp["name"]].get("jiayin")
        if j and j.get("self_median") is not None:
            rep = j["report"]
            said = ", ".join(f"{k} {rep[k]}" for k in
                             ("input_lufs", "gain_db", "limiter_max_db", "fit_passes",
                              "encodes", "output_lufs", "output_peak_dbtp", "output_bytes",
                              "duration_ms") if k in rep)
            s = (f"Jiayin's own time_ms: median {j['self_median']:.3f} s "
                 f"(wall median {j['median']:.3f} s includes process start and exit); "
                 f"it reported {said}.")
            text.append(s)
            md += ["", s]
        for name in ("ffmpeg", "ffmpeg-stereo"):
            f = all_rows[inp["name"]].get(name)
            if f:
                s = (f"{name} loudnorm pass 2 (linear=true) ran in {'/'.join(f['modes'])} "
                     "mode (it falls back to dynamic when the linear gain would exceed "
                     "TP=-1.5).")
                text.append(s)
                md += ["", s]
        b = all_rows[inp["name"]].get("bare")
        if b:
            s = (f"bare_encode process wall time: median {b['wall_median']:.3f} s "
                 f"(the table shows its encode loop alone).")
            text.append(s)
            md += ["", s]

    foot = ("¹ raw Opus packet bytes, no Ogg container. Medians of interleaved runs "
            "(jiayin, ffmpeg, ffmpeg-stereo, opusenc, bare; repeat), wall clock; ffmpeg's time "
            "is both passes. "
            "Loudness and true peak measured with ffmpeg `ebur128=peak=true` on each output. "
            "opusenc keeps the input's two channels and does no loudness work; "
            "bare_encode gets 48 kHz mono PCM prepared by sox beforehand (not timed). "
            "Peak RSS is the largest ru_maxrss of the runs, read by GNU time (`time -f %M`).")
    text += ["", foot]
    md += ["", foot]
    cmds = [
        "jiayin: jiayin-transcode IN OUT.ogg",
        f"ffmpeg pass 1: ffmpeg -i IN -af {DOWNMIX},{LOUDNORM}:print_format=json -f null -",
        f"ffmpeg pass 2: ffmpeg -i IN -af {DOWNMIX},{LOUDNORM}:measured_I=…:measured_TP=…:"
        "measured_LRA=…:measured_thresh=…:offset=…:linear=true:print_format=summary,"
        "aresample=48000 -ac 1 -c:a libopus -b:a 24k -application voip -frame_duration 20 "
        "-compression_level 10 -vbr on OUT.ogg",
        "ffmpeg-stereo: the same two passes without the pan filter (loudnorm on the input's "
        "channels, the downmix by -ac 1 at the encoder)",
        "opusenc: opusenc --bitrate 24 --quiet IN OUT.ogg",
        "bare: bare_encode IN-48k-mono.wav",
    ]
    text += ["", "Commands:"] + [f"  {c}" for c in cmds]
    md += ["", "Commands:", ""] + [f"- `{c}`" for c in cmds]

    if all_rows and len(all_rows) == len(inputs):
        res = checks(inputs, tools, all_rows)
        text += ["", "Targets (issue 3):"]
        md += ["", "Targets (issue 3):", ""]
        for ok, s in res:
            mark = "n/a " if ok is None else ("PASS" if ok else "FAIL")
            text.append(f"  {mark}  {s}")
            md.append(f"- **{mark}** {s}")
        obs = observations(inputs, tools, all_rows)
        if obs:
            text += ["", "Jiayin output to look at:"]
            md += ["", "Jiayin output to look at:", ""]
            text += [f"  - {o}" for o in obs]
            md += [f"- {o}" for o in obs]
    if notes:
        text += [""] + [f"Note: {n}" for n in notes]
        md += [""] + [f"Note: {n}" for n in notes]
    if failed:
        text += ["", f"ERROR: {failed}"]
        md += ["", f"ERROR: {failed}"]

    print("\n".join(text))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(md) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
