#!/usr/bin/env bash
# D33 cost: one connection per alarm (scripts/conn-per-alarm.py), server CPU per frame with the arrival
# window on (250ms) and off (0s), from one source address and from 40; 3 rounds. Prints one line per run.
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/alarm-center}   # cargo build --release first
run() { # $1 window, $2 sources
  local dir; dir=$(mktemp -d)
  ALARM_CENTER_LOG=warn ALARM_CENTER_SERVER__ARRIVAL_ORDER_WINDOW=$1 ALARM_CENTER_SERVER__MAX_CONNECTIONS_PER_IP=30000 \
  ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_IP_PER_MINUTE=0 ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_MINUTE=0 \
    "$BIN" serve --listen 127.0.0.1:25002 --api-listen 127.0.0.1:0 --data-dir "$dir" 2>/dev/null &
  local pid=$!; sleep 1
  local t0; t0=$(awk '{print $14+$15}' /proc/$pid/stat)
  local out; out=$(python3 "$(dirname "$0")/conn-per-alarm.py" --port 25002 --cameras 40 --seconds 15 --sources "$2")
  sleep 1
  local t1; t1=$(awk '{print $14+$15}' /proc/$pid/stat)
  kill -TERM $pid; wait $pid || true
  local sent; sent=$(echo "$out" | sed 's/.*sent=\([0-9]*\).*/\1/')
  local stored; stored=$("$BIN" events --data-dir "$dir" --json --limit 1000000 --code HumanDetect | wc -l)
  echo "window=$1 sources=$2 $out stored=$stored server_cpu_s=$(echo "scale=2; ($t1-$t0)/100" | bc) us_per_frame=$(echo "scale=1; ($t1-$t0)*10000/$sent" | bc)"
  rm -rf "$dir"
}
for i in 1 2 3; do
  for s in 1 40; do run 250ms $s; run 0s $s; done
done
