#!/usr/bin/env python3
"""Clients and the report of scripts/soak.sh (standard library only).

Every mode runs until --until (a Unix time) or until it is sent SIGTERM, then writes what it did as one
JSON object to --out (stats) and exits. Traffic goes to 127.0.0.0/8 only.

  probe        the PROBE device: DHIP client.notifyEventStream pulses, SoakProbe, with its run id,
               sequence number and send time (µs) in Data, at --rate per second on one connection
  intruder     item 1: reconnects every --every s from 127.0.0.2 claiming the probe's serial
  decode       item 7: large POST /api/decode (application/octet-stream and text/x-hexdump)
  xmburst      item 8a: bursts of short connections, one XM alarm (message 1508) each
  slowheaders  item 8b: waves of connections to the API port that send their request head slowly
  hadevices    item 9: new devices (random serials) with alarms on several channels and codes
               (new Home Assistant entities)
  flood        item 10: a flood of new random serials (one keepAlive per connection)
  sse          the probe's events as /api/stream shows them once committed (informational)
  readyz       polls /readyz every 0.5 s
  rss          samples VmRSS of --pid every second
  fill         the store-full phase: ballast on the data directory's file system
  wait         waits until the subscriber has received every probe event sent (bounded)
  report       the figures
"""

import argparse
import asyncio
import datetime
import http.client
import json
import math
import os
import random
import re
import select
import signal
import socket
import sqlite3
import struct
import sys
import time

STOP = False


def on_term(*_):
    global STOP
    STOP = True


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)


def now_us():
    return time.time_ns() // 1000


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, sort_keys=True)
    os.replace(tmp, path)


def running(a):
    return not STOP and time.time() < a.until


# ---------------------------------------------------------------------------------------------- frames


DHIP_MAGIC = b"\x20\x00\x00\x00DHIP"


def dhip(session, request_id, obj):
    body = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    return DHIP_MAGIC + struct.pack("<IIIIII", session, request_id, len(body), 0, len(body), 0) + body


def dhip_keepalive(serial, session, request_id, period=30):
    return dhip(session, request_id, {"id": request_id, "method": "global.keepAlive",
                                      "params": {"timeout": period, "active": True, "SerialNo": serial},
                                      "session": session})


def dhip_events(serial, session, request_id, events):
    return dhip(session, request_id, {"id": request_id, "method": "client.notifyEventStream",
                                      "params": {"SerialNo": serial, "eventList": events},
                                      "session": session})


def locale_time():
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())


def xm_alarm(serial, channel, event, start):
    body = json.dumps({"Address": "0x0100007F", "Channel": channel, "Descrip": "", "Event": event,
                       "SerialID": serial, "StartTime": locale_time(),
                       "Status": "Start" if start else "Stop", "Type": "Alarm"},
                      separators=(",", ":")).encode() + b"\n"
    return bytes([0xFF, 1, 0, 0]) + struct.pack("<IIHHI", 0, 0, 0, 1508, len(body)) + body


def dvrip_mask(alarm_type, mask):
    tail = bytearray(24)
    tail[12 - 8] = alarm_type  # header byte 12: alarm type; 13: channel group 0; 17: body format 0 (mask)
    return bytes([0x69, 0, 0, 0]) + struct.pack("<I", 4) + bytes(tail) + struct.pack("<I", mask)


