"""Reading the audit log back: the rows behind `mlxgw logs tail` and the figures behind `logs stats`."""

from __future__ import annotations

import math
from collections import defaultdict

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


def _nearest_rank(n: int, q: float) -> int:
    """0-based index of the nearest-rank q-percentile among n sorted values."""
    return max(0, min(n - 1, math.ceil(q * n) - 1))


def _pick(durations: list[float]) -> dict:
    """p50 and p95 (nearest rank) of a group's durations, sorted here."""
    if not durations:
        return {"p50_ms": None, "p95_ms": None}
    durations.sort()
    n = len(durations)
    return {"p50_ms": durations[_nearest_rank(n, 0.50)], "p95_ms": durations[_nearest_rank(n, 0.95)]}


# Sums per (route, provider, client API) in one GROUP BY scan; the totals and the per-dimension figures
# are added up from its rows. A failover counts once per request, however many targets it moved past.
_SUMS = ("SELECT route, provider, client_api, count(*), "
         "sum(CASE WHEN status >= 400 OR error IS NOT NULL THEN 1 ELSE 0 END), "
         "sum(input_tokens), sum(output_tokens), sum(CASE WHEN failovers > 0 THEN 1 ELSE 0 END) "
         "FROM requests{where} GROUP BY route, provider, client_api")
_DURATIONS = "SELECT route, provider, client_api, duration_ms FROM requests{where}"


def _add(into: dict, r) -> None:
    for k, v in zip(("requests", "errors", "input_tokens", "output_tokens", "failovers"), r[3:]):
        into[k] = into.get(k, 0) + int(v or 0)


def stats(store: Store, since: float | None = None) -> dict:
    """Totals, then the same figures per route, per provider and per client API (openai, anthropic,
    responses). `failovers` counts the requests that moved on from their route's first target to a later
    one. One transaction, two scans through the driver: the sums (GROUP BY), then every duration, sorted
    here per group for the percentiles. The audit table has no index on duration_ms: each would cost
    every audited request a random-leaf insert (mlxgw.store.tables)."""
    where, params = (" WHERE ts >= ?", (since,)) if since is not None else ("", ())
    db = store.db
    total: dict = {}
    sums: tuple[dict, dict, dict] = ({}, {}, {})  # route, provider, client API -> key -> sums
    durations: list = []
    by = (defaultdict(list), defaultdict(list), defaultdict(list))  # the same -> key -> durations
    with db.transaction() as cur:
        cur.execute(db.sql(_SUMS.format(where=where)), params)
        for r in cur.fetchall():
            _add(total, r)
            for i, groups in enumerate(sums):
                _add(groups.setdefault(r[i], {}), r)
        cur.execute(db.sql(_DURATIONS.format(where=where)), params)
        add, routes, providers, clients = durations.append, *by
        while batch := cur.fetchmany(10_000):
            for route, provider, client, ms in batch:
                add(ms)
                routes[route].append(ms)
                providers[provider].append(ms)
                clients[client].append(ms)

    def summary(s: dict, d: list) -> dict:
        return {"requests": s.get("requests", 0), "errors": s.get("errors", 0), **_pick(d),
                "input_tokens": s.get("input_tokens", 0), "output_tokens": s.get("output_tokens", 0),
                "failovers": s.get("failovers", 0)}

    def group(s: dict, d: dict) -> dict:
        return dict(sorted((key or "(none)", summary(v, d.get(key, []))) for key, v in s.items()))

    return {"total": summary(total, durations), "routes": group(sums[0], by[0]),
            "providers": group(sums[1], by[1]), "client_apis": group(sums[2], by[2])}
