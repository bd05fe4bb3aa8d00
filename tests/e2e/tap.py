"""
tap.py — the TAP runner and program launcher shared by the end-to-end scripts.

A Case names its checks up front (so the plan "1..N" can be printed before anything runs) and
its function returns an outcome per check name. Cases run on a small thread pool (the work is
in child processes, so threads are enough) and are reported in submission order, so the output
is stable whatever finishes first. A check the case function did not report, or a case that
raised, is "not ok" with the reason as a diagnostic: nothing passes by omission.
"""
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import traceback

# Markers that mean the program under test crashed or hit undefined behaviour.
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                     "MemorySanitizer", "ThreadSanitizer", "runtime error:")

# One transcode under ASan of a 30 s clip takes a few seconds; this only stops a hang.
PROGRAM_TIMEOUT_S = 180


class Case:
    """A group of checks that share work (one transcode, say). fn() -> {check: (ok, [diag])}."""

    def __init__(self, name, checks, fn):
        self.name = name
        self.checks = list(checks)
        self.fn = fn


def _run_case(case):
    try:
        return case.fn() or {}
    except Exception:  # a bug in the test or an unexpected tool failure: report, keep going
        return {"__exception__": traceback.format_exc()}


def run(cases, workers=2):
    """Run cases, print TAP, return the process exit status (0 only if every check passed)."""
    total = sum(len(c.checks) for c in cases)
    print(f"1..{total}", flush=True)
    number = 0
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_run_case, c) for c in cases]
        for case, fut in zip(cases, futures):
            outcome = fut.result()
            exc = outcome.get("__exception__")
            for check in case.checks:
                number += 1
                label = f"{case.name}: {check}" if check else case.name
                if exc is not None:
                    ok, diags = False, ["the test itself raised:"] + exc.rstrip().splitlines()
                elif check in outcome:
                    ok, diags = outcome[check]
                else:
                    ok, diags = False, ["not evaluated (an earlier step of this case failed)"]
                if not ok:
                    failed += 1
                print(f"{'ok' if ok else 'not ok'} {number} - {label}")
                for d in diags:
                    for line in str(d).splitlines() or [""]:
                        print(f"# {line}")
                sys.stdout.flush()
    print(f"# {total - failed} passed, {failed} failed")
    return 1 if failed else 0


def missing_tools(names):
    return [n for n in names if shutil.which(n) is None]


def report_setup_failure(name, diags):
    """Print a one-test TAP stream for a failure that stops the script before its cases."""
    print("1..1")
    print(f"not ok 1 - {name}")
    for d in diags:
        for line in str(d).splitlines():
            print(f"# {line}")
    return 1


def check_setup(program, tools):
    """The program's absolute path, or None after a failed one-test TAP run saying what is
    missing (the program under test, or the independent tools the checks need)."""
    problem = program_problem(program)
    if problem:
        report_setup_failure("the program under test is available", [problem])
        return None
    missing = missing_tools(tools)
    if missing:
        report_setup_failure("the tools the tests need are installed", [
            "missing: " + ", ".join(missing),
            "Debian packages: ffmpeg sox espeak-ng opus-tools"])
        return None
    return os.path.abspath(program)


class ProgramRun:
    """One run of the program under test: exit status, output, the parsed JSON line."""

    def __init__(self, argv, proc=None, timeout=False, start_error=None):
        self.argv = argv
        self.timeout = timeout
        self.start_error = start_error
        self.rc = proc.returncode if proc else None
        self.stdout = proc.stdout if proc else ""
        self.stderr = proc.stderr if proc else ""
        self.lines = [l for l in self.stdout.splitlines() if l.strip()]
        self.json = None
        self.json_error = None
        if len(self.lines) == 1:
            try:
                self.json = json.loads(self.lines[0])
            except ValueError as e:
                self.json_error = f"stdout is not JSON: {e}"
        else:
            self.json_error = f"stdout has {len(self.lines)} non-empty lines, expected exactly 1"

    def crash(self):
        """A reason string if the run crashed, hung or tripped a sanitizer, else None."""
        if self.start_error:
            return f"could not start: {self.start_error}"
        if self.timeout:
            return f"timed out after {PROGRAM_TIMEOUT_S} s"
        if self.rc is not None and self.rc < 0:
            return f"killed by signal {-self.rc}"
        for marker in SANITIZER_MARKERS:
            if marker in self.stderr:
                return f"stderr contains {marker!r}"
        return None

    def describe(self):
        """Diagnostic lines: the command, status, and the head of stdout/stderr."""
        out = [f"command: {' '.join(self.argv)}", f"exit status: {self.rc}"]
        if self.stdout.strip():
            out.append("stdout: " + self.stdout.strip()[:600])
        if self.stderr.strip():
            tail = self.stderr.strip().splitlines()[:25]
            out.append("stderr:")
            out += ["  " + l for l in tail]
        return out


def run_program(program, args):
    argv = [program] + [str(a) for a in args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                              timeout=PROGRAM_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return ProgramRun(argv, None, timeout=True)
    except OSError as e:  # e.g. the binary is being relinked: a failure, not a test bug
        return ProgramRun(argv, None, start_error=str(e))
    return ProgramRun(argv, proc)


def program_problem(program):
    """None if `program` is an executable file, else a reason."""
    if not program:
        return "usage: SCRIPT PATH-TO-jiayin-transcode"
    if not os.path.isfile(program):
        return f"{program} does not exist (build it: meson setup build-dev && ninja -C build-dev)"
    if not os.access(program, os.X_OK):
        return f"{program} is not executable"
    return None
