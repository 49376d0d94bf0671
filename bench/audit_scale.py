"""How fast are `mlxgw logs tail` and `logs stats` on a big audit log? `python bench/audit_scale.py`

Fills a fresh store with `--rows` audit rows (default 1,000,000; 6 routes, 4 providers, a week of
timestamps) and times, best of `--repeat`:
  - tail: the latest 20 rows (what `logs tail` shows);
  - follow: one poll of `logs tail -f` with nothing new;
  - stats: `logs stats` over everything (sums per route and provider, p50/p95 each);
  - stats 1h: `logs stats --since 3600`;
  - prune batch: one background-pruning batch (1,000 rows) by age;
with the audit table's index ((ts, id): tables.AUDIT_INDEXES), then again with it dropped, to show what it buys.
`--db URL` runs it on another store (e.g. postgresql+psycopg://...; the database must be empty).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text  # noqa: E402

from mlxgw.audit import queries, retention  # noqa: E402
from mlxgw.store import tables  # noqa: E402
from mlxgw.store.db import Store  # noqa: E402

ROUTES = ["main", "code", "chat", "local", "claude", None]
PROVIDERS = ["openai", "anthropic", "local-mlx", "backup"]


def fill(store: Store, n: int, chunk: int = 20_000) -> float:
    rnd = random.Random(1)
    now = time.time()
    t0 = time.perf_counter()
    for start in range(0, n, chunk):
        rows = []
        for i in range(start, min(n, start + chunk)):
            status = 200 if rnd.random() < 0.97 else 502
            rows.append({"id": f"req_{i:024d}", "ts": now - 7 * 86400 * (1 - i / n), "client_api": "openai",
                         "backend_api": "openai", "requested_model": "gpt-4o", "route": rnd.choice(ROUTES),
                         "provider": rnd.choice(PROVIDERS), "backend_model": "gpt-4o", "attempts": 1,
                         "stream": rnd.random() < 0.5, "status": status, "duration_ms": rnd.lognormvariate(5, 1),
                         "ttfb_ms": rnd.uniform(1, 300), "input_tokens": rnd.randint(10, 5000),
                         "output_tokens": rnd.randint(1, 800), "cached_tokens": None,
                         "error": "refused" if status != 200 else None, "attempts_detail": None,
                         "failovers": 1 if rnd.random() < 0.02 else 0})
        with store.engine.begin() as c:
            c.execute(insert(tables.RequestLog.__table__), rows)
    return time.perf_counter() - t0


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def measure(store: Store, repeat: int) -> dict:
    last = queries.tail(store, 20)
    follower = queries.Follower(store, last)
    cutoff = 7 * 86400 - 3600  # prune one batch of the oldest hour: rows exist there
    return {
        "tail 20": best(lambda: queries.tail(store, 20), repeat),
        "follow poll": best(follower.poll, repeat),
        "stats (all)": best(lambda: queries.stats(store), repeat),
        "stats --since 3600": best(lambda: queries.stats(store, time.time() - 3600), repeat),
        "prune batch (1,000)": best(lambda: retention.prune_batch(store, cutoff, None), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="audit log queries at scale")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--db", help="store URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    if args.db is None:
        folder = tempfile.mkdtemp(prefix="mlxgw-audit-scale-")
        os.environ["MLXGW_HOME"] = folder
    store = Store(args.db)
    print(f"store: {store.where}; filling {args.rows:,} rows...", flush=True)
    print(f"  filled in {fill(store, args.rows):.1f} s", flush=True)
    with store.engine.begin() as c:
        c.execute(text("ANALYZE"))
    with_ix = measure(store, args.repeat)
    with store.engine.begin() as c:
        for ix in tables.AUDIT_INDEXES:
            c.execute(text(f"DROP INDEX {ix.name}"))
    without = measure(store, args.repeat)
    print(f"\n| query ({args.rows:,} rows, {store.engine.dialect.name}) | with the (ts, id) index (ms) | without (ms) |")
    print("|---|---:|---:|")
    for k in with_ix:
        print(f"| {k} | {with_ix[k]:,.1f} | {without[k]:,.1f} |")
    store.engine.dispose()


if __name__ == "__main__":
    main()
