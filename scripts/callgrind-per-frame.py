#!/usr/bin/env python3
"""Reads `callgrind_annotate --inclusive=yes --threshold=100` output of alarm-center on standard input
and prints the user-space instructions per frame (FRAMES, the first argument) in all, by thread and for
the main parts of each thread. Used by scripts/instructions-per-event.sh and
scripts/instructions-per-keepalive.sh."""
import re
import sys

frames = int(sys.argv[1])
if frames <= 0:
    sys.exit(f"no frames to divide by ({frames})")
# Threads: callgrind names a thread entry point by the source file its code was inlined from, so the
# threads are summed by file (which file holds the writer loop depends on inlining). The file is
# absolute or relative to the workspace depending on the dump, hence the match on its tail.
THREADS = [  # (name, files of its entry point, parts of it: (name, function))
    ("connection threads", ("ingest/src/shards.rs",), [
        ("decode", "connection::process::<impl alarm_center_ingest::connection::Connection>::decode"),
        ("device (on_frame)", "alarm_center_devices::device::Device::on_frame"),
    ]),
    ("store writer", ("ingest/src/lib.rs", "ingest/src/writer.rs", "ingest/src/writer/upkeep.rs"), [
        ("Db::write", "alarm_center_store::Db>::write"),
        ("per-device index", "alarm_center_store::device_index::Indexed::add"),
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
    for name, files, parts in THREADS:
        if where.endswith(":std::sys::backtrace::__rust_begin_short_backtrace") and any(
            f"{f}:" in where for f in files
        ):
            by_thread[name] = by_thread.get(name, 0) + n
        for part, function in parts:
            # A function's own line ends in its name, with the binary's in brackets or not (code
            # inlined from another file); the largest is the function with all it calls.
            if f"{function} [" in line or line.rstrip().endswith(function):
                by_part[part] = max(by_part.get(part, 0), n)


def show(name, n, indent=""):
    print(f"  {indent + name:<22} {n / frames:>9,.0f} instructions per frame")


show("all", total)
for name, _, parts in THREADS:
    show(name, by_thread.get(name, 0))
    for part, _ in parts:
        if part in by_part:
            show(part, by_part[part], "  ")