def connect(addr, src=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    s.connect(addr)
    return s


def random_serial(prefix):
    return prefix + "".join(random.choice("0123456789ABCDEF") for _ in range(12))


# ---------------------------------------------------------------------------------------------- probe


def mode_probe(a):
    addr = hostport(a.device)
    session = random.randrange(1, 1 << 31)
    out = open(a.sent, "w", buffering=1)
    st = {"sent": 0, "connects": 0, "connect_errors": 0, "send_errors": 0, "closed_by_server": 0,
          "max_send_block_ms": 0.0, "errors": []}
    sock = None
    seq = 0
    resend = None
    interval = 1.0 / a.rate
    next_t = time.monotonic()
    rid = 0
    while running(a):
        if sock is None:
            try:
                sock = connect(addr, "127.0.0.1")
                st["connects"] += 1
                rid += 1
                sock.sendall(dhip_keepalive(a.serial, session, rid))
            except OSError as e:
                st["connect_errors"] += 1
                st["errors"].append(f"{time.time():.3f} connect: {e}")
                sock = None
                time.sleep(0.5)
                continue
        # The server never writes to a DHIP device here: readable means closed (or reset).
        r, _, _ = select.select([sock], [], [], 0)
        if r:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                st["closed_by_server"] += 1
                st["errors"].append(f"{time.time():.3f} closed by the server after seq {seq}")
                sock.close()
                sock = None
                continue
        if resend is None:
            seq += 1
            resend = seq
        sent_us = now_us()
        rid += 1
        frame = dhip_events(a.serial, session, rid, [{
            "Action": "Pulse", "Code": "SoakProbe", "Index": 0,
            "Data": {"Run": a.run, "Seq": resend, "SentUs": sent_us}}])
        t0 = time.monotonic()
        try:
            sock.settimeout(60)
            sock.sendall(frame)
        except OSError as e:
            st["send_errors"] += 1
            st["errors"].append(f"{time.time():.3f} send seq {resend}: {e}")
            sock.close()
            sock = None
            continue
        st["max_send_block_ms"] = max(st["max_send_block_ms"], (time.monotonic() - t0) * 1000)
        out.write(f"{resend}\t{sent_us}\n")
        st["sent"] += 1
        resend = None
        next_t += interval
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1:
            next_t = time.monotonic()
    if sock is not None:
        time.sleep(0.5)
        sock.close()
    st["last_seq"] = seq
    st["errors"] = st["errors"][:20]
    write_json(a.out, st)


# ------------------------------------------------------------------------------------------ intruder


def mode_intruder(a):
    addr = hostport(a.device)
    st = {"connections": 0, "connect_errors": 0, "frames": 0, "closed_by_server": 0}
    rid = 0
    while running(a):
        t0 = time.monotonic()
        try:
            s = connect(addr, a.src)
            st["connections"] += 1
            session = random.randrange(1, 1 << 31)
            rid += 1
            s.sendall(dhip_keepalive(a.serial, session, rid))
            rid += 1
            s.sendall(dhip_events(a.serial, session, rid, [{
                "Action": "Pulse", "Code": "IntruderEvent", "Index": 0, "Data": {"Run": a.run}}]))
            st["frames"] += 2
            r, _, _ = select.select([s], [], [], max(0.0, a.every - (time.monotonic() - t0)))
            if r and not s.recv(100):
                st["closed_by_server"] += 1
            s.close()
        except OSError:
            st["connect_errors"] += 1
        time.sleep(max(0.0, a.every - (time.monotonic() - t0)))
    write_json(a.out, st)


# -------------------------------------------------------------------------------------------- decode


def decode_bodies(size):
    """A raw body (DVRIP masks, XM alarms and random junk) and a hex dump of part of it (xxd -p style)."""
    rnd = random.Random(7)
    parts = []
    n = 0
    while n < size:
        k = rnd.random()
        if k < 0.5:
            p = dvrip_mask(rnd.choice([0, 1, 2, 3]), rnd.getrandbits(16))
        elif k < 0.8:
            p = xm_alarm("SOAKDECODE01", rnd.randrange(16), "HumanDetect", rnd.random() < 0.5)
        else:
            p = rnd.randbytes(rnd.randrange(16, 512))
        parts.append(p)
        n += len(p)
    raw = b"".join(parts)[:size]
    half = raw[: size * 2 // 5]  # the hex dump is 2.5 x longer than its bytes: keep it under 4 MiB
    hexdump = "\n".join(half[i:i + 30].hex() for i in range(0, len(half), 30)).encode()
    return raw, hexdump


def mode_decode(a):
    host, port = hostport(a.api)
    raw, hexdump = decode_bodies(int(a.size_mb * 1024 * 1024))
    st = {"requests": 0, "status": {}, "errors": 0, "max_ms": 0.0, "total_ms": 0.0,
          "raw_bytes": len(raw), "hex_bytes": len(hexdump), "truncated": 0}
    i = 0
    while running(a):
        i += 1
        body, ctype = (raw, "application/octet-stream") if i % 2 else (hexdump, "text/x-hexdump")
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection(host, port, timeout=60)
            c.request("POST", "/api/decode", body=body, headers={"Content-Type": ctype})
            r = c.getresponse()
            data = r.read()
            code = str(r.status)
            if r.status == 200 and b'"truncated":true' in data:
                st["truncated"] += 1
            c.close()
        except (OSError, http.client.HTTPException) as e:
            code = "error:" + type(e).__name__
            st["errors"] += 1
        ms = (time.monotonic() - t0) * 1000
        st["requests"] += 1
        st["status"][code] = st["status"].get(code, 0) + 1
        st["max_ms"] = max(st["max_ms"], ms)
        st["total_ms"] += ms
        time.sleep(a.pause)
    write_json(a.out, st)


# ------------------------------------------------------------------------------------ async helpers


async def send_and_close(addr, src, payload, st, linger=0.05, read_first=False):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1], local_addr=(src, 0)), 10)
    except (OSError, asyncio.TimeoutError):
        st["connect_errors"] += 1
        return False
    try:
        w.write(payload)
        await asyncio.wait_for(w.drain(), 10)
        st["sent_frames"] += 1
        if linger:
            await asyncio.sleep(linger)
        return True
    except (OSError, asyncio.TimeoutError):
        st["send_errors"] += 1
        return False
    finally:
        w.close()
        try:
            await asyncio.wait_for(w.wait_closed(), 2)
        except (OSError, asyncio.TimeoutError):
            pass


