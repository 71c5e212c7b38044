#!/usr/bin/env bash
# HTTP-mode throughput (not a test): wrk, a real HTTP/1.1 client, posts Dahua NotifyEvent events over
# CONNS keep-alive connections to a release `alarm-center serve` on 127.0.0.1. Every answer is a 200
# sent only after the event is committed, so requests/s here is durable events/s end to end.
# Each run prints wrk's figures and checks that the store holds at least as many events as 2xx answers.
# Usage: scripts/http-bench.sh   (env: CONNS=100, SECS=20, THREADS=2, RUNS=3, PORT=25003, PROFILE=release;
#        BIN=path/to/alarm-center runs that build instead of building this checkout)
# Needs wrk (Debian package `wrk`). Traffic goes to 127.0.0.1 only; every run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-100}
SECS=${SECS:-20}
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}
PORT=${PORT:-25003}
PROFILE=${PROFILE:-release}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
ulimit -n "$(ulimit -Hn)"
if [[ -z ${BIN:-} ]]; then
    cargo build --profile "$PROFILE" --quiet -p alarm-center
    BIN=${CARGO_TARGET_DIR:-target}/$PROFILE/alarm-center
fi
WORK=$(mktemp -d /tmp/alarm-center-http.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/post.lua" <<'LUA'
-- Alternating start/stop of a human detection on 16 channels, as an NVR in HTTP mode sends it.
local n = 0
request = function()
  n = n + 1
  local action = (n % 2 == 0) and "Stop" or "Start"
  local body = string.format('{"Action":"%s","Code":"SmartMotionHuman","Index":%d,"Data":{"StartTime":"2024-08-21 17:15:31","IP":"192.0.2.20","uuid":"bench-%d"}}', action, n % 16, n)
  return wrk.format("POST", "/cgi-bin/NotifyEvent", {["Content-Type"] = "application/json"}, body)
end
LUA

rates=()
for run in $(seq "$RUNS"); do
    rm -rf "$WORK/data"
    ALARM_CENTER_API__ENABLED=false "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" 2> "$WORK/server.log" &
    server=$!
    for _ in $(seq 50); do grep -q "accepting devices" "$WORK/server.log" 2>/dev/null && break; sleep 0.2; done
    wrk -t "$THREADS" -c "$CONNS" -d "${SECS}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT/" > "$WORK/wrk.txt"
    kill -TERM "$server"; wait "$server" || true
    stored=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from events where kind != 'device'\").fetchone()[0])" "$WORK/data/alarm-center.db")
    total=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt"); non2xx=${non2xx:-0}
    rate=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    rates+=("$rate")
    echo "== run $run: $CONNS connections, ${SECS}s, profile $PROFILE"
    sed -n '/Latency Distribution/,/requests in/p' "$WORK/wrk.txt"
    echo "requests/s $rate; answers $total (non-2xx $non2xx); events in the store $stored"
    if [ "$stored" -lt $((total - non2xx)) ]; then
        echo "LOSS: fewer events stored than 200 answers"; exit 1
    fi
done
printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median requests/s over %d runs: %s (min %s, max %s)\n", NR, a[int((NR+1)/2)], a[1], a[NR]}'
