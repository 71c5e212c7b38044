#!/usr/bin/env python3
"""One TCP connection per alarm, as XM cameras send them: a load generator (not a test).

Each of --cameras cameras sends start/stop pairs of XM message 1508, every frame on a fresh
connection (connect, send, close), from --sources source addresses 127.0.0.1, 127.0.0.2, … (all
cameras share one address with --sources 1, the worst case for the per-address arrival order of
decision D33). Runs --seconds, then prints frames sent and the rate. Targets 127.0.0.0/8 only.

    scripts/conn-per-alarm.py --port 25002 --cameras 50 --seconds 20 --sources 1
"""
import argparse
import asyncio
import json
import struct
import time


def xm_alarm(serial: str, start: bool) -> bytes:
    body = json.dumps({
        "Address": "0x0100007F", "Channel": 0, "Descrip": "", "Event": "HumanDetect",
        "SerialID": serial, "StartTime": time.strftime("%Y-%m-%d %H:%M:%S"),
        "Status": "Start" if start else "Stop", "Type": "Alarm",
    }, separators=(",", ":")).encode()
    # 20-byte header, little-endian: magic 0xFF, version 1, 2 reserved, session, sequence,
    # 2 reserved, message id 1508, body length (with the trailing newline).
    header = struct.pack("<BBxxIIxxHI", 0xFF, 1, 0, 0, 1508, len(body) + 1)
    return header + body + b"\n"


async def camera(n: int, args, deadline: float, sent: list) -> None:
    source = f"127.0.0.{1 + n % args.sources}"
    start = True
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(
                args.host, args.port, local_addr=(source, 0))
            writer.write(xm_alarm(f"CAM-{n}", start))
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            sent[0] += 1
            start = not start
        except OSError:
            await asyncio.sleep(0.01)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=15002)
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--sources", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    if not args.host.startswith("127."):
        raise SystemExit("targets 127.0.0.0/8 only")
    sent = [0]
    began = time.monotonic()
    deadline = began + args.seconds
    await asyncio.gather(*(camera(n, args, deadline, sent) for n in range(args.cameras)))
    took = time.monotonic() - began
    print(f"sent={sent[0]} seconds={took:.1f} frames_per_s={sent[0] / took:.0f}")


asyncio.run(main())
