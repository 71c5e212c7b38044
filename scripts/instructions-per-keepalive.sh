#!/usr/bin/env bash
# Instructions per keepAlive in steady state (not a test): runs the server under
# `valgrind --tool=callgrind`, connects DEVICES simulated devices (outside valgrind) that keep alive
# every KEEPALIVE and send no alarms, lets them settle for WARM seconds, then zeroes callgrind's
# counters, counts SECS seconds and prints the user-space instructions per frame received in that
# window (frames from the server's /metrics before and after), in all, by thread and for the main parts
# of each (scripts/callgrind-per-frame.py). Kernel work is
# not counted (`scripts/load-run.sh d` measures CPU time). Instruction counts do not depend on what
# else the machine is doing, so builds and settings can be compared on a noisy machine.
# Usage: BIN=path/to/alarm-center scripts/instructions-per-keepalive.sh
#   env: DEVICES (1000), KEEPALIVE (4s), WARM (30), SECS (30), VARIANT (mixed), PORT (26200; the API
#   listens on PORT+1); other ALARM_CENTER_* settings pass through (e.g.
#   ALARM_CENTER_SUPERVISION__LAST_SEEN_FLUSH=30s); KEEP=1 keeps the callgrind profile (its path is
#   printed). Traffic goes to 127.0.0.1 only; the run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-1000}
KEEPALIVE=${KEEPALIVE:-4s}
WARM=${WARM:-30}
SECS=${SECS:-30}
VARIANT=${VARIANT:-mixed}
PORT=${PORT:-26200}
if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet
    BIN=${CARGO_TARGET_DIR:-target}/release/alarm-center
fi
WORK=$(mktemp -d /tmp/alarm-center-keepalive-instructions.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
ulimit -n "$(ulimit -Hn)"

ALARM_CENTER_LOG=info ALARM_CENTER_API__LISTEN="127.0.0.1:$((PORT + 1))" \
ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_IP_PER_MINUTE=0 ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_MINUTE=0 \
ALARM_CENTER_SERVER__MAX_CONNECTIONS_PER_IP=30000 \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" 2> "$WORK/server.log" &
SERVER=$!
for _ in $(seq 120); do grep -q "accepting devices" "$WORK/server.log" 2>/dev/null && break; sleep 0.5; done
grep -q "accepting devices" "$WORK/server.log" || { echo "server did not start"; cat "$WORK/server.log"; exit 1; }
"$BIN" simulate --target "127.0.0.1:$PORT" --devices "$DEVICES" --keepalive "$KEEPALIVE" --alarm-rate 0.001 \
    --variant "$VARIANT" --duration "$((WARM + SECS + 10))s" --quiet > "$WORK/sim.out" 2> "$WORK/sim.err" &
SIM=$!
frames() {
    curl -sf ${ALARM_CENTER_API__TOKEN:+-H "Authorization: Bearer $ALARM_CENTER_API__TOKEN"} \
        "http://127.0.0.1:$((PORT + 1))/metrics" | awk '/^alarm_center_frames_total /{print $2}'
}
sleep "$WARM"
callgrind_control -z "$SERVER" > /dev/null
before=$(frames || true)
sleep "$SECS"
after=$(frames || true)
callgrind_control -d "$SERVER" > /dev/null
[[ -n $before && -n $after && $after -gt $before ]] || { echo "no frames counted from /metrics ($before → $after)"; exit 1; }
wait "$SIM" || true
kill -TERM "$SERVER"
wait "$SERVER" || true
reconnects=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["report"]["reconnects"])' "$WORK/sim.out")
echo "== $(basename "$BIN"): $DEVICES devices ($VARIANT), a keepAlive every $KEEPALIVE; ${SECS}s counted after ${WARM}s: $((after - before)) frames, $reconnects reconnects"
callgrind_annotate --inclusive=yes --threshold=100 "$WORK/callgrind.out".1 2>/dev/null | python3 scripts/callgrind-per-frame.py "$((after - before))"
[[ -z ${KEEP:-} ]] || echo "profile: $WORK/callgrind.out.1"
