#!/usr/bin/env bash
# perf profile of the server during a keepAlive run (not a test): DEVICES (10,000) devices with a keepAlive
# every KEEPALIVE (10s) from 127.0.1.1…; 60 s of `perf record -g` at 999 Hz once the devices are
# connected; prints where the report files are (perf-top.txt: self time by symbol). Needs perf
# (linux-perf) and a release build (BIN=… or target/release/alarm-center).
set -euo pipefail
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/alarm-center}
W=$(mktemp -d /tmp/prof.XXXXXX)
ulimit -n "$(ulimit -Hn)"
ALARM_CENTER_LOG=warn ALARM_CENTER_API__ENABLED=false ALARM_CENTER_SERVER__MAX_CONNECTIONS_PER_IP=30000 \
ALARM_CENTER_SERVER__MAX_CONNECTIONS=30000 ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_IP_PER_MINUTE=0 \
ALARM_CENTER_SERVER__MAX_NEW_DEVICES_PER_MINUTE=0 \
  $BIN serve --listen 127.0.0.1:26100 --data-dir $W/data 2> $W/server.log &
S=$!
sleep 1
DEVICES=${DEVICES:-10000}
$BIN simulate --target 127.0.0.1:26100 --devices "$DEVICES" --keepalive "${KEEPALIVE:-10s}" \
  --sources "127.0.1.1-127.0.1.$(( DEVICES / 10000 + 1 ))" --alarm-rate 20 --variant mixed --connect-rate 2000 --duration 80s --quiet > $W/sim.out 2>&1 &
SIM=$!
sleep 15   # connected and settled
perf record -F 999 -g -p $S -o $W/perf.data -- sleep 60 2> $W/perf.err
wait $SIM || true
kill -TERM $S; wait $S || true
perf report -i $W/perf.data --no-children --sort symbol --stdio 2>/dev/null | grep -v "^#" | grep "%" | head -45 > $W/perf-top.txt
perf report -i $W/perf.data --children --sort symbol --stdio 2>/dev/null | grep -v "^#" | grep -E "^ +[0-9]" | head -60 > $W/perf-children.txt
echo "profile: $W/perf-top.txt, $W/perf-children.txt"
head -30 "$W/perf-top.txt"