async def until_deadline(a, period, body):
    while running(a):
        t0 = time.monotonic()
        await body()
        await asyncio.sleep(max(0.0, period - (time.monotonic() - t0)))


# ------------------------------------------------------------------------------------------ xmburst


def mode_xmburst(a):
    addr = hostport(a.device)
    st = {"bursts": 0, "connections": 0, "sent_frames": 0, "connect_errors": 0, "send_errors": 0,
          "max_burst_s": 0.0}
    active = {}

    async def burst():
        st["bursts"] += 1
        jobs = []
        for i in range(a.size):
            serial = f"SOAKXM{i % a.cameras:04d}"
            ch = (i // a.cameras) % 4
            key = (serial, ch)
            start = not active.get(key, False)
            active[key] = start
            jobs.append(send_and_close(addr, a.src, xm_alarm(serial, ch, "HumanDetect", start), st))
        t0 = time.monotonic()
        await asyncio.gather(*jobs)
        st["connections"] += a.size
        st["max_burst_s"] = max(st["max_burst_s"], time.monotonic() - t0)

    asyncio.run(until_deadline(a, a.every, burst))
    write_json(a.out, st)


# ------------------------------------------------------------------------------------- slowheaders


def mode_slowheaders(a):
    host, port = hostport(a.api)
    st = {"waves": 0, "opened": 0, "connect_errors": 0, "closed_by_server": 0, "refused_at_once": 0,
          "survived_to_our_limit": 0, "closed_after_s": []}

    async def slow_one():
        t0 = time.monotonic()
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=(a.src, 0)), 10)
        except (OSError, asyncio.TimeoutError):
            st["connect_errors"] += 1
            return
        st["opened"] += 1
        head = f"GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode()
        try:
            w.write(head)
            await w.drain()
            sent_at = time.monotonic()
            while time.monotonic() - t0 < a.hold and running(a):
                try:
                    data = await asyncio.wait_for(r.read(4096), 1.0)
                    if not data:
                        dt = time.monotonic() - t0
                        if time.monotonic() - sent_at < 0.5:
                            st["refused_at_once"] += 1
                        else:
                            st["closed_by_server"] += 1
                            st["closed_after_s"].append(round(dt, 1))
                        return
                    # an answer (408 or 503) counts as the server closing us
                    st["closed_by_server"] += 1
                    st["closed_after_s"].append(round(time.monotonic() - t0, 1))
                    return
                except asyncio.TimeoutError:
                    w.write(b"x")
                    await w.drain()
            st["survived_to_our_limit"] += 1
        except OSError:
            st["closed_by_server"] += 1
            st["closed_after_s"].append(round(time.monotonic() - t0, 1))
        finally:
            w.close()

    async def wave():
        st["waves"] += 1
        await asyncio.gather(*(slow_one() for _ in range(a.count)))

    asyncio.run(until_deadline(a, a.every, wave))
    c = sorted(st.pop("closed_after_s"))
    st["closed_after_s_median"] = c[len(c) // 2] if c else None
    st["closed_after_s_max"] = c[-1] if c else None
    write_json(a.out, st)


# --------------------------------------------------------------------------------------- hadevices


HA_CODES = ["VideoMotion", "CrossLineDetection", "CrossRegionDetection", "SmartMotionHuman"]


def mode_hadevices(a):
    addr = hostport(a.device)
    st = {"devices": 0, "events": 0, "sent_frames": 0, "connect_errors": 0, "send_errors": 0}

    async def one_device():
        serial = random_serial("SOAKHA")
        session = random.randrange(1, 1 << 31)
        frames = [dhip_keepalive(serial, session, 1)]
        rid = 2
        for ch in range(a.channels):
            code = HA_CODES[ch % len(HA_CODES)]
            frames.append(dhip_events(serial, session, rid, [{
                "Action": "Start", "Code": code, "Index": ch, "Data": {"Name": f"{code}{ch + 1}"}}]))
            rid += 1
        frames.append(dhip_events(serial, session, rid, [{
            "Action": "Pulse", "Code": "AlarmLocal", "Index": 0, "Data": {}}]))
        ok = await send_and_close(addr, a.src, b"".join(frames), st, linger=0.5)
        if ok:
            st["devices"] += 1
            st["events"] += a.channels + 1

    async def batch():
        await asyncio.gather(*(one_device() for _ in range(a.count)))

    asyncio.run(until_deadline(a, a.every, batch))
    write_json(a.out, st)


# -------------------------------------------------------------------------------------------- flood


def mode_flood(a):
    addr = hostport(a.device)
    st = {"serials": 0, "sent_frames": 0, "connect_errors": 0, "send_errors": 0}
    pending = set()

    async def one():
        serial = random_serial("SOAKFL")
        src = f"127.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(2, 255)}"
        if await send_and_close(addr, src, dhip_keepalive(serial, random.randrange(1, 1 << 31), 1), st,
                                linger=0):
            st["serials"] += 1

    async def run():
        step = 0.1
        per_step = a.rate * step
        carry = 0.0
        while running(a):
            t0 = time.monotonic()
            carry += per_step
            while carry >= 1:
                carry -= 1
                t = asyncio.create_task(one())
                pending.add(t)
                t.add_done_callback(pending.discard)
            await asyncio.sleep(max(0.0, step - (time.monotonic() - t0)))
        if pending:
            await asyncio.wait(pending, timeout=10)

    asyncio.run(run())
    write_json(a.out, st)


# ---------------------------------------------------------------------------------------------- sse


def mode_sse(a):
    """HTTP/1.0 so that the answer is not chunked; lines read with select so that the deadline holds."""
    addr = hostport(a.api)
    out = open(a.seen, "w", buffering=1)
    st = {"connects": 0, "errors": 0, "events": 0, "gaps": 0}
    while running(a):
        try:
            s = connect(addr)
            s.sendall(f"GET /api/stream?device={a.serial}&code=SoakProbe HTTP/1.0\r\n"
                      f"Host: {a.api}\r\nAccept: text/event-stream\r\n\r\n".encode())
        except OSError:
            st["errors"] += 1
            time.sleep(1)
            continue
        buf = b""
        head = True
        event = None
        while running(a):
            r, _, _ = select.select([s], [], [], 0.5)
            if not r:
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                if head:  # closed before answering (e.g. api.max-connections reached)
                    st["errors"] += 1
                    time.sleep(0.5)
                break
            t = now_us()
            buf += data
            if head:
                if b"\r\n\r\n" not in buf:
                    continue
                status, buf = buf.split(b"\r\n\r\n", 1)
                if b" 200 " not in status.split(b"\r\n", 1)[0] + b" ":
                    st["errors"] += 1
                    time.sleep(1)
                    break
                head = False
                st["connects"] += 1
                if a.ready_file:
                    open(a.ready_file, "w").close()
            *lines, buf = buf.split(b"\n")
            for line in lines:
                line = line.decode("utf-8", "replace").rstrip("\r")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "gap":
                    st["gaps"] += 1
                elif line.startswith("data:") and event == "event":
                    try:
                        ev = json.loads(line[5:])
                        d = ev.get("data") or {}
                        if d.get("Run") == a.run:
                            out.write(f"{d['Seq']}\t{t}\t{ev.get('id')}\n")
                            st["events"] += 1
                    except (ValueError, KeyError, TypeError, AttributeError):
                        pass
        s.close()
    write_json(a.out, st)


# ------------------------------------------------------------------------------------------- readyz


def get(host, port, path, timeout=2.0):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


METRICS = ("alarm_center_sink_lag_events{sink=\"mqtt\"}", "alarm_center_sink_delivered_total{sink=\"mqtt\"}",
           "alarm_center_events_committed_total", "alarm_center_devices_online")


def mode_readyz(a):
    """/readyz every 0.5 s to --log; every 5 s a few figures of /metrics to --metrics-log."""
    host, port = hostport(a.api)
    out = open(a.log, "w", buffering=1)
    mout = open(a.metrics_log, "w", buffering=1)
    next_metrics = 0.0
    while running(a):
        t0 = time.monotonic()
        if t0 >= next_metrics:
            next_metrics = t0 + 5
            try:
                status, body = get(host, port, "/metrics")
                vals = {}
                for line in body.decode("utf-8", "replace").splitlines():
                    name, _, v = line.rpartition(" ")
                    if name in METRICS:
                        vals[name] = v
                mout.write(f"{time.time():.3f}\t" + "\t".join(vals.get(m, "-") for m in METRICS) + "\n")
            except (OSError, http.client.HTTPException):
                mout.write(f"{time.time():.3f}\t" + "\t".join("-" for m in METRICS) + "\n")
        try:
            status, body = get(host, port, "/readyz")
            code = str(status)
            note = body[:120].decode("utf-8", "replace").replace("\t", " ").replace("\n", " ")
        except (OSError, http.client.HTTPException) as e:
            code, note = "error", type(e).__name__
        out.write(f"{time.time():.3f}\t{code}\t{note}\n")
        time.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))


