#!/usr/bin/env bash
# Load runs for the server (not a test): prints figures for docs/benchmarks.md.
#   A. 10,000 simulated devices with keepAlives every 10 s: no false offline, server RSS.
#   B. sustained alarm events committed to SQLite: events/s and receive→commit latency.
# Traffic goes to 127.0.0.1 only; every run stops by itself.
#   C. outputs: events delivered to Mosquitto (QoS 1) and to a local webhook receiver, receive→accepted
#      latency at C_RATE events/s, then the most each sink delivers (C_WEBHOOK=no: MQTT alone;
#      C2=no: without the second part).
#   D. (not in `all`) as many devices as the descriptor limit allows, up to 100,000, keepAlives at the
#      rate of 100,000 devices every 10 s: CPU per keepAlive, RSS, false offline (D_DEVICES, D_PERIOD,
#      D_SECS, default 600).
#   E. (not in `all`) the MQTT sink's ceiling: a backlog stored with the broker unreachable, then
#      drained with nothing else running (E_RATE, E_SECS).
# Usage: scripts/load-run.sh [a|b|c|d|e|all]   (env: DEVICES, A_SECS, B_RATE, B_SECS, B_DEVICES, B_VARIANT, C_RATE, C_SECS;
#        BIN=path/to/alarm-center runs that build instead of building this checkout, to compare two builds;
#        SIM_BIN=… the simulator of run D, when BIN's has no --sources)
# Each run prints the server's CPU time (user + system, from /proc) and its share of one core.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
DEVICES=${DEVICES:-10000}
A_SECS=${A_SECS:-120}
B_RATE=${B_RATE:-50000}
B_SECS=${B_SECS:-60}
B_DEVICES=${B_DEVICES:-100}
B_VARIANT=${B_VARIANT:-mixed}
PORT=${PORT:-25002}
C_RATE=${C_RATE:-5000}
C_SECS=${C_SECS:-30}
MQTT_URL=${MQTT_URL:-mqtt://127.0.0.1:1883}
HOOK_PORT=${HOOK_PORT:-25080}

ulimit -n "$(ulimit -Hn)"
if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet
    BIN=${CARGO_TARGET_DIR:-target}/release/alarm-center
fi
TICKS=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/alarm-center-load.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

start_server() { # $1 = name
    rm -rf "$WORK/$1"
    ALARM_CENTER_LOG=info ALARM_CENTER_API__LISTEN=127.0.0.1:0 \
    ALARM_CENTER_SERVER__MAX_CONNECTIONS_PER_IP=${MAXCONN:-30000} \
    ALARM_CENTER_SERVER__MAX_CONNECTIONS=${MAXCONN:-30000} \
    ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_IP_PER_MINUTE=0 \
    ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_MINUTE=0 \
    ALARM_CENTER_SERVER__STATS_INTERVAL=5s \
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/$1" 2> "$WORK/$1.log" &
    SERVER=$!
    STARTED=$(date +%s.%N)
    for _ in $(seq 50); do grep -q "accepting devices" "$WORK/$1.log" 2>/dev/null && return; sleep 0.2; done
    echo "server did not start"; cat "$WORK/$1.log"; exit 1
}

stop_server() { # prints the server's CPU time (utime + stime of /proc/PID/stat) before stopping it
    local stat cpu
    stat=$(cut -d' ' -f14,15 "/proc/$SERVER/stat")
    cpu=$(echo "$stat" | awk -v t="$TICKS" '{printf "%.2f", ($1 + $2) / t}')
    echo "  server CPU: ${cpu} s over $(echo "$(date +%s.%N) - $STARTED" | bc | xargs printf '%.0f') s ($(echo "100 * $cpu / ($(date +%s.%N) - $STARTED)" | bc -l | xargs printf '%.1f')% of one core)"
    # The same by thread name (the connection threads, the tokio workers together, the store writer,
    # the checkpointer).
    for task in /proc/"$SERVER"/task/*; do
        echo "$(tr ' ' '_' < "$task/comm") $(cut -d' ' -f14,15 "$task/stat")"
    done | awk -v t="$TICKS" '{cpu[$1] += ($2 + $3) / t} END {for (n in cpu) printf "  thread %-16s %6.2f s\n", n, cpu[n]}'
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
for k in ('connections', 'devices_online', 'rss_mb', 'frames_per_s', 'events_committed_per_s', 'commit_latency_p50_ms', 'commit_latency_p99_ms', 'commit_latency_max_ms', 'write_p99_ms', 'write_max_ms'):
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
        --variant "$B_VARIANT" --duration "${B_SECS}s" --quiet > "$WORK/b.sim" 2> "$WORK/b.sim.err"
    sleep 6
    stop_server
    tail -1 "$WORK/b.sim"
    summary b
    echo "  events in the store: $(python3 -c "import sqlite3;print(sqlite3.connect('$WORK/b/alarm-center.db').execute('select count(*) from events').fetchone()[0])")"
fi
cpu_ticks() { cut -d' ' -f14,15 "/proc/$SERVER/stat" | awk '{print $1 + $2}'; }

if [[ $which == d ]]; then
    # As many devices as the descriptor limit allows (up to 100,000), keepAlives every D_PERIOD
    # (default: the period that gives 10,000 keepAlives/s, the rate of 100,000 devices every 10 s),
    # spread over source addresses 127.0.1.1… (one address has ~28,000 ephemeral ports; not 127.0.0.x,
    # whose ports other load generators may hold in TIME_WAIT: a bind then scans for a free port).
    limit=$(ulimit -Hn)
    D_DEVICES=${D_DEVICES:-$(( limit - 500 < 100000 ? limit - 500 : 100000 ))}
    D_PERIOD=${D_PERIOD:-$(python3 -c "print(max(1, round($D_DEVICES / 10000)))")s}
    D_SECS=${D_SECS:-600}
    D_SOURCES=$(( D_DEVICES / 10000 + 1 ))
    ramp=$(( D_DEVICES / 5000 + 5 ))
    echo "== D: $D_DEVICES devices (descriptor limit $limit), keepAlive every $D_PERIOD, ${D_SECS}s, from 127.0.1.1-127.0.1.$D_SOURCES"
    MAXCONN=$(( D_DEVICES + 100 )) start_server d
    "${SIM_BIN:-$BIN}" simulate --target "127.0.0.1:$PORT" --devices "$D_DEVICES" --keepalive "$D_PERIOD" --alarm-rate 20 \
        --variant mixed --connect-rate 5000 --duration "${D_SECS}s" --sources "127.0.1.1-127.0.1.$D_SOURCES" \
        --quiet > "$WORK/d.sim" 2> "$WORK/d.sim.err" &
    SIM=$!
    sleep "$ramp"
    t0=$(date +%s.%N); c0=$(cpu_ticks)
    wait "$SIM"
    t1=$(date +%s.%N); c1=$(cpu_ticks)
    sleep 6
    stop_server
    tail -1 "$WORK/d.sim"
    summary d
    python3 - "$WORK/d.sim.err" "$t0" "$t1" "$c0" "$c1" "$TICKS" <<'PY'
import re, sys, statistics
err, t0, t1, c0, c1, ticks = sys.argv[1], *map(float, sys.argv[2:])
rates = [float(m.group(1)) for m in re.finditer(r'([0-9.]+) keepalives/s', open(err).read())]
steady = rates[2:-1] or rates
kps = statistics.median(steady)
cpu = (c1 - c0) / ticks
secs = t1 - t0
print(f"  steady window {secs:.0f} s: server CPU {cpu:.2f} s ({100 * cpu / secs:.1f}% of one core), "
      f"keepAlives {kps:.0f}/s (median of the simulator's 5-s lines): {1e6 * cpu / (kps * secs):.1f} µs of CPU per keepAlive")
PY
    echo "  devices in the store: $("$BIN" devices --data-dir "$WORK/d" --json | wc -l)"
fi

if [[ $which == e ]]; then
    # The MQTT sink's ceiling: E_EVENTS alarm events are stored while the sink's broker is unreachable,
    # then the server restarts with the broker and the sink drains the backlog with nothing else to do.
    E_RATE=${E_RATE:-40000}
    E_SECS=${E_SECS:-10}
    echo "== E: MQTT sink draining a backlog of ~$(( E_RATE * E_SECS )) events (QoS 1, discovery on)"
    cat > "$WORK/e-down.toml" <<TOML
[sinks.mqtt]
url = "mqtt://127.0.0.1:1"
discovery = true
topic-root = "load-e"
TOML
    rm -rf "$WORK/e"
    ALARM_CENTER_LOG=warn ALARM_CENTER_API__LISTEN=127.0.0.1:0 \
        "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/e" --config "$WORK/e-down.toml" 2> "$WORK/e-fill.log" &
    SERVER=$!
    sleep 1
    "$BIN" simulate --target "127.0.0.1:$PORT" --devices 100 --keepalive 10s --alarm-rate "$E_RATE" \
        --variant mixed --duration "${E_SECS}s" --quiet > "$WORK/e.sim" 2> "$WORK/e.sim.err"
    sleep 3
    kill -TERM "$SERVER"; wait "$SERVER" || true
    sed "s|mqtt://127.0.0.1:1|$MQTT_URL|" "$WORK/e-down.toml" > "$WORK/e-up.toml"
    ALARM_CENTER_LOG=info ALARM_CENTER_API__LISTEN=127.0.0.1:0 ALARM_CENTER_SERVER__STATS_INTERVAL=1s \
    ALARM_CENTER_SINKS__MQTT__CLIENT_ID="load-e-$$" \
        "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/e" --config "$WORK/e-up.toml" 2> "$WORK/e.log" &
    SERVER=$!
    STARTED=$(date +%s.%N)
    for _ in $(seq 600); do
        sleep 0.5
        "$BIN" sinks --data-dir "$WORK/e" --json 2>/dev/null | grep -q '"lag":0' && break
    done
    drained=$(echo "$(date +%s.%N) - $STARTED" | bc)
    rss=$(grep VmHWM "/proc/$SERVER/status" | awk '{print $2 / 1024}')
    stop_server
    "$BIN" sinks --data-dir "$WORK/e"
    python3 - "$WORK/e.log" "$drained" "$rss" <<'PY'
import re, sys, statistics
log, drained, rss = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rates = [float(m.group(1)) for m in re.finditer(r'sink stats .*?delivered_per_s=([0-9.]+)', open(log).read())]
busy = [r for r in rates if r > 0]
steady = busy[1:-1] or busy
delivered = [int(m.group(1)) for m in re.finditer(r'delivered=(\d+)', open(log).read())]
print(f"  drained in {drained:.1f} s (start-up and MQTT connect included); delivered at shutdown: {delivered[-1] if delivered else '?'}")
if steady:
    print(f"  delivered/s over full 1-s intervals: median {statistics.median(steady):.0f}, max {max(steady):.0f} ({len(steady)} intervals)")
print(f"  server peak RSS (VmHWM): {rss:.0f} MB")
PY
fi

sink_summary() { # $1 = name: the sink stats lines, digested per sink
    python3 - "$WORK/$1.log" <<'PY'
import re, sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    if 'sink stats' not in line: continue
    kv = dict(re.findall(r'(\w+)=("[^"]*"|[^\s]+)', line))
    rows[kv['sink'].strip('"')].append(kv)
for sink, rs in rows.items():
    busy = [r for r in rs if float(r['delivered_per_s']) > 0]
    def col(k):
        return [float(r[k].strip('Some()')) for r in busy if r.get(k, 'None') not in ('None',)]
    print(f"  sink {sink}: {len(busy)} busy intervals")
    for k in ('delivered_per_s', 'latency_p50_ms', 'latency_p99_ms', 'latency_max_ms'):
        v = col(k)
        if v: print(f"    {k:20s} median {statistics.median(v):9.1f}   max {max(v):9.1f}")
PY
}

run_c() { # $1 = name, $2 = events/s, $3 = seconds
    start_server_c "$1"
    "$BIN" simulate --target "127.0.0.1:$PORT" --devices 50 --keepalive 10s --alarm-rate "$2" \
        --variant mixed --duration "${3}s" --quiet > "$WORK/$1.sim" 2> "$WORK/$1.sim.err"
    sleep 8
    stop_server
    tail -1 "$WORK/$1.sim"
    summary "$1"
    sink_summary "$1"
    "$BIN" sinks --data-dir "$WORK/$1"
}

start_server_c() {
    rm -rf "$WORK/$1"
    ALARM_CENTER_LOG=info ALARM_CENTER_API__LISTEN=127.0.0.1:0 \
    ALARM_CENTER_SERVER__STATS_INTERVAL=5s \
    ALARM_CENTER_SINKS__MQTT__URL="$MQTT_URL" \
    ALARM_CENTER_SINKS__MQTT__TOPIC_ROOT="load-$1" \
    ALARM_CENTER_SINKS__MQTT__CLIENT_ID="load-$1-$$" \
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/$1" --config "$WORK/c.toml" 2> "$WORK/$1.log" &
    SERVER=$!
    STARTED=$(date +%s.%N)
    for _ in $(seq 50); do grep -q "accepting devices" "$WORK/$1.log" 2>/dev/null && return; sleep 0.2; done
    echo "server did not start"; cat "$WORK/$1.log"; exit 1
}

if [[ $which == c || $which == all ]]; then
    python3 scripts/webhook-receiver.py "$HOOK_PORT" 2> "$WORK/hook.log" &
    cat > "$WORK/c.toml" <<TOML
[sinks.mqtt]
discovery = true
TOML
    if [[ ${C_WEBHOOK:-yes} == yes ]]; then
        cat >> "$WORK/c.toml" <<TOML

[[sinks.webhook]]
name = "load"
url = "http://127.0.0.1:$HOOK_PORT/events"
timeout = "5s"
TOML
    fi
    echo "== C1: outputs at $C_RATE alarm events/s for ${C_SECS}s (50 devices): MQTT QoS 1 and a webhook"
    run_c c1 "$C_RATE" "$C_SECS"
    if [[ ${C2:-yes} == yes ]]; then
        echo "== C2: outputs under 20000 alarm events/s for ${C_SECS}s: the most each sink delivers"
        run_c c2 20000 "$C_SECS"
    fi
fi
echo "logs: $WORK"
