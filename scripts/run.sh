#!/bin/sh
# Sets up, builds (release) and runs Jiayin's main program. Until the server lands, that is the
# transcoder on the bundled sample: it prints its measurements and where the output went.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-debian.sh
[ -d build ] || meson setup build --buildtype=release -Dtests=false >/dev/null
ninja -C build >/dev/null
out="${1:-jiayin-sample.ogg}"
build/tools/jiayin-transcode tests/data/sample.wav "$out"
echo "wrote $(pwd)/$out"
