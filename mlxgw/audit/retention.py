"""Pruning the audit log: by age (`audit.retention`, `mlxgw logs prune --older-than`) and by count
(`audit.max_rows`).

Rows go in small batches, each its own short transaction, oldest first, so a server pruning a large
backlog never holds the store's write lock for long: the audit writer and `mlxgw apply` slip in between
batches. Several replicas on one store may prune at once; a row deleted twice is simply not there.
Plain SQL through the driver (mlxgw.store.sql): the server prunes without SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("mlxgw.audit")
BATCH = 1000


def _delete_oldest(store, n: int, before: float | None) -> int:
    """Delete up to `n` of the oldest rows (only those with ts < `before`, when given)."""
    db = store.db
    where, params = ("WHERE ts < ? ", (before, n)) if before is not None else ("", (n,))
    with db.transaction(write=True) as cur:
        cur.execute(db.sql(f"DELETE FROM requests WHERE id IN (SELECT id FROM requests {where}"
                           "ORDER BY ts, id LIMIT ?)"), params)
        return max(cur.rowcount, 0)


def prune_batch(store, retention: float | None, max_rows: int | None, batch: int = BATCH) -> int:
    """One batch: rows older than `retention` seconds first, then the oldest beyond `max_rows`. The
    number deleted (0: nothing left to do). `store`: a Store or a Database."""
    if retention is not None:
        n = _delete_oldest(store, batch, time.time() - retention)
        if n:
            return n
    if max_rows is not None:
        extra = store.db.query("SELECT count(*) FROM requests")[0][0] - max_rows
        if extra > 0:
            return _delete_oldest(store, min(batch, extra), None)
    return 0


def prune(store, retention: float | None = None, max_rows: int | None = None, batch: int = BATCH) -> int:
    """Delete everything the limits exclude, batch by batch; the number of rows deleted."""
    total = 0
    while n := prune_batch(store, retention, max_rows, batch):
        total += n
    return total


def count_older(store, retention: float) -> int:
    db = store.db
    return db.query("SELECT count(*) FROM requests WHERE ts < ?", (time.time() - retention,))[0][0]


async def run(store, limits, interval: float, pause: float = 0.05, max_batches: int = 100) -> None:
    """The server's background pruning: every `interval` seconds, up to `max_batches` batches (in a
    worker thread, a short pause between them). `limits()` gives the current (retention, max_rows), so an
    apply that changes them takes effect at the next round."""
    while True:
        await asyncio.sleep(interval)
        retention, max_rows = limits()
        if retention is None and max_rows is None:
            continue
        try:
            deleted = 0
            for _ in range(max_batches):
                n = await asyncio.to_thread(prune_batch, store, retention, max_rows)
                deleted += n
                if n == 0:
                    break
                await asyncio.sleep(pause)
            if deleted:
                log.info("audit log: pruned %d rows (retention %s, max_rows %s)", deleted, retention, max_rows)
        except Exception as exc:  # a store hiccup: try again next round
            log.warning("audit log: pruning failed: %s", exc)
