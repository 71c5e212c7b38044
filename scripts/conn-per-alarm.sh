#!/usr/bin/env bash
# One connection per alarm (XM cameras; issue 12), side by side (not a test): the same generator run
# (crates/sim/examples/conn_per_alarm.rs: CAMERAS cameras from SOURCES source addresses 127.0.0.1…,
# XM 1508 start/stop pushes, one frame per connection, RATE frames/s or as fast as possible (RATE=0,
# at most CONCURRENCY connections being opened at once), SECS seconds) is sent to `alarm-center serve`
# (limits raised as scripts/load-run.sh does; arrival order at its default) and to the counting sink
# (crates/sim/examples/count_sink.rs: accept, read, frame with the same decoder, count), alternately,
# RUNS times each. Per run it prints frames sent, frames counted (sink) or alarm events stored
# (alarm-center, counted in the store once it stopped: sent must equal stored), events/s (handled
# divided by the generator's time plus the drain after it), the server's CPU time (utime + stime of
# /proc/PID/stat, from just before the generator starts until everything sent was handled) and CPU per
# event, and how many connects took a second or more (a SYN dropped because the accept queue was full,
# retransmitted after 1 s: the server fell behind a generator that does not wait for it); then the
# medians and the ratios alarm-center / sink. RATE=0 measures the most each takes; a fixed RATE (e.g.
# 12000) whether a rate is stored without loss and the CPU per event at that rate.
# Usage: scripts/conn-per-alarm.sh   (env: RUNS=3 SECS=20 CAMERAS=200 SOURCES=40 RATE=0 CONCURRENCY=256
#        PORT=25006 LOG=info (alarm-center's log filter) WINDOW= (server.arrival-order-window, default
#        when empty) ZERO_LINGER=no NO_SINK= (non-empty: alarm-center only, no ratios); BIN=…, SINK=…,
#        GEN=… to use given builds). Traffic stays on 127.0.0.1; every process is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-20}
CAMERAS=${CAMERAS:-200}
SOURCES=${SOURCES:-40}
RATE=${RATE:-0}
CONCURRENCY=${CONCURRENCY:-256}
PORT=${PORT:-25006}
LOG=${LOG:-info}
WINDOW=${WINDOW:-}
ZERO_LINGER=${ZERO_LINGER:-no}
TARGET=${CARGO_TARGET_DIR:-target}
if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet -p alarm-center
    BIN=$TARGET/release/alarm-center
fi
if [[ -z ${SINK:-} || -z ${GEN:-} ]]; then
    cargo build --release --quiet -p alarm-center-sim --example count_sink --example conn_per_alarm
fi
SINK=${SINK:-$TARGET/release/examples/count_sink}
GEN=${GEN:-$TARGET/release/examples/conn_per_alarm}
ulimit -n "$(ulimit -Hn)"
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/alarm-center-cpa.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

cpu_ticks() { # $1 = pid
    cut -d' ' -f14,15 "/proc/$1/stat" | awk '{print $1 + $2}'
}

generate() { # $1 = output file; runs the generator, prints nothing
    local linger=()
    [[ $ZERO_LINGER == yes ]] && linger=(--zero-linger)
    "$GEN" --target "127.0.0.1:$PORT" --cameras "$CAMERAS" --sources "$SOURCES" --rate "$RATE" \
        --concurrency "$CONCURRENCY" --seconds "$SECS" "${linger[@]}" > "$1" 2> /dev/null
}

field() { # $1 = key, $2 = file: the value of key=value in the file's last line
    tail -1 "$2" | sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p"
}

# Waits until `$1` (a command printing a count) reaches $2 or stops growing for 3 s; prints the seconds
# waited (to 0.2 s).
drain() {
    local waited=0 last=-1 still=0 now
    while :; do
        now=$($1)
        [[ $now -ge $2 ]] && break
        if [[ $now == "$last" ]]; then still=$((still + 1)); [[ $still -ge 15 ]] && break; else still=0; fi
        last=$now; sleep 0.2; waited=$((waited + 1))
    done
    echo "scale=1; $waited / 5" | bc
}

sink_frames() { tail -1 "$WORK/sink.out" | sed -n 's/.* frames=\([0-9]*\).*/\1/p'; }

run_sink() { # $1 = run; prints "sent counted gen_s drain_s cpu_ticks"
    "$SINK" "127.0.0.1:$PORT" $((SECS + 60)) 200 > "$WORK/sink.out" 2> /dev/null &
    local pid=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    sleep 0.3
    local before; before=$(cpu_ticks $pid)
    generate "$WORK/gen.sink.$1"
    local sent; sent=$(field sent "$WORK/gen.sink.$1")
    local waited; waited=$(drain sink_frames "$sent")
    local after; after=$(cpu_ticks $pid)
    kill $pid; wait $pid 2>/dev/null || true
    echo "$sent $(sink_frames) $(field seconds "$WORK/gen.sink.$1") $waited $((after - before)) $(field slow_connects "$WORK/gen.sink.$1") $(field failed_connects "$WORK/gen.sink.$1")"
}

