#!/usr/bin/env python3
"""Count every test case in meson testlog.json files: each TAP subtest, or the test itself.

A TAP test that died before finishing its plan counts its missing cases as failures, so a
crash can never make the count look better. Prints "N passed, N failed[, N skipped]".
"""
import json
import re
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as log:
        for line in log:
            t = json.loads(line)
            out = t.get("stdout") or ""
            plan = re.search(r"^1\.\.(\d+)", out, re.M)
            oks = re.findall(r"^(ok|not ok)\b[^\n]*", out, re.M)
            if plan or oks:
                # A SKIP directive makes a case skipped whether it says ok or not ok (TAP 13).
                s = len(re.findall(r"^(?:not )?ok\b.*#\s*SKIP", out, re.M | re.I))
                s_not_ok = len(re.findall(r"^not ok\b.*#\s*SKIP", out, re.M | re.I))
                p = sum(1 for o in oks if o == "ok")
                f = len(oks) - p - s_not_ok
                if plan and len(oks) < int(plan.group(1)):
                    f += int(plan.group(1)) - len(oks)
                if t["result"] not in ("OK", "SKIP", "EXPECTEDFAIL") and f == 0:
                    f = 1  # the process failed after all its cases passed (a leak report, say)
                passed += p - (s - s_not_ok)
                skipped += s
                failed += f
            elif t["result"] == "SKIP":
                skipped += 1
            elif t["result"] in ("OK", "EXPECTEDFAIL"):
                passed += 1
            else:
                failed += 1
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
