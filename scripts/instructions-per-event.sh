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
callgrind_annotate --inclusive=yes --threshold=100 "$WORK/callgrind.out" 2>/dev/null | python3 -c '
import re, sys
frames = int(sys.argv[1])
# Threads: callgrind names a thread entry point by the source file its code was inlined from, so the
# threads are summed by file (which file holds the writer loop depends on inlining).
threads = [  # (name, files of its entry point, parts of it: (name, function))
    ("connection threads", ("ingest/src/shards.rs",), [
        ("decode", "connection::process::<impl alarm_center_ingest::connection::Connection>::decode ["),
        ("device (on_frame)", "alarm_center_devices::device::Device::on_frame ["),
    ]),
    ("store writer", ("ingest/src/lib.rs", "ingest/src/writer.rs", "ingest/src/writer/upkeep.rs"), [
        ("Db::write", "alarm_center_store::Db>::write ["),
        ("per-device index", "alarm_center_store::device_index::Indexed::add ["),
    ]),
    ("checkpointer", ("ingest/src/writer/checkpoint.rs",), []),
]
total, by_thread, by_part = 0, {}, {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S+)", line)
    if not m:
        continue
    n, where = int(m.group(1).replace(",", "")), m.group(2)
    if "PROGRAM TOTALS" in line:
        total = n
    for name, files, parts in threads:
        if where.endswith(":std::sys::backtrace::__rust_begin_short_backtrace") and any(f"/{f}:" in where for f in files):
            by_thread[name] = by_thread.get(name, 0) + n
        for part, function in parts:
            if function in line:
                by_part.setdefault(part, n)
def show(name, n, indent=""):
    print(f"  {indent + name:<22} {n / frames:>9,.0f} instructions per frame")
show("all", total)
for name, _, parts in threads:
    show(name, by_thread.get(name, 0))
    for part, _ in parts:
        if part in by_part:
            show(part, by_part[part], "  ")
' "$frames"
if [[ -n ${KEEP:-} ]]; then echo "profile: $WORK/callgrind.out"; else rm -rf "$WORK"; fi
