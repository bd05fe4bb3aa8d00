#!/bin/sh
# Sets up, builds (release) and runs Jiayin's server in the foreground on its defaults:
# http://127.0.0.1:8080, data (SQLite) in ./jiayin-data, created on first start. Extra
# arguments go to the server (see `build/server/jiayin --help`); Ctrl-C stops it cleanly.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup-debian.sh
[ -d build ] || meson setup build --buildtype=release -Dtests=false >/dev/null
ninja -C build >/dev/null
# The default address only when no arguments may have changed it (--listen, --config): the
# server's own first line says where it listens either way.
if [ $# -eq 0 ]; then
	echo "jiayin: serving http://127.0.0.1:8080 (try: curl http://127.0.0.1:8080/healthz)" >&2
fi
exec build/server/jiayin "$@"
