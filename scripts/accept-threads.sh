#!/usr/bin/env bash
# One connection per alarm at a fixed rate, builds alternating round by round (not a test; D73,
# docs/benchmarks.md §23): for each build in BINS, runs `alarm-center serve` (limits raised as
# scripts/conn-per-alarm.sh does) and the generator (crates/sim/examples/conn_per_alarm.rs: CAMERAS
# cameras from SOURCES addresses, XM alarms, one connection each, RATE connections/s for SECS s) and
# prints per run: connections accepted, the server's CPU from just before the generator to a second
# after it (utime + stime of /proc/PID/stat) and per alarm, the CPU of its connection threads
# (/proc/PID/task/*), and from /metrics the connections handed to another thread (D64), the calls of
# the accepting thread for help and the connections the others accepted meanwhile (D73). Then the
# medians per build.
# Usage: BINS="old/alarm-center new/alarm-center" scripts/accept-threads.sh
#        (env: ROUNDS=3 RATE=12000 SECS=15 CAMERAS=200 SOURCES=40 CONCURRENCY=256 PORT=25016
#        API_PORT=25017 GEN=…). Traffic stays on 127.0.0.1; every process is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-12000}
SECS=${SECS:-15}
CAMERAS=${CAMERAS:-200}
SOURCES=${SOURCES:-40}
CONCURRENCY=${CONCURRENCY:-256}
PORT=${PORT:-25016}
API_PORT=${API_PORT:-25017}
TARGET=${CARGO_TARGET_DIR:-target}
if [[ -z ${BINS:-} ]]; then
    cargo build --release --quiet -p alarm-center
    BINS=$TARGET/release/alarm-center
fi
if [[ -z ${GEN:-} ]]; then
    cargo build --release --quiet -p alarm-center-sim --example conn_per_alarm
fi
GEN=${GEN:-$TARGET/release/examples/conn_per_alarm}
ulimit -n "$(ulimit -Hn)"
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/alarm-center-accept.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

ticks() { cut -d' ' -f14,15 "$1" | awk '{print $1 + $2}'; }

connection_thread_ticks() { # $1 = pid
    awk '/\(connections-/ {s += $14 + $15} END {print s + 0}' /proc/"$1"/task/*/stat
}

metric() { # $1 = name (without alarm_center_ and _total), $2 = file
    sed -n "s/^alarm_center_$1_total \([0-9]*\)$/\1/p" "$2"
}

run() { # $1 = binary; prints one result line
    rm -rf "$WORK/data"
    env ALARM_CENTER_LOG=info ALARM_CENTER_API__LISTEN="127.0.0.1:$API_PORT" \
        ALARM_CENTER_SERVER__MAX_CONNECTIONS_PER_IP=30000 ALARM_CENTER_SERVER__MAX_CONNECTIONS=30000 \
        ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_IP_PER_MINUTE=0 ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_MINUTE=0 \
        ALARM_CENTER_SERVER__STATS_INTERVAL=60s \
        "$1" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" 2> "$WORK/server.log" &
    local pid=$!
    for _ in $(seq 100); do grep -q "accepting devices" "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done
    sleep 0.5
    local before; before=$(ticks "/proc/$pid/stat")
    local threads_before; threads_before=$(connection_thread_ticks "$pid")
    "$GEN" --target "127.0.0.1:$PORT" --cameras "$CAMERAS" --sources "$SOURCES" --rate "$RATE" \
        --concurrency "$CONCURRENCY" --seconds "$SECS" > /dev/null 2>&1
    sleep 1
    local after; after=$(ticks "/proc/$pid/stat")
    local threads_after; threads_after=$(connection_thread_ticks "$pid")
    curl -s "http://127.0.0.1:$API_PORT/metrics" > "$WORK/metrics"
    kill -TERM $pid; wait $pid 2>/dev/null || true
    local accepted; accepted=$(metric connections_accepted "$WORK/metrics")
    printf '%s accepted=%s cpu_s=%s us_per_alarm=%s connection_threads_s=%s handed_over=%s helpers_called=%s accepted_by_helpers=%s\n' \
        "$1" "$accepted" "$(echo "scale=2; ($after - $before) / $TICKS" | bc)" \
        "$(echo "scale=1; 1000000 * ($after - $before) / $TICKS / $accepted" | bc)" \
        "$(echo "scale=2; ($threads_after - $threads_before) / $TICKS" | bc)" \
        "$(metric connections_handed_over "$WORK/metrics")" \
        "$(metric accept_helpers_called "$WORK/metrics")" \
        "$(metric connections_accepted_by_helpers "$WORK/metrics")"
}

echo "== one connection per alarm at ${RATE}/s for ${SECS}s, $ROUNDS rounds, builds alternating: $BINS"
for _ in $(seq "$ROUNDS"); do
    for bin in $BINS; do
        run "$bin" | tee -a "$WORK/results"
    done
done
python3 - "$WORK/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    binary, rest = line.split(" ", 1)
    fields = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    rows.setdefault(binary, []).append(fields)
for binary, runs in rows.items():
    per = statistics.median(float(r["us_per_alarm"]) for r in runs)
    threads = statistics.median(float(r["connection_threads_s"]) for r in runs)
    print(f"{binary}: median {per:.1f} µs of CPU per alarm, connection threads {threads:.2f} s ({len(runs)} runs)")
PY
echo "logs: $WORK"
