"""The TAP the Python tests speak (meson counts each case): a check, and the plan at the end."""

results = []


def ok(cond, name, detail=""):
    """One check: `ok N - name`, or `not ok` with the detail as a comment."""
    results.append(bool(cond))
    # Every line of the detail is a comment: a server's answer quoted in it that has a line
    # starting "ok" or "1..", say, must not read as a result or a plan.
    comment = "".join(f"\n# {line}" for line in str(detail).splitlines()) if not cond else ""
    print(f"{'ok' if cond else 'not ok'} {len(results)} - {' '.join(str(name).split())}"
          + comment, flush=True)
    return cond


def skip(name, why):
    """A check this machine cannot make: `ok N - name # SKIP why` (TAP counts it as passed)."""
    results.append(True)
    print(f"ok {len(results)} - {name} # SKIP {why}", flush=True)


def finish():
    """The plan line; the exit status: 0 when every check passed."""
    print(f"1..{len(results)}")
    return 0 if all(results) else 1
