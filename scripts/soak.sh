#!/usr/bin/env bash
# Soak and fault run against the release binary (not a test): a PROBE device sends DHIP pulses that carry
# their run id, sequence number and send time, while hostile clients run at once and two faults are
# injected. At the end it prints the probe's events sent / stored (SQLite) / delivered to MQTT (a
# subscriber that runs for the whole run), send→stored and send→delivered latency, the server's max RSS,
# what each hostile client did, and exits non-zero when a probe event was lost, saying at which stage.
#
#   probe        DHIP client.notifyEventStream, code SoakProbe, action Pulse, PROBE_RATE per second on one
#                connection from 127.0.0.1 (Data: Run, Seq, SentUs)
#   item 1       an intruder reconnecting every 0.5 s from 127.0.0.2, claiming the probe's serial
#   item 7       large POST /api/decode requests (octet-stream and text/x-hexdump, 3.5 MiB), one at a time
#   item 8       bursts of one-alarm XM connections (XM_BURST every XM_EVERY s, from 127.0.0.3) and waves of
#                SLOW_CONNS slow-header connections to the API port (every SLOW_EVERY s, from 127.0.0.6)
#   item 9       HA_COUNT new devices (random serials) every HA_EVERY s, each with alarms on 4 channels and
#                codes and a pulse: new Home Assistant entities (from 127.0.0.5)
#   item 10      FLOOD_RATE new random serials per second, each from a random 127.x.y.z
#   broker       a Mosquitto of the run's own on BROKER_PORT (persistence on, so that the durable probe
#                subscriber keeps its queue): stopped at BROKER_DOWN_AT s, started again BROKER_OUTAGE s later
#   store        the data directory on a tmpfs of TMPFS_MB MiB (needs root; skipped, and said so, otherwise):
#                at FILL_AT s a ballast file takes the free space below the server's reserve
#                (store.min-free-mb = MIN_FREE_MB), then to the last byte, kept full for FILL_HOLD s, deleted
#
# Usage: scripts/soak.sh   (env: BIN, DURATION=150, PROBE_RATE=10, FLOOD_RATE=50, HA_COUNT=10, HA_EVERY=2,
#        XM_BURST=200, XM_EVERY=5, SLOW_CONNS=300, SLOW_EVERY=30, DECODE_MB=3.5, BROKER_DOWN_AT=40,
#        BROKER_OUTAGE=20, FILL_AT=85, FILL_HOLD=15, TMPFS_MB=64, MIN_FREE_MB=16, DRAIN=30,
#        PORT=25102, API_PORT=25180, BROKER_PORT=18883)
# BIN defaults to ${CARGO_TARGET_DIR:-target}/release/alarm-center, built first; with BIN set nothing is
# built. Needs python3, mosquitto and mosquitto_sub (Debian: mosquitto, mosquitto-clients). Traffic goes
# to 127.0.0.0/8 only; everything stops by itself (at most DURATION + DRAIN + about 30 s: about 3.5 min by
# default). The shared Mosquitto on 1883 is not used. DRAIN is how long the MQTT subscriber may take to
# receive every probe event after the load stops; events still missing then count as not delivered.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DURATION=${DURATION:-150}
PROBE_RATE=${PROBE_RATE:-10}
FLOOD_RATE=${FLOOD_RATE:-50}
HA_COUNT=${HA_COUNT:-10}
HA_EVERY=${HA_EVERY:-2}
XM_BURST=${XM_BURST:-200}
XM_EVERY=${XM_EVERY:-5}
SLOW_CONNS=${SLOW_CONNS:-300}
SLOW_EVERY=${SLOW_EVERY:-30}
DECODE_MB=${DECODE_MB:-3.5}
BROKER_DOWN_AT=${BROKER_DOWN_AT:-40}
BROKER_OUTAGE=${BROKER_OUTAGE:-20}
FILL_AT=${FILL_AT:-85}
FILL_HOLD=${FILL_HOLD:-15}
TMPFS_MB=${TMPFS_MB:-64}
MIN_FREE_MB=${MIN_FREE_MB:-16}
DRAIN=${DRAIN:-30}
PORT=${PORT:-25102}
API_PORT=${API_PORT:-25180}
BROKER_PORT=${BROKER_PORT:-18883}
PROBE_SERIAL=SOAKPROBE0001

for tool in python3 mosquitto_sub curl; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed"; exit 2; }
done
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[[ -x $MOSQUITTO ]] || { echo "mosquitto is not installed (apt-get install mosquitto)"; exit 2; }
for p in "$PORT" "$API_PORT" "$BROKER_PORT"; do
    if ss -Hltn "sport = :$p" | grep -q .; then echo "port $p is in use: set PORT, API_PORT or BROKER_PORT"; exit 2; fi