stored_max_id() {
    python3 -c "import sqlite3;print(sqlite3.connect('file:$WORK/data/alarm-center.db?mode=ro',uri=True).execute('select coalesce(max(id),0) from events').fetchone()[0])" 2>/dev/null || echo 0
}

run_server() { # $1 = run; prints "sent stored gen_s drain_s cpu_ticks"
    rm -rf "$WORK/data"
    local window=()
    [[ -n $WINDOW ]] && window=(ALARM_CENTER_SERVER__ARRIVAL_ORDER_WINDOW="$WINDOW")
    env ALARM_CENTER_LOG="$LOG" ALARM_CENTER_API__LISTEN=127.0.0.1:0 \
        ALARM_CENTER_SERVER__MAX_CONNECTIONS_PER_IP=30000 ALARM_CENTER_SERVER__MAX_CONNECTIONS=30000 \
        ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_IP_PER_MINUTE=0 ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_MINUTE=0 \
        ALARM_CENTER_SERVER__STATS_INTERVAL=60s "${window[@]}" \
        "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" 2> "$WORK/server.$1.log" &
    local pid=$!
    for _ in $(seq 100); do grep -q "accepting devices" "$WORK/server.$1.log" 2>/dev/null && break; sleep 0.1; done
    sleep 0.3
    local before; before=$(cpu_ticks $pid)
    generate "$WORK/gen.server.$1"
    local sent; sent=$(field sent "$WORK/gen.server.$1")
    # Every alarm plus one DeviceOnline per camera.
    local waited; waited=$(drain stored_max_id $((sent + CAMERAS)))
    local after; after=$(cpu_ticks $pid)
    kill -TERM $pid; wait $pid 2>/dev/null || true
    local stored
    stored=$(python3 -c "import sqlite3;print(sqlite3.connect('$WORK/data/alarm-center.db').execute(\"select count(*) from events where code = 'HumanDetect'\").fetchone()[0])")
    echo "$sent $stored $(field seconds "$WORK/gen.server.$1") $waited $((after - before)) $(field slow_connects "$WORK/gen.server.$1") $(field failed_connects "$WORK/gen.server.$1")"
}

report() { # $1 = name, $2 = run, $3 = what was counted; then sent handled gen_s drain_s ticks slow failed
    local name=$1 run=$2 what=$3 sent=$4 handled=$5 gen=$6 waited=$7 ticks=$8 slow=$9 failed=${10}
    local cpu; cpu=$(echo "scale=3; $ticks / $TICKS" | bc)
    printf '%-12s run %s: sent %d, %s %d (lost %d), %.0f events/s (generator %.1f s + drain %.1f s), CPU %.2f s, %.1f µs/event, %d connects retried after a dropped SYN, %d failed\n' \
        "$name" "$run" "$sent" "$what" "$handled" $((sent - handled)) \
        "$(echo "$handled / ($gen + $waited)" | bc -l)" "$gen" "$waited" "$cpu" \
        "$(echo "1000000 * $cpu / $handled" | bc -l)" "$slow" "$failed" | tee -a "$WORK/results"
}

: > "$WORK/results"
echo "== one connection per alarm: $CAMERAS cameras, $SOURCES source addresses, rate ${RATE/#0/as fast as possible}, concurrency $CONCURRENCY, ${SECS}s, $RUNS runs each (alarm-center log $LOG${WINDOW:+, window $WINDOW}; binary $BIN)"
for run in $(seq "$RUNS"); do
    [[ -n ${NO_SINK:-} ]] || report count_sink "$run" counted $(run_sink "$run")
    report alarm-center "$run" stored $(run_server "$run")
done
python3 - "$WORK/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r'(\S+)\s+run \d+: sent (\d+), \w+ (\d+) \(lost (-?\d+)\), (\d+) events/s.* ([\d.]+) µs/event', line)
    rows.setdefault(m.group(1), []).append((int(m.group(5)), float(m.group(6)), int(m.group(4))))
med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v), sum(r[2] for r in v)) for k, v in rows.items()}
for k, (rate, cpu, lost) in med.items():
    print(f"{k:12s} median {rate:.0f} events/s, {cpu:.1f} µs CPU/event, lost {lost} in all runs")
if "count_sink" in med:
    (sr, sc, _), (ar, ac, _) = med["count_sink"], med["alarm-center"]
    print(f"ratio alarm-center / count_sink: throughput {100 * ar / sr:.0f} %, CPU per event {ac / sc:.2f}x")
PY
echo "logs: $WORK"
