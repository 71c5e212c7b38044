#!/usr/bin/env python3
"""A minimal HTTP/1.1 receiver for webhook load runs: answers 200 to every request (keep-alive) and
prints the request count every 5 s on stderr. Usage: webhook-receiver.py PORT"""
import asyncio, sys, time

count = 0

async def handle(reader, writer):
    global count
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            count += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

async def report():
    last, t0 = 0, time.time()
    while True:
        await asyncio.sleep(5)
        now = time.time()
        print(f"webhook-receiver: {count} requests, {(count - last) / (now - t0):.0f}/s", file=sys.stderr, flush=True)
        last, t0 = count, now

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    asyncio.create_task(report())
    async with server:
        await server.serve_forever()

asyncio.run(main())
