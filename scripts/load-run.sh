#!/usr/bin/env bash
# Load runs for the server (not a test): prints figures for docs/benchmarks.md.
#   A. 10,000 simulated devices with keepAlives every 10 s: no false offline, server RSS.
#   B. sustained alarm events committed to SQLite: events/s and receive→commit latency.
# Traffic goes to 127.0.0.1 only; every run stops by itself.
# Usage: scripts/load-run.sh [a|b|all]   (env: DEVICES, A_SECS, B_RATE, B_SECS, B_DEVICES)
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
DEVICES=${DEVICES:-10000}
A_SECS=${A_SECS:-120}
B_RATE=${B_RATE:-50000}
B_SECS=${B_SECS:-60}
B_DEVICES=${B_DEVICES:-100}
PORT=${PORT:-25002}

ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/alarm-center
WORK=$(mktemp -d /tmp/alarm-center-load.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

start_server() { # $1 = name
    rm -rf "$WORK/$1"
    ALARM_CENTER_LOG=info \
    ALARM_CENTER_SERVER__MAX_CONNECTIONS_PER_IP=30000 \
    ALARM_CENTER_SERVER__MAX_CONNECTIONS=30000 \
    ALARM_CENTER_SERVER__STATS_INTERVAL=5s \
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/$1" 2> "$WORK/$1.log" &
    SERVER=$!
    for _ in $(seq 50); do grep -q "accepting devices" "$WORK/$1.log" 2>/dev/null && return; sleep 0.2; done
    echo "server did not start"; cat "$WORK/$1.log"; exit 1
}

stop_server() {
    kill -TERM "$SERVER"; wait "$SERVER" || true
}

summary() { # $1 = name: the stats lines, then a digest
    python3 - "$WORK/$1.log" <<'PY'
import re, sys, statistics
rows = []
for line in open(sys.argv[1]):
    if ' stats ' not in line and not line.rstrip().endswith('stats'):
        if 'stats' not in line: continue
    kv = dict(re.findall(r'(\w+)=([^\s]+)', line))
    if 'frames_per_s' in kv: rows.append(kv)
def col(k):
    out = []
    for r in rows:
        v = r.get(k, 'None')
        if v not in ('None', 'Some'): out.append(float(v.strip('Some()')))
    return out
busy = [r for r in rows if float(r.get('events_committed_per_s', 0)) > 0]
print(f"  stats lines: {len(rows)} (every 5 s)")
for k in ('connections', 'devices_online', 'rss_mb', 'frames_per_s', 'events_committed_per_s', 'commit_latency_p50_ms', 'commit_latency_p99_ms', 'commit_latency_max_ms'):
    v = col(k)
    if v: print(f"  {k:24s} median {statistics.median(v):10.1f}   max {max(v):10.1f}")
PY
    echo "  offline transitions: $(grep -c 'device offline' "$WORK/$1.log" || true)"
    echo "  refused connections: $(grep -c 'connection refused' "$WORK/$1.log" || true)"
}

if [[ $which == a || $which == all ]]; then
    echo "== A: $DEVICES devices, keepAlive every 10 s, 20 alarm events/s in total, ${A_SECS}s"
    start_server a
    "$BIN" simulate --target "127.0.0.1:$PORT" --devices "$DEVICES" --keepalive 10s --alarm-rate 20 \
        --variant mixed --connect-rate 2000 --duration "${A_SECS}s" --quiet > "$WORK/a.sim" 2> "$WORK/a.sim.err"
    sleep 6
    stop_server
    tail -1 "$WORK/a.sim"
    summary a
    echo "  devices in the store: $("$BIN" devices --data-dir "$WORK/a" --json | wc -l), offline now: $("$BIN" devices --data-dir "$WORK/a" --json | grep -c '"state":"offline"' || true)"
fi

if [[ $which == b || $which == all ]]; then
    echo "== B: $B_DEVICES devices sending $B_RATE alarm events/s in total for ${B_SECS}s (one event per frame)"
    start_server b
    "$BIN" simulate --target "127.0.0.1:$PORT" --devices "$B_DEVICES" --keepalive 10s --alarm-rate "$B_RATE" \
        --variant mixed --duration "${B_SECS}s" --quiet > "$WORK/b.sim" 2> "$WORK/b.sim.err"
    sleep 6
    stop_server
    tail -1 "$WORK/b.sim"
    summary b
    echo "  events in the store: $(python3 -c "import sqlite3;print(sqlite3.connect('$WORK/b/alarm-center.db').execute('select count(*) from events').fetchone()[0])")"
fi
echo "logs: $WORK"
