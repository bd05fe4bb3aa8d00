#!/bin/sh
# Sets up, builds with ASan+UBSan and runs every test (unit, fuzz-corpus replay, end-to-end;
# the unit and replay ones again as clang builds them), then prints one line
# "N passed, N failed" counting every test case (TAP subtests included).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-debian.sh
[ -d build-test ] || meson setup build-test -Db_sanitize=address,undefined -Db_lundef=false \
	--buildtype=debugoptimized >/dev/null
ninja -C build-test
# The other configurations must build warning-free too, tests included: gcc -O3 warns where
# -O2 does not (what scripts/run.sh builds), and clang builds the libFuzzer targets.
[ -d build-release ] || meson setup build-release --buildtype=release >/dev/null
ninja -C build-release
[ -d build-fuzz ] || CC=clang meson setup build-fuzz -Dfuzzing=true \
	-Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C build-fuzz
status=0
meson test -C build-test --print-errorlogs --num-processes 2 || status=$?
# The unit tests and the fuzz corpora once more as clang builds them: its UBSan checks what
# gcc's does not (an offset added to a null pointer: fuzz_webm found one the gcc run passed).
meson test -C build-fuzz --print-errorlogs --num-processes 2 --suite unit --suite fuzz ||
	status=$?
python3 scripts/test_summary.py build-test/meson-logs/testlog.json \
	build-fuzz/meson-logs/testlog.json
exit $status