done
if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet -p alarm-center
    BIN=${CARGO_TARGET_DIR:-target}/release/alarm-center
fi
[[ -x $BIN ]] || { echo "no binary at $BIN"; exit 2; }
unset ALARM_CENTER_CONFIG
ulimit -n "$(ulimit -Hn)"

RUN=soak-$(date +%s)-$$
ROOT=$RUN                       # MQTT topic root; the discovery prefix is $ROOT-ha
WORK=$(mktemp -d /tmp/alarm-center-soak.XXXXXX)
DATA=$WORK/data
PY=(python3 "$REPO/scripts/soak/soak.py")
mkdir -p "$DATA" "$WORK/broker"
MOUNTED=no
SERVER=
BROKER=
PIDS=()

stop_pid() { # $1 = pid, $2 = seconds to wait after SIGTERM before SIGKILL
    local pid=$1 n=$(( ${2:-10} * 10 ))
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null && (( n-- > 0 )); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    [[ -n $SERVER ]] && stop_pid "$SERVER" 15
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 3; done
    [[ -n $BROKER ]] && stop_pid "$BROKER" 5
    if [[ $MOUNTED == yes ]]; then umount "$DATA" 2>/dev/null || umount -l "$DATA"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
at() { # sleep until $1 s after T0
    local d
    d=$(python3 -c "import time,sys; print(max(0.0, $T0 + $1 - time.time()))")
    sleep "$d"
}
phase() { echo "$1 $(now)" >> "$WORK/phases.tsv"; }
say() { printf '[%6.1f s] %s\n' "$(python3 -c "import time; print(time.time() - ${T0:-$(now)})")" "$*"; }

start_broker() {
    cat > "$WORK/broker/mosquitto.conf" <<CONF
$( [[ $(id -u) == 0 ]] && echo "user root" )
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/broker/
max_queued_messages 1000000
CONF
    "$MOSQUITTO" -c "$WORK/broker/mosquitto.conf" 2>> "$WORK/broker.log" &
    BROKER=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null && return
        sleep 0.1
    done
    echo "the broker did not start"; cat "$WORK/broker.log"; exit 2
}

echo "== Soak and fault run: $(date -u +%Y-%m-%dT%H:%M:%SZ), ${DURATION}s of load"
echo "binary: $BIN (sha256 $(sha256sum "$BIN" | cut -c1-12), built $(date -u -r "$BIN" +%Y-%m-%dT%H:%M:%SZ))"
echo "run id: $RUN; work directory: $WORK; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"

# --- the store on a small tmpfs
if mount -t tmpfs -o "size=${TMPFS_MB}m,mode=0700" tmpfs "$DATA" 2> "$WORK/mount.err"; then
    MOUNTED=yes
    echo "data directory: tmpfs of ${TMPFS_MB} MiB at $DATA (store.min-free-mb = $MIN_FREE_MB)"
else
    echo "data directory: $DATA on the ordinary disk — mount not permitted ($(cat "$WORK/mount.err")):" \
         "the store-full phase is SKIPPED"
fi

# --- the run's own broker and the probe's durable subscriber (QoS 1, persistent session)
start_broker
stdbuf -oL mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -c -i "$RUN-sub" -q 1 -k 5 \
    -t "$ROOT/$PROBE_SERIAL/event" -F '%U %p' > "$WORK/delivered.txt" 2> "$WORK/sub.err" &
PIDS+=($!)
sleep 0.5

# --- the server
ALARM_CENTER_LOG=info \
ALARM_CENTER_API__LISTEN=127.0.0.1:$API_PORT \
ALARM_CENTER_SERVER__STATS_INTERVAL=5s \
ALARM_CENTER_STORE__MIN_FREE_MB=$MIN_FREE_MB \
ALARM_CENTER_SINKS__MQTT__URL=mqtt://127.0.0.1:$BROKER_PORT \
ALARM_CENTER_SINKS__MQTT__TOPIC_ROOT=$ROOT \
ALARM_CENTER_SINKS__MQTT__DISCOVERY_PREFIX=$ROOT-ha \
ALARM_CENTER_SINKS__MQTT__CLIENT_ID=$RUN-server \
    "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" 2> "$WORK/server.log" &
SERVER=$!
for _ in $(seq 100); do
    grep -q "accepting devices" "$WORK/server.log" 2>/dev/null && grep -q "MQTT connected" "$WORK/server.log" && break
    sleep 0.1
done
grep -q "MQTT connected" "$WORK/server.log" || { echo "server or MQTT sink did not start"; cat "$WORK/server.log"; exit 2; }
echo "server pid $SERVER: devices on 127.0.0.1:$PORT, API on 127.0.0.1:$API_PORT, MQTT sink to 127.0.0.1:$BROKER_PORT (topic root $ROOT, discovery prefix $ROOT-ha)"

T0=$(now)
echo "$T0" > "$WORK/t0"
: > "$WORK/phases.tsv"
END=$(python3 -c "print($T0 + $DURATION)")
C=(--until "$END" --device "127.0.0.1:$PORT" --api "127.0.0.1:$API_PORT" --serial "$PROBE_SERIAL" --run "$RUN")
"${PY[@]}" rss --pid "$SERVER" --log "$WORK/rss.tsv" & PIDS+=($!)
"${PY[@]}" readyz "${C[@]}" --until "$(python3 -c "print($END + $DRAIN)")" --log "$WORK/readyz.tsv" --metrics-log "$WORK/metrics.tsv" & PIDS+=($!)
"${PY[@]}" sse "${C[@]}" --until "$(python3 -c "print($END + $DRAIN)")" --seen "$WORK/sse.tsv" --out "$WORK/sse.json" --ready-file "$WORK/sse.ready" & PIDS+=($!)
for _ in $(seq 100); do [[ -e $WORK/sse.ready ]] && break; sleep 0.1; done
[[ -e $WORK/sse.ready ]] || echo "warning: the /api/stream watcher did not connect within 10 s"
"${PY[@]}" probe "${C[@]}" --rate "$PROBE_RATE" --sent "$WORK/probe.sent" --out "$WORK/probe.json" & PROBE=$!
"${PY[@]}" intruder "${C[@]}" --src 127.0.0.2 --every 0.5 --out "$WORK/intruder.json" & LOAD=($!)
"${PY[@]}" decode "${C[@]}" --size-mb "$DECODE_MB" --pause 0.2 --out "$WORK/decode.json" & LOAD+=($!)
"${PY[@]}" xmburst "${C[@]}" --src 127.0.0.3 --size "$XM_BURST" --every "$XM_EVERY" --out "$WORK/xmburst.json" & LOAD+=($!)
"${PY[@]}" slowheaders "${C[@]}" --src 127.0.0.6 --count "$SLOW_CONNS" --every "$SLOW_EVERY" --hold 25 --out "$WORK/slowheaders.json" & LOAD+=($!)
"${PY[@]}" hadevices "${C[@]}" --src 127.0.0.5 --count "$HA_COUNT" --every "$HA_EVERY" --out "$WORK/hadevices.json" & LOAD+=($!)
"${PY[@]}" flood "${C[@]}" --rate "$FLOOD_RATE" --out "$WORK/flood.json" & LOAD+=($!)
PIDS+=("$PROBE" "${LOAD[@]}")
say "load started: probe $PROBE_RATE/s, intruder, decode, XM bursts, slow headers, HA devices, flood $FLOOD_RATE/s"

# --- fault 1: the broker goes away and comes back
at "$BROKER_DOWN_AT"
phase broker_down
stop_pid "$BROKER" 10
BROKER=
say "MQTT broker stopped (SIGTERM; its persistence keeps the subscriber's session)"
at "$((BROKER_DOWN_AT + BROKER_OUTAGE))"
start_broker
phase broker_up
say "MQTT broker started again"

# --- fault 2: the store's file system fills up, stays full, then is freed
if [[ $MOUNTED == yes ]]; then
    at "$FILL_AT"
    phase fill_start
    say "store-full phase: ballast on the data directory's tmpfs ($(df -m --output=avail "$DATA" | tail -1 | tr -d ' ') MiB free)"
    "${PY[@]}" fill "${C[@]}" --dir "$DATA" --reserve-mb "$MIN_FREE_MB" --hold "$FILL_HOLD" \
        --server-log "$WORK/server.log" --out "$WORK/fill.json" || say "the fill phase failed"
    phase fill_end
    say "store-full phase over: $(python3 -c "import json; d=json.load(open('$WORK/fill.json')); print('ready again' if 'ready_again' in d else 'NOT READY AGAIN within 60 s')")"
else
    phase fill_skipped
    echo "mount not permitted ($(cat "$WORK/mount.err"))" > "$WORK/fill_skipped"
    say "store-full phase SKIPPED (mount not permitted)"
fi

# --- end of the load, drain, stop
at "$DURATION"
for pid in "$PROBE" "${LOAD[@]}"; do
    for _ in $(seq 700); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done  # their deadline has passed
    stop_pid "$pid" 1
done
say "load stopped; waiting up to ${DRAIN}s for the MQTT subscriber to receive every probe event"
"${PY[@]}" wait --run "$RUN" --sent "$WORK/probe.sent" --delivered "$WORK/delivered.txt" --timeout "$DRAIN"
curl -s -m 10 "http://127.0.0.1:$API_PORT/metrics" > "$WORK/metrics.txt" || true
timeout 15 mosquitto_sub -h 127.0.0.1 -p "$BROKER_PORT" -t "$ROOT-ha/#" --retained-only -W 8 -F '%t' \
    > "$WORK/discovery.txt" 2>/dev/null || true
say "stopping the server (SIGTERM); load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
stop_pid "$SERVER" 30
SERVER=
for pid in "${PIDS[@]}"; do stop_pid "$pid" 3; done
PIDS=()
if [[ $MOUNTED == yes ]]; then  # keep the store for a post-mortem: the tmpfs goes at exit
    mkdir -p "$WORK/store" && cp "$DATA"/alarm-center.db* "$WORK/store/" && DB=$WORK/store/alarm-center.db
fi

echo
echo "== Server log"
echo "  stats lines (every 5 s):"
python3 - "$WORK/server.log" <<'PY'
import re, sys
rows, sink = [], []
for line in open(sys.argv[1], errors="replace"):
    if line.rstrip().endswith(" stats") or " stats " in line:
        kv = dict(re.findall(r'(\w+)=("[^"]*"|[^\s]+)', line))
        (sink if "sink stats" in line else rows).append(kv)
def col(k, rows=rows):
    out = []
    for r in rows:
        v = r.get(k)
        if v and v not in ("None",):
            try: out.append(float(v.strip('Some()"')))
            except ValueError: pass
    return out
for k in ("connections", "devices_online", "rss_mb", "frames_per_s", "events_committed_per_s",
          "commit_latency_p99_ms", "commit_latency_max_ms", "refused", "junk_frames"):
    v = col(k)
    if v:
        print(f"    {k:24s} max {max(v):10.1f}   last {v[-1]:10.1f}   ({len(v)} lines)")
print("  MQTT sink stats lines (written only after deliveries):")
for k in ("delivered_per_s", "pending", "latency_p99_ms", "latency_max_ms"):
    v = col(k, sink)
    if v:
        print(f"    {k:24s} max {max(v):10.1f}   last {v[-1]:10.1f}   ({len(v)} lines)")
PY
for pat in "identity conflict" "connection refused" "API connection closed" "destination unavailable" \
           "MQTT connected" "below store.min-free-mb" "store write failed" "store writes succeed again" \
           "cannot be brought under its size limit" "device offline" "retention deleted" " ERROR " "panicked"; do
    printf '  %-40s %6d lines\n' "\"$pat\"" "$(grep -c -- "$pat" "$WORK/server.log" || true)"
done
grep -E "retention deleted|MQTT connected|store writes succeed again" "$WORK/server.log" | sed -E 's/^/    /' | cut -c1-200
echo "  warnings and errors (first of each kind):"
grep -E ' (WARN|ERROR) ' "$WORK/server.log" | sed -E 's/^[^ ]+ +//' | awk '{k=$0; sub(/ [a-z_]+=.*/, "", k); if (!seen[k]++) print "    " substr($0, 1, 240)}' | head -20
echo "== Metrics at the end (selection)"
grep -E '^alarm_center_(connections_(accepted|refused)_total|connections_closed_total|identity_conflicts_total|api_connections_refused_total|api_decode_(busy|truncated)_total|store_(errors_total|failing|retention_runs_total)|events_(received|committed|discarded)_total|offline_transitions_total|devices_online|frames_junk_total) ' "$WORK/metrics.txt" | sed 's/^/  /' || echo "  (no metrics: the API did not answer)"
grep -E '^alarm_center_(connections_refused_total|connections_closed_total|sink_[a-z_]+)\{' "$WORK/metrics.txt" | sed 's/^/  /' || true
echo
set +e
"${PY[@]}" report --work "$WORK" --db "${DB:-$DATA/alarm-center.db}" --run "$RUN" --serial "$PROBE_SERIAL" \
    --rate "$PROBE_RATE" --drain "$DRAIN" --tmpfs-mb "$([[ $MOUNTED == yes ]] && echo "$TMPFS_MB" || echo -)"
rc=$?
echo "logs and a copy of the store: $WORK"
exit $rc