# ---------------------------------------------------------------------------------------------- rss


def mode_rss(a):
    """VmRSS (kB) and CPU time (utime + stime, clock ticks) of --pid every second."""
    out = open(a.log, "w", buffering=1)
    while not STOP:
        try:
            with open(f"/proc/{a.pid}/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            with open(f"/proc/{a.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            out.write(f"{time.time():.3f}\t{rss}\t{ticks}\n")
        except (OSError, StopIteration, ValueError, IndexError):
            break
        time.sleep(1)


# --------------------------------------------------------------------------------------------- fill


def avail(path):
    s = os.statvfs(path)
    return s.f_bavail * s.f_frsize


def readyz_status(api):
    host, port = hostport(api)
    try:
        return str(get(host, port, "/readyz", timeout=1.0)[0])
    except (OSError, http.client.HTTPException):
        return "error"


def grow(f, limit=None):
    """Appends to the ballast until the disk is full (or `limit` bytes were written); bytes written."""
    n = 0
    for chunk in (1 << 20, 1 << 16, 1 << 12):
        block = b"\0" * chunk
        while limit is None or n + chunk <= limit:
            try:
                f.write(block)
                f.flush()
                n += chunk
            except OSError:
                f.seek(0, os.SEEK_END)
                f.truncate(f.tell())  # drop a partial buffer so the next size is tried cleanly
                break
    return n


def mode_fill(a):
    ballast = os.path.join(a.dir, "ballast.bin")
    ev = {"avail_mb_before": round(avail(a.dir) / 2**20, 1)}
    log_pos = os.path.getsize(a.server_log)
    f = open(ballast, "wb", buffering=0)

    def log_has(needle):
        with open(a.server_log, "rb") as lf:
            lf.seek(log_pos)
            return needle.encode() in lf.read()

    def tick(name):
        ev.setdefault(name, time.time())

    # 1. down to the free-space reserve: the server should warn and run retention early
    room = avail(a.dir) - (a.reserve_mb - 2) * 2**20
    if room > 0:
        grow(f, room - room % (1 << 12))
    tick("reserve_crossed")
    ev["avail_mb_at_reserve"] = round(avail(a.dir) / 2**20, 1)
    deadline = time.time() + 5
    while time.time() < deadline and not log_has("below store.min-free-mb"):
        time.sleep(0.25)
    if log_has("below store.min-free-mb"):
        tick("reserve_warning_seen")
    # 2. to the last byte, kept full (topped up every 0.5 s) for --hold s
    grow(f)
    tick("disk_full")
    statuses = {}
    end = time.time() + a.hold
    while time.time() < end and not STOP:
        st = readyz_status(a.api)
        statuses[st] = statuses.get(st, 0) + 1
        if st == "503":
            tick("first_503")
            ev["last_503"] = time.time()
        grow(f)
        time.sleep(0.5)
    ev["ballast_mb"] = round(os.path.getsize(ballast) / 2**20, 1)
    f.close()
    os.unlink(ballast)
    tick("ballast_deleted")
    end = time.time() + 60
    while time.time() < end and not STOP:
        st = readyz_status(a.api)
        statuses[st] = statuses.get(st, 0) + 1
        if st == "503":
            ev["last_503"] = time.time()
        if st == "200":
            tick("ready_again")
            break
        time.sleep(0.25)
    ev["readyz_during_phase"] = statuses
    ev["server_log"] = {k: log_has(k) for k in (
        "below store.min-free-mb", "store write failed", "store writes succeed again",
        "cannot be brought under its size limit")}
    write_json(a.out, ev)


# --------------------------------------------------------------------------------------------- wait


def read_sent(path):
    sent = {}
    with open(path) as f:
        for line in f:
            p = line.split("\t")
            if len(p) == 2:
                sent[int(p[0])] = int(p[1])
    return sent


def read_delivered(path, run):
    """(first receipt µs per seq, messages, duplicates, event id per seq) from mosquitto_sub -F '%U %p'."""
    first, ids, msgs, dups = {}, {}, 0, 0
    try:
        f = open(path, errors="replace")
    except OSError:
        return first, 0, 0, ids
    with f:
        for line in f:
            ts, _, payload = line.partition(" ")
            try:
                ev = json.loads(payload)
                d = ev.get("data") or {}
                if ev.get("code") != "SoakProbe" or d.get("Run") != run:
                    continue
                seq = int(d["Seq"])
                t = int(round(float(ts) * 1e6))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            msgs += 1
            if seq in first:
                dups += 1
            else:
                first[seq] = t
                ids[seq] = ev.get("id")
    return first, msgs, dups, ids


def mode_wait(a):
    want = set(read_sent(a.sent))
    end = time.time() + a.timeout
    while time.time() < end and not STOP:
        got = set(read_delivered(a.delivered, a.run)[0])
        if want <= got:
            print(f"  all {len(want)} probe events delivered")
            return
        time.sleep(1)
    got = set(read_delivered(a.delivered, a.run)[0])
    print(f"  gave up waiting after {a.timeout} s: {len(want - got)} probe events not delivered yet")


# ------------------------------------------------------------------------------------------- report


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))]


