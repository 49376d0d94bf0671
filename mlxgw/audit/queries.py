"""Reading the audit log back: the rows behind `mlxgw logs tail` and the figures behind `logs stats`."""

from __future__ import annotations

import math

from sqlalchemy import select

from mlxgw.store.db import Store
from mlxgw.store.tables import RequestLog

COLUMNS = tuple(c.name for c in RequestLog.__table__.columns)


def _row(r: RequestLog) -> dict:
    return {c: getattr(r, c) for c in COLUMNS}


def tail(store: Store, n: int = 20) -> list[dict]:
    """The last `n` rows, oldest first."""
    with store.session() as s:
        rows = list(s.scalars(select(RequestLog).order_by(RequestLog.ts.desc(), RequestLog.id.desc()).limit(n)))
    return [_row(r) for r in reversed(rows)]


class Follower:
    """Yields rows newer than the ones already seen, for `logs tail -f`. Rows are ordered by timestamp;
    ids already shown at the newest timestamp are remembered so none is printed twice."""

    def __init__(self, store: Store, last: list[dict]):
        self._store = store
        self._ts = last[-1]["ts"] if last else 0.0
        self._ids = {r["id"] for r in last if r["ts"] == self._ts}

    def poll(self) -> list[dict]:
        with self._store.session() as s:
            rows = [_row(r) for r in s.scalars(
                select(RequestLog).where(RequestLog.ts >= self._ts).order_by(RequestLog.ts, RequestLog.id))]
        new = [r for r in rows if not (r["ts"] == self._ts and r["id"] in self._ids)]
        if new:
            top = new[-1]["ts"]
            if top != self._ts:
                self._ts, self._ids = top, set()
            self._ids.update(r["id"] for r in new if r["ts"] == top)
        return new


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def _summary(rows: list[tuple]) -> dict:
    durations = sorted(r[2] for r in rows if r[2] is not None)
    return {
        "requests": len(rows),
        "errors": sum(1 for r in rows if r[3] >= 400 or r[4]),
        "p50_ms": _percentile(durations, 0.50),
        "p95_ms": _percentile(durations, 0.95),
        "input_tokens": sum(r[5] or 0 for r in rows),
        "output_tokens": sum(r[6] or 0 for r in rows),
        "failovers": sum(1 for r in rows if (r[7] or 0) > 0),
    }


def stats(store: Store, since: float | None = None) -> dict:
    """Totals, then the same figures per route, per provider and per client API (openai, anthropic,
    responses). `failovers` counts the requests that moved on from their route's first target to a later
    one."""
    q = select(RequestLog.route, RequestLog.provider, RequestLog.duration_ms, RequestLog.status,
               RequestLog.error, RequestLog.input_tokens, RequestLog.output_tokens, RequestLog.failovers,
               RequestLog.client_api)
    if since is not None:
        q = q.where(RequestLog.ts >= since)
    with store.session() as s:
        rows = [tuple(r) for r in s.execute(q)]
    by_route: dict[str, list] = {}
    by_provider: dict[str, list] = {}
    by_client: dict[str, list] = {}
    for r in rows:
        by_route.setdefault(r[0] or "(none)", []).append(r)
        by_provider.setdefault(r[1] or "(none)", []).append(r)
        by_client.setdefault(r[8] or "(none)", []).append(r)
    return {
        "total": _summary(rows),
        "routes": {k: _summary(v) for k, v in sorted(by_route.items())},
        "providers": {k: _summary(v) for k, v in sorted(by_provider.items())},
        "client_apis": {k: _summary(v) for k, v in sorted(by_client.items())},
    }
