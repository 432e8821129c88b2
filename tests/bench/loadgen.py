#!/usr/bin/env python3
"""Open-loop HTTP/1.0 GET load at a fixed rate; prints p50/p99/max.

Each request is scheduled at start + i/rate regardless of earlier answers;
its latency runs from that scheduled time to the end of the response, so a
server stall shows in the tail. At most --max-inflight requests are open at
once (bounded); beyond that a request counts as an error.
"""
import argparse
import asyncio
import time


async def one(host, port, path, scheduled, results, errors, sem):
    if sem.locked():
        errors.append("too many in flight")
        return
    async with sem:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            data = await reader.read()
            writer.close()
            status = int(data.split(b" ", 2)[1])
            results.append((time.perf_counter() - scheduled, status))
        except Exception as e:  # counted, reported below
            errors.append(type(e).__name__)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=7780)
    ap.add_argument("--path", default="/health")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--max-inflight", type=int, default=500)
    ap.add_argument("--label", default=None, help="what the figures are of")
    a = ap.parse_args()
    results, errors, tasks = [], [], []
    sem = asyncio.Semaphore(a.max_inflight)
    total = int(a.rate * a.seconds)
    start = time.perf_counter() + 0.1
    for i in range(total):
        scheduled = start + i / a.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(a.host, a.port, a.path, scheduled, results, errors, sem)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    lat = sorted(r[0] for r in results)
    codes = {}
    for _, c in results:
        codes[c] = codes.get(c, 0) + 1
    if not lat:
        print(f"{a.label or a.path}: no answers; errors {len(errors)} {set(errors)}")
        raise SystemExit(1)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
    failed = len(errors) + sum(n for c, n in codes.items() if c != 200)
    print(
        f"{a.label or a.path + ' latency'} at {len(results) / elapsed:.0f} req/s for {elapsed:.1f} s "
        f"({len(results)} answers, codes {codes}, {len(errors)} errors, {failed} failed"
        f"{', e.g. ' + ', '.join(sorted(set(errors))[:3]) if errors else ''}): "
        f"p50 {q(0.50):.2f} ms, p99 {q(0.99):.2f} ms, max {lat[-1] * 1000:.2f} ms"
    )


asyncio.run(main())
