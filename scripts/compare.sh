#!/usr/bin/env bash
# Side by side on one generated stream (not a test): alarm-center against the reference ceiling, a
# counting TCP sink that frames the bytes with the same decoder and does nothing else
# (crates/sim/examples/count_sink.rs). The same `alarm-center simulate` run (DEVICES persistent
# connections, RATE alarm events/s in total, one event per frame, all wire variants mixed) is sent to
# each in turn, RUNS times; each run prints frames or events handled, the process's CPU time, CPU per
# frame (alarm frames; a mask frame can carry several events) and per event, and the drain time, then
# the median CPU per frame of each and the ratio alarm-center / sink.
# The variants default to the persistent binary framings (VARIANTS="dvrip-mask xm"), one after the other:
# the sink answers nothing, so HTTP-mode devices (which wait for each answer) would send it less.
# Usage: scripts/compare.sh   (env: RATE=50000 SECS=20 DEVICES=100 RUNS=3 PORT=25004; BIN=… to use a
#        given alarm-center build, SINK=… a given count_sink build). Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-50000}
SECS=${SECS:-20}
DEVICES=${DEVICES:-100}
RUNS=${RUNS:-3}
VARIANTS=${VARIANTS:-dvrip-mask xm}
PORT=${PORT:-25004}
TARGET=${CARGO_TARGET_DIR:-target}
if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet -p alarm-center
    BIN=$TARGET/release/alarm-center
fi
if [[ -z ${SINK:-} ]]; then
    cargo build --release --quiet -p alarm-center-sim --example count_sink
    SINK=$TARGET/release/examples/count_sink
fi
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/alarm-center-compare.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

cpu_seconds() { # $1 = pid
    cut -d' ' -f14,15 "/proc/$1/stat" | awk -v t="$TICKS" '{printf "%.3f", ($1 + $2) / t}'
}

simulate() {
    "$BIN" simulate --target "127.0.0.1:$PORT" --devices "$DEVICES" --keepalive 10s --alarm-rate "$RATE" \
        --variant "$VARIANT" --duration "${SECS}s" --quiet > "$WORK/sim.out" 2> "$WORK/sim.err"
}

run_sink() { # $1 = run number; prints "frames cpu_s wall_s"
    "$SINK" "127.0.0.1:$PORT" $((SECS + 30)) > "$WORK/sink.$1" 2> /dev/null &
    local pid=$!
    sleep 0.5
    local started=$(date +%s.%N)
    simulate
    # Until a second passes without a frame: everything sent was read.
    local last=-1 now
    while now=$(tail -1 "$WORK/sink.$1" | sed -n 's/.* frames=\([0-9]*\).*/\1/p'); [[ $now != "$last" ]]; do
        last=$now; sleep 1.2
    done
    local cpu=$(cpu_seconds $pid) wall=$(echo "$(date +%s.%N) - $started" | bc)
    kill $pid; wait $pid 2>/dev/null || true
    echo "$last $cpu $wall"
}

run_server() { # $1 = run number; prints "events alarm_frames cpu_s wall_s"
    rm -rf "$WORK/data"
    ALARM_CENTER_LOG=warn ALARM_CENTER_API__ENABLED=false ALARM_CENTER_SERVER__STATS_INTERVAL=60s \
    ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_IP_PER_MINUTE=0 ALARM_CENTER_SERVER__MAX_CONNECTIONS_PER_IP=30000 \
        "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" 2> "$WORK/server.$1" &
    local pid=$!
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    local started=$(date +%s.%N)
    simulate
    # Until the store stops growing: everything sent was committed.
    local last=-1 now
    while now=$("$BIN" events --data-dir "$WORK/data" --limit 1 --json 2>/dev/null | sed -n 's/^{"id":\([0-9]*\).*/\1/p'); [[ $now != "$last" ]]; do
        last=$now; sleep 1.5
    done
    local cpu=$(cpu_seconds $pid) wall=$(echo "$(date +%s.%N) - $started" | bc)
    kill -TERM $pid; wait $pid 2>/dev/null || true
    local counts=$(python3 -c "import sqlite3;c=sqlite3.connect('$WORK/data/alarm-center.db');print(c.execute('select count(*) from events').fetchone()[0], c.execute(\"select count(*) from frames where kind != 'keepalive'\").fetchone()[0])")
    echo "$counts $cpu $wall"
}

for VARIANT in $VARIANTS; do
: > "$WORK/results"
echo "== $VARIANT: $DEVICES devices, $RATE alarm events/s offered for ${SECS}s, $RUNS runs each (binary: $BIN)"
for run in $(seq "$RUNS"); do
    read -r frames cpu wall < <(run_sink "$run")
    echo "sink   run $run: frames $frames, CPU ${cpu} s, $(echo "1000000 * $cpu / $frames" | bc -l | xargs printf '%.2f') µs/frame, $(echo "$frames / $SECS" | bc) frames/s offered-window" | tee -a "$WORK/results"
    read -r events sframes scpu swall < <(run_server "$run")
    echo "server run $run: events $events in $sframes alarm frames, CPU ${scpu} s, $(echo "1000000 * $scpu / $sframes" | bc -l | xargs printf '%.2f') µs/frame, $(echo "1000000 * $scpu / $events" | bc -l | xargs printf '%.2f') µs/event, drained $(echo "$swall - $SECS" | bc | xargs printf '%.1f') s after the senders stopped" | tee -a "$WORK/results"
done
python3 - "$WORK/results" <<'PY'
import re, statistics, sys
sink, server = [], []
for line in open(sys.argv[1]):
    m = re.search(r'([\d.]+) µs/frame', line)
    (sink if line.startswith('sink') else server).append(float(m.group(1)))
s, a = statistics.median(sink), statistics.median(server)
print(f"median CPU per frame: sink {s:.2f} µs, alarm-center {a:.2f} µs: ratio {a / s:.1f}x")
PY
done
echo "logs: $WORK"
