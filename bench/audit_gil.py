"""How long the audit writer keeps the event loop waiting (issue 15): the GIL its worker thread holds.

A ticker coroutine on the loop asks to wake every 0.5 ms while the writer flushes batches of realistic
rows to a fresh SQLite store; how late it wakes is how long the loop could not run (the worker thread held
the GIL, or the machine was busy: run it with nothing else going on, and once with `--rows 0` for the
noise floor). Prints the lateness percentiles, how many wake-ups were over 1 and 5 ms late, and the
writer's wall time per row.

    python bench/audit_gil.py [--rows 1000] [--batches 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time

TICK = 0.0005


def make_row(i: int) -> dict:
    return {"id": f"req_{os.getpid()}_{i:08d}", "ts": time.time(), "client_api": "openai", "backend_api": "openai",
            "requested_model": "bench-model", "route": "bench", "provider": "up", "backend_model": "bench-model",
            "attempts": 1, "stream": False, "status": 200, "duration_ms": 1.25, "ttfb_ms": 0.9, "input_tokens": 8,
            "output_tokens": 6, "cached_tokens": None, "error": None, "failovers": 0, "path": "/v1/chat/completions",
            "attempts_detail": [{"target": "up/bench-model", "outcome": "ok", "ms": 1.2, "status": 200}]}


async def measure(rows: int, batches: int) -> None:
    from mlxgw.audit.writer import AuditWriter
    from mlxgw.store.db import Store

    store = Store(f"sqlite:///{tempfile.mkdtemp()}/mlxgw.db")
    writer = AuditWriter(store, interval=3600)  # flushed by hand below
    gaps: list[float] = []
    busy = True

    async def ticker():
        while busy:
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            gaps.append(time.perf_counter() - t0 - TICK)

    task = asyncio.create_task(ticker())
    n = 0
    spent = 0.0
    for _ in range(batches):
        fresh = [make_row(n + i) for i in range(rows)]
        for i, row in enumerate(fresh):  # as requests do: one row each, the loop free in between
            writer.record(row)
            if i % 8 == 7:
                await asyncio.sleep(0)
        n += rows
        t0 = time.perf_counter()
        await writer.flush()
        spent += time.perf_counter() - t0
        await asyncio.sleep(0.05)
    busy = False
    await task
    assert writer.written == n, (writer.written, n)
    gaps.sort()
    q = statistics.quantiles(gaps, n=1000)
    if n:
        print(f"rows {n} in batches of {rows}: {spent / n * 1e6:.1f} µs per row (flush wall time)")
    print(f"loop lateness: p50 {q[499] * 1e3:.3f} ms, p99 {q[989] * 1e3:.3f} ms, p99.9 {q[998] * 1e3:.3f} ms, "
          f"max {gaps[-1] * 1e3:.2f} ms; {sum(g > 0.001 for g in gaps)} wake-ups over 1 ms late, "
          f"{sum(g > 0.005 for g in gaps)} over 5 ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    asyncio.run(measure(args.rows, args.batches))


if __name__ == "__main__":
    main()
