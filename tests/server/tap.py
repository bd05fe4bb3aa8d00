"""The TAP the Python tests speak (meson counts each case): a check, and the plan at the end."""

results = []


def ok(cond, name, detail=""):
    """One check: `ok N - name`, or `not ok` with the detail as a comment."""
    results.append(bool(cond))
    print(f"{'ok' if cond else 'not ok'} {len(results)} - {name}"
          + (f"\n# {detail}" if detail and not cond else ""), flush=True)
    return cond


def skip(name, why):
    """A check this machine cannot make: `ok N - name # SKIP why` (TAP counts it as passed)."""
    results.append(True)
    print(f"ok {len(results)} - {name} # SKIP {why}", flush=True)


def finish():
    """The plan line; the exit status: 0 when every check passed."""
    print(f"1..{len(results)}")
    return 0 if all(results) else 1