def fmt_ms(x):
    return "-" if x is None else f"{x:,.1f} ms" if x < 10000 else f"{x / 1000:,.2f} s"


def lat_line(name, lat):
    return (f"  {name:<34} n={len(lat):>6}  p50 {fmt_ms(pct(lat, 50)):>10}  p99 {fmt_ms(pct(lat, 99)):>10}"
            f"  max {fmt_ms(max(lat) if lat else None):>10}")


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def log_times(path, needles):
    """Times (Unix s) of the server log lines containing each needle."""
    out = {n: [] for n in needles}
    with open(path, errors="replace") as f:
        for line in f:
            for n in needles:
                if n in line:
                    try:
                        out[n].append(datetime.datetime.fromisoformat(line.split(" ", 1)[0]).timestamp())
                    except ValueError:
                        pass
    return out


def mode_report(a):
    w = a.work
    t0 = float(open(os.path.join(w, "t0")).read())
    phases = {}
    for line in open(os.path.join(w, "phases.tsv")):
        k, v = line.split()
        phases[k] = float(v)
    fill = load(os.path.join(w, "fill.json"), {})
    sent = read_sent(os.path.join(w, "probe.sent"))
    db = sqlite3.connect(f"file:{a.db}?mode=ro", uri=True)
    stored, stored_id = {}, {}
    stored_rows = 0
    for eid, received_at, data in db.execute(
            "SELECT id, received_at, data FROM events WHERE device = ? AND code = 'SoakProbe'", (a.serial,)):
        try:
            d = json.loads(data)
        except (TypeError, ValueError):
            continue
        if d.get("Run") != a.run:
            continue
        stored_rows += 1
        seq = int(d["Seq"])
        if seq not in stored:
            stored[seq] = received_at  # unix ms
            stored_id[seq] = eid
    delivered, msgs, dups, delivered_id = read_delivered(os.path.join(w, "delivered.txt"), a.run)
    sse, sse_id = {}, {}
    try:
        for line in open(os.path.join(w, "sse.tsv")):
            p = line.split("\t")
            sse.setdefault(int(p[0]), int(p[1]))
            sse_id.setdefault(int(p[0]), int(p[2]))
    except (OSError, ValueError, IndexError):
        pass
    lowest_id = db.execute("SELECT min(id) FROM events").fetchone()[0] or 0
    cursor = db.execute("SELECT position FROM sink_cursors WHERE sink = 'mqtt'").fetchone()
    cursor = cursor[0] if cursor else None
    last_id = db.execute("SELECT max(id) FROM events").fetchone()[0]
    logt = log_times(os.path.join(w, "server.log"), [
        "MQTT connected", "destination unavailable", "below store.min-free-mb", "store write failed",
        "store writes succeed again", "identity conflict"])

    S, D = set(sent), set(delivered)
    # A probe event missing from the store at the end was committed all the same when the server gave it an
    # event id (on /api/stream or in the MQTT message) below the store's lowest id: retention deleted it,
    # as the free-space reserve allows for delivered events older than the newest 10,000.
    retained_away = {}
    for q in set(sent) - set(stored):
        eid = sse_id.get(q) or delivered_id.get(q)
        if eid is not None and eid < lowest_id:
            retained_away[q] = eid
    T = set(stored) | set(retained_away)
    lost_store = sorted(S - T)
    undelivered = sorted(T - D)
    extra = sorted((T | D) - S)

    def rel(t):
        return f"{t - t0:.1f} s"

    windows = []
    if "broker_down" in phases and "broker_up" in phases:
        windows.append(("broker outage (+10 s)", phases["broker_down"], phases["broker_up"] + 10))
    if "fill_start" in phases:
        ok_again = [t for t in logt["store writes succeed again"] if t >= phases["fill_start"]]
        end = max(ok_again + [fill.get("ballast_deleted", phases["fill_start"])])
        windows.append(("store full (+10 s)", phases["fill_start"], end + 10))

    def window_of(seq):
        t = sent[seq] / 1e6
        for name, lo, hi in windows:
            if lo <= t <= hi:
                return name
        return "steady"

    print(f"== Probe (device {a.serial}: DHIP pulses SoakProbe, {a.rate:g}/s on one connection; run {a.run})")
    print(f"  sent {len(S)}   stored {len(T)}   delivered to MQTT {len(D)} unique "
          f"({msgs} messages, {dups} duplicates)   [seen committed on /api/stream: {len(set(sse) & S)}, "
          f"informational]")
    print(f"  stored = {len(stored)} in the store at the end (rows {stored_rows})" + (
        f" + {len(retained_away)} committed and later deleted by retention (event ids "
        f"{min(retained_away.values())}–{max(retained_away.values())}, below the store's lowest id {lowest_id}; "
        f"their ids come from /api/stream and MQTT)" if retained_away else ""))
    print("  latency from the send time carried in the event (received_at has millisecond resolution):")
    stages = (("send→stored (events.received_at)", {s_: stored[s_] * 1000 for s_ in stored}, True),
              ("send→delivered (MQTT subscriber)", delivered, False),
              ("send→committed (/api/stream)", sse, False))
    for stage, got, ms in stages:
        def lat(seqs):
            if ms:  # compare whole milliseconds
                return [(got[q] // 1000 - sent[q] // 1000) for q in seqs if q in got]
            return [(got[q] - sent[q]) / 1000 for q in seqs if q in got]
        print(lat_line(stage, lat(S)))
        for wname in ["steady"] + [x[0] for x in windows]:
            print(lat_line("  sent during " + wname, lat([q for q in S if window_of(q) == wname])))
    print("  windows: " + "; ".join(f"{n} {rel(lo)}–{rel(hi)}" for n, lo, hi in windows))
    for name, got in (("stored (received_at)", {q: stored[q] * 1000 for q in stored}), ("delivered", delivered),
                      ("committed (/api/stream)", sse)):
        times = sorted(got.values())
        gaps = sorted(((b_ - a_, a_) for a_, b_ in zip(times, times[1:])), reverse=True)[:3]
        print(f"  longest gaps between consecutive probe events {name}: " +
              ", ".join(f"{g / 1e6:.2f} s after {rel(c / 1e6)}" for g, c in gaps))
    probe = load(os.path.join(w, "probe.json"), {})
    print(f"  probe connection: {probe.get('connects')} connect(s), {probe.get('closed_by_server')} closed by the "
          f"server, {probe.get('send_errors')} send errors, longest blocked send "
          f"{probe.get('max_send_block_ms', 0):.0f} ms; /api/stream: {load(os.path.join(w, 'sse.json'), {})}")
    for e in probe.get("errors", [])[:5]:
        print("    " + e)

    rss = []
    for line in open(os.path.join(w, "rss.tsv")):
        p = line.split("\t")
        rss.append((float(p[0]), int(p[1]), int(p[2])))
    if len(rss) > 1:
        m = max(rss, key=lambda x: x[1])
        hz = os.sysconf("SC_CLK_TCK")
        cpu = [(b_[2] - a_[2]) / hz / (b_[0] - a_[0]) * 100 for a_, b_ in zip(rss[::5], rss[5::5])]
        print(f"== Server: max RSS {m[1] / 1024:.1f} MB at {rel(m[0])} (VmRSS every second, {len(rss)} samples; "
              f"last {rss[-1][1] / 1024:.1f} MB); CPU {(rss[-1][2] - rss[0][2]) / hz:.0f} s over "
              f"{rss[-1][0] - rss[0][0]:.0f} s = {(rss[-1][2] - rss[0][2]) / hz / (rss[-1][0] - rss[0][0]) * 100:.0f} % "
              f"of one core on average, {max(cpu):.0f} % at most over 5 s")
    lag = []
    for line in open(os.path.join(w, "metrics.tsv")):
        p = line.rstrip("\n").split("\t")
        if p[1] != "-":
            lag.append((float(p[0]), p[1], p[2]))
    if lag:
        step = max(1, len(lag) // 14)
        picks = lag[::step] + ([lag[-1]] if (len(lag) - 1) % step else [])
        print("  MQTT sink lag (events behind the log, from /metrics every 5 s) at: " +
              ", ".join(f"{rel(t)} {l}" for t, l, _ in picks))

    print("== Faults (times from the start of the load)")
    if "broker_down" in phases:
        mc = [rel(t) for t in logt["MQTT connected"]]
        print(f"  MQTT broker: stopped (SIGTERM) at {rel(phases['broker_down'])}, started again at "
              f"{rel(phases['broker_up'])} ({phases['broker_up'] - phases['broker_down']:.1f} s outage); "
              f"sink connected at {', '.join(mc)}; {len(logt['destination unavailable'])} 'destination "
              f"unavailable' warnings")
    if fill:
        keys = ["reserve_crossed", "reserve_warning_seen", "disk_full", "first_503", "last_503",
                "ballast_deleted", "ready_again"]
        print(f"  store: tmpfs {a.tmpfs_mb} MiB, {fill.get('avail_mb_before', 0):.1f} MiB free at the start of the "
              f"phase, ballast {fill.get('ballast_mb', 0):.1f} MiB; " +
              ", ".join(f"{k} {rel(fill[k])}" for k in keys if k in fill))
        wf, ok = logt["store write failed"], logt["store writes succeed again"]
        if wf:
            print(f"  server log: {len(wf)} 'store write failed' lines from {rel(wf[0])} to {rel(wf[-1])}; "
                  f"'store writes succeed again' at {', '.join(rel(t) for t in ok) or 'never'}; reserve warning at "
                  f"{', '.join(rel(t) for t in logt['below store.min-free-mb']) or 'never'}")
        print(f"  /readyz polled by the fill phase: {fill.get('readyz_during_phase')} (error = the API refused or "
              f"dropped the connection)")
    elif "fill_skipped" in phases:
        print("  store-full phase SKIPPED: " + open(os.path.join(w, "fill_skipped")).read().strip())
    rz = {}
    for line in open(os.path.join(w, "readyz.tsv")):
        p = line.split("\t")
        rz[p[1]] = rz.get(p[1], 0) + 1
    print(f"  /readyz polled every 0.5 s for the whole run: {rz}")

    print("== Hostile clients")
    names = [("intruder", "item 1, intruder from 127.0.0.2 claiming the probe's serial every 0.5 s"),
             ("decode", "item 7, large POST /api/decode"),
             ("xmburst", "item 8, bursts of one-alarm XM connections"),
             ("slowheaders", "item 8, slow-header connections to the API port"),
             ("hadevices", "item 9, new devices with new Home Assistant entities"),
             ("flood", "item 10, flood of new random serials")]
    for key, title in names:
        st = load(os.path.join(w, key + ".json"), "no stats (did it run?)")
        if isinstance(st, dict):
            st = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in st.items()}
        print(f"  {title}: {json.dumps(st, sort_keys=True)}")
    print(f"  identity conflicts logged: {len(logt['identity conflict'])}")
    rows = dict(db.execute(
        "SELECT substr(id, 1, 6), count(*) FROM devices WHERE id LIKE 'SOAK%' GROUP BY 1").fetchall())
    evs = dict(db.execute("SELECT code, count(*) FROM events GROUP BY code").fetchall())
    print(f"  store: devices by id prefix {rows}")
    print(f"         events by code {evs}")
    xm_sent = (load(os.path.join(w, "xmburst.json"), {}) or {}).get("sent_frames")
    xm_stored = db.execute(
        "SELECT count(*) FROM events WHERE device LIKE 'SOAKXM%' AND code = 'HumanDetect'").fetchone()[0]
    print(f"  XM burst alarms: {xm_sent} sent, {xm_stored} stored")
    try:
        topics = {l.split(" ", 1)[0].strip() for l in open(os.path.join(w, "discovery.txt"), errors="replace")}
        print(f"  Home Assistant discovery configs retained on the broker at the end: {len(topics)}")
    except OSError:
        pass
    sinks = db.execute("SELECT sink, position, delivered, failures, last_error FROM sink_cursors").fetchall()
    print(f"  sink cursors at stop: {sinks}; last event id {last_id} (lag {last_id - cursor if cursor is not None else '?'})")

    print("== Result")
    bad = False
    if not S:
        print("  FAIL: the probe sent nothing")
        bad = True
    if lost_store:
        bad = True
        print(f"  LOSS between send and store: {len(lost_store)} probe events sent but not stored "
              f"(seq {lost_store[:20]}{' …' if len(lost_store) > 20 else ''})")
    if undelivered:
        bad = True
        ids = {**retained_away, **stored_id}
        behind = [q for q in undelivered if cursor is None or ids[q] > cursor]
        passed = [q for q in undelivered if cursor is not None and ids[q] <= cursor]
        if passed:
            print(f"  LOSS between store and MQTT: {len(passed)} probe events stored, passed by the MQTT sink's cursor "
                  f"(position {cursor}) and never received by the subscriber (seq {passed[:20]}"
                  f"{' …' if len(passed) > 20 else ''}; event ids {[ids[q] for q in passed[:10]]})")
        if behind:
            print(f"  NOT DELIVERED (MQTT sink stalled/behind): {len(behind)} probe events stored but not delivered "
                  f"{a.drain} s after the load stopped; they are still ahead of the sink's cursor (position {cursor}, "
                  f"lag {last_id - cursor if cursor is not None else '?'} events): seq {behind[0]}–{behind[-1]}, "
                  f"event ids {ids[behind[0]]}–{ids[behind[-1]]}, sent "
                  f"{rel(sent[behind[0]] / 1e6)}–{rel(sent[behind[-1]] / 1e6)}")
    if extra:
        print(f"  note: {len(extra)} probe events stored or delivered that the probe did not record as sent "
              f"(a send that failed mid-write): seq {extra[:10]}")
    if not bad:
        print(f"  OK: sent = stored = delivered = {len(S)}")
    sys.exit(1 if bad else 0)


# --------------------------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--until", type=float, default=time.time() + 3600)
    ap.add_argument("--out", default="/dev/null")
    ap.add_argument("--device", default="127.0.0.1:25102")
    ap.add_argument("--api", default="127.0.0.1:25180")
    ap.add_argument("--serial", default="SOAKPROBE0001")
    ap.add_argument("--run", default="run")
    ap.add_argument("--rate", type=float, default=10)
    ap.add_argument("--sent")
    ap.add_argument("--seen")
    ap.add_argument("--delivered")
    ap.add_argument("--log")
    ap.add_argument("--metrics-log", default="/dev/null")
    ap.add_argument("--ready-file")
    ap.add_argument("--src", default="127.0.0.1")
    ap.add_argument("--every", type=float, default=1)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--cameras", type=int, default=25)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--hold", type=float, default=15)
    ap.add_argument("--size-mb", type=float, default=3.5)
    ap.add_argument("--pause", type=float, default=0.2)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--dir")
    ap.add_argument("--reserve-mb", type=int, default=16)
    ap.add_argument("--server-log")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--work")
    ap.add_argument("--db")
    ap.add_argument("--tmpfs-mb", default="-")
    ap.add_argument("--drain", default="-")
    a = ap.parse_args()
    fn = globals().get("mode_" + a.mode)
    if fn is None:
        ap.error(f"unknown mode {a.mode}")
    fn(a)


if __name__ == "__main__":
    main()
