"""Pruning the audit log: by age (`audit.retention`, `mlxgw logs prune --older-than`) and by count
(`audit.max_rows`).

Rows go in small batches, each its own short transaction, oldest first, so a server pruning a large
backlog never holds the store's write lock for long: the audit writer and `mlxgw apply` slip in between
batches. Several replicas on one store may prune at once; a row deleted twice is simply not there.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import delete, func, select

from mlxgw.store.db import Store
from mlxgw.store.tables import RequestLog

log = logging.getLogger("mlxgw.audit")
BATCH = 1000


def _delete_oldest(store: Store, n: int, before: float | None) -> int:
    """Delete up to `n` of the oldest rows (only those with ts < `before`, when given)."""
    ids = select(RequestLog.id).order_by(RequestLog.ts, RequestLog.id).limit(n)
    if before is not None:
        ids = ids.where(RequestLog.ts < before)
    with store.session(write=True) as s:
        return s.execute(delete(RequestLog).where(RequestLog.id.in_(ids.scalar_subquery()))).rowcount or 0


def prune_batch(store: Store, retention: float | None, max_rows: int | None, batch: int = BATCH) -> int:
    """One batch: rows older than `retention` seconds first, then the oldest beyond `max_rows`. The
    number deleted (0: nothing left to do)."""
    if retention is not None:
        n = _delete_oldest(store, batch, time.time() - retention)
        if n:
            return n
    if max_rows is not None:
        with store.session() as s:
            extra = (s.scalar(select(func.count()).select_from(RequestLog)) or 0) - max_rows
        if extra > 0:
            return _delete_oldest(store, min(batch, extra), None)
    return 0


def prune(store: Store, retention: float | None = None, max_rows: int | None = None, batch: int = BATCH) -> int:
    """Delete everything the limits exclude, batch by batch; the number of rows deleted."""
    total = 0
    while n := prune_batch(store, retention, max_rows, batch):
        total += n
    return total


def count_older(store: Store, retention: float) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(RequestLog).where(RequestLog.ts < time.time() - retention)) or 0


async def run(store: Store, limits, interval: float, pause: float = 0.05, max_batches: int = 100) -> None:
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
