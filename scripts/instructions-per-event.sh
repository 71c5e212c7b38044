#!/usr/bin/env bash
# Instructions per alarm event (not a test): runs the server under `valgrind --tool=callgrind` with a
# fixed load from the simulator (outside valgrind) and prints the user-space instructions the server
# executed per frame received, in all and for its main parts. Instruction counts do not depend on
# what else the machine is doing, so two builds can be compared on a noisy machine where CPU times
# cannot (they vary with batch sizes, so compare runs of the same load, and expect ±2 %). Kernel work
# (system calls, wake-ups) is not counted: `scripts/load-run.sh` measures CPU time.
# Usage: BIN=path/to/alarm-center scripts/instructions-per-event.sh
#   env: DEVICES (100), RATE (2000 events/s in total), KEEPALIVE (10s, each device's period), SECS (15),
#   VARIANT (dhip), PORT (25003), KEEP=1 keeps the callgrind profile (its path is printed)
# Traffic goes to 127.0.0.1 only; the run stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-100}
RATE=${RATE:-2000}
SECS=${SECS:-15}
VARIANT=${VARIANT:-dhip}
KEEPALIVE=${KEEPALIVE:-10s}
PORT=${PORT:-25003}
if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet
    BIN=${CARGO_TARGET_DIR:-target}/release/alarm-center
fi
WORK=$(mktemp -d /tmp/alarm-center-instructions.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

ALARM_CENTER_LOG=info ALARM_CENTER_API__LISTEN=127.0.0.1:0 \
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" 2> "$WORK/server.log" &
SERVER=$!
for _ in $(seq 120); do grep -q "accepting devices" "$WORK/server.log" 2>/dev/null && break; sleep 0.5; done
grep -q "accepting devices" "$WORK/server.log" || { echo "server did not start"; cat "$WORK/server.log"; exit 1; }
"$BIN" simulate --target "127.0.0.1:$PORT" --devices "$DEVICES" --keepalive "$KEEPALIVE" --alarm-rate "$RATE" \
    --variant "$VARIANT" --duration "${SECS}s" --quiet > "$WORK/sim.out" 2> "$WORK/sim.err"
# Let the writer catch up (it is ~50 times slower under valgrind), then stop and write the profile.
sleep 5
kill -TERM "$SERVER"
wait "$SERVER" || true
frames=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["report"]["frames_sent"])' "$WORK/sim.out")
echo "== $(basename "$BIN"): $DEVICES devices, $RATE events/s ($VARIANT), a keepAlive every $KEEPALIVE, for ${SECS}s: $frames frames"
callgrind_annotate --inclusive=yes --threshold=100 "$WORK/callgrind.out" 2>/dev/null | python3 scripts/callgrind-per-frame.py "$frames"
if [[ -n ${KEEP:-} ]]; then echo "profile: $WORK/callgrind.out"; else rm -rf "$WORK"; fi
