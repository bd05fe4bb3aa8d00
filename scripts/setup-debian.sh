#!/bin/sh
# Installs what Jiayin needs to build, test and benchmark on Debian 12 (run as root).
# Idempotent: packages already present are left alone, and apt-get update runs only when
# something is missing.
set -eu
PACKAGES="build-essential meson ninja-build pkg-config clang libclang-rt-14-dev
  libopus-dev libogg-dev libsoxr-dev libebur128-dev libcmocka-dev libspeexdsp-dev
  libsqlite3-dev libsodium-dev libarchive-dev libssl-dev node-llhttp libuv1-dev libjansson-dev
  zlib1g-dev python3 ffmpeg sox espeak-ng opus-tools wrk nginx-light strace"
missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# Node.js and npm run the tests that drive the server with real JavaScript clients (tests/js).
# Debian's packages are `nodejs npm`; a nodejs from elsewhere (NodeSource) brings its own npm.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	missing="$missing nodejs npm"
fi
if [ -n "$missing" ]; then
	echo "setup: installing$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	# apt's own timeouts and retries; and a bound on the whole update, tried three times: one
	# update here once hung for 18 minutes on a connection that never answered, and was done
	# in seconds when started again.
	apt="-o Acquire::http::Timeout=60 -o Acquire::Retries=3"
	tries=0
	# shellcheck disable=SC2086
	until timeout 300 apt-get $apt update -qq; do
		tries=$((tries + 1))
		[ "$tries" -lt 3 ] || { echo "setup: apt-get update failed 3 times" >&2; exit 1; }
		echo "setup: apt-get update failed or hung; trying again" >&2
	done
	# shellcheck disable=SC2086
	apt-get $apt install -y -qq --no-install-recommends $missing >/dev/null
fi
# The JavaScript tests' packages (tus-js-client), exactly as package-lock.json pins them;
# again only when the lock file changed since the last install.
js="$(dirname "$0")/../tests/js"
if ! cmp -s "$js/package-lock.json" "$js/node_modules/.installed-lock.json"; then
	echo "setup: npm ci in tests/js" >&2
	npm ci --prefix "$js" --no-audit --no-fund >/dev/null
	cp "$js/package-lock.json" "$js/node_modules/.installed-lock.json"
fi
