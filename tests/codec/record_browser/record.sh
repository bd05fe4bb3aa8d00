#!/bin/sh
# record.sh chromium|firefox OUT WAV QUERY — one MediaRecorder recording by a headless browser,
# its microphone faked from WAV (Chromium; Firefox's fake one is a tone: use src=webaudio), into
# OUT. QUERY: see page.html. Not run by the tests: the files it made are in tests/codec/data/.
# Needs chromium or firefox-esr, and node; Firefox's Web Audio needs a sound server (pulseaudio
# with a null sink will do). Run from the directory holding WAV, e.g.:
#   espeak-ng -s 150 -w s.wav "Hello mum ..." && sox s.wav -r 48000 speech.wav
#   record.sh chromium out.webm speech.wav 'ms=4000&slice=1000&abps=16000'
set -eu
browser=$1 out=$2 wav=$3 query=$4 port=${PORT:-8765}
here=$(cd "$(dirname "$0")" && pwd)
node "$here/serve.js" "$port" "$out" & server=$!
sleep 0.5
profile=$(mktemp -d)
url="http://127.0.0.1:$port/page.html?name=$(basename "$out")&wav=$(basename "$wav")&$query"
if [ "$browser" = chromium ]; then
	chromium --headless=new --no-sandbox --disable-gpu --user-data-dir="$profile" \
	    --use-fake-ui-for-media-stream --use-fake-device-for-media-stream \
	    --use-file-for-fake-audio-capture="$(pwd)/$wav" "$url" >/dev/null 2>&1 & browser_pid=$!
else
	cat >"$profile/user.js" <<'PREFS'
user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.autoplay.default", 0);
user_pref("media.autoplay.block-webaudio", false);
PREFS
	firefox-esr --headless --no-remote --profile "$profile" "$url" >/dev/null 2>&1 &
	browser_pid=$!
fi
wait $server
kill $browser_pid 2>/dev/null || true
wait $browser_pid 2>/dev/null || true
rm -rf "$profile"
