"""Reading the audit log back: the rows behind `mlxgw logs tail` and the figures behind `logs stats`."""

from __future__ import annotations

import math

from sqlalchemy import case, func, or_, select

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


SMALL_WINDOW = 50_000  # rows: below this a `--since` window is read through the ts index and sorted


def _percentile(s, where: list, n: int, q: float, small: bool = False) -> float | None:
    """The nearest-rank percentile of duration_ms among the `n` rows `where` selects, read off the
    (group, duration) index from whichever end is nearer: no row is loaded but the one. `small`: a short
    time window, cheaper to find through the ts index and sort (`+ 0` keeps the planner off the duration
    indexes, which it would otherwise walk end to end)."""
    if n == 0:
        return None
    k = _nearest_rank(n, q)
    duration = RequestLog.duration_ms + 0 if small else RequestLog.duration_ms
    q_ = select(RequestLog.duration_ms).where(*where)
    if k < n / 2:
        q_ = q_.order_by(duration).offset(k)
    else:
        q_ = q_.order_by(duration.desc()).offset(n - 1 - k)
    return s.scalar(q_.limit(1))


_ERROR = case((or_(RequestLog.status >= 400, RequestLog.error.is_not(None)), 1), else_=0)
_FAILED_OVER = case((RequestLog.failovers > 0, 1), else_=0)


def _add(into: dict, r) -> None:
    for k, v in zip(("requests", "errors", "input_tokens", "output_tokens", "failovers"), r[3:]):
        into[k] = into.get(k, 0) + int(v or 0)


def stats(store: Store, since: float | None = None) -> dict:
    """Totals, then the same figures per route, per provider and per client API (openai, anthropic,
    responses). `failovers` counts the requests that moved on from their route's first target to a later
    one. Sums come from one GROUP BY scan; each percentile is one indexed lookup (migration 4), instead of
    loading every row into Python."""
    window = [RequestLog.ts >= since] if since is not None else []
    # `|| ''` keeps the planner off the (route, ...) indexes: reading the table through one costs a random
    # lookup per row, where this scan wants to read it straight through.
    route, provider = (RequestLog.route + "").label("route"), (RequestLog.provider + "").label("provider")
    client = (RequestLog.client_api + "").label("client_api")
    q = (select(route, provider, client, func.count(), func.sum(_ERROR), func.sum(RequestLog.input_tokens),
                func.sum(RequestLog.output_tokens), func.sum(_FAILED_OVER))
         .where(*window).group_by(route, provider, client))
    total: dict = {}
    by_route: dict = {}
    by_provider: dict = {}
    by_client: dict = {}
    with store.session() as s:
        for r in s.execute(q):
            _add(total, r)
            _add(by_route.setdefault(r[0], {}), r)
            _add(by_provider.setdefault(r[1], {}), r)
            _add(by_client.setdefault(r[2], {}), r)

        small = since is not None and total.get("requests", 0) <= SMALL_WINDOW

        small = since is not None and total.get("requests", 0) <= SMALL_WINDOW

        def summary(sums: dict, where: list) -> dict:
            n = sums.get("requests", 0)
            return {"requests": n, "errors": sums.get("errors", 0),
                    "p50_ms": _percentile(s, where, n, 0.50, small), "p95_ms": _percentile(s, where, n, 0.95, small),
                    "input_tokens": sums.get("input_tokens", 0), "output_tokens": sums.get("output_tokens", 0),
                    "failovers": sums.get("failovers", 0)}

        def group(col, sums: dict) -> dict:
            out = {}
            for key, v in sums.items():
                col_ = col + "" if small else col  # small window: the ts index, not the group's
                out[key or "(none)"] = summary(v, [*window, col_.is_(None) if key is None else col_ == key])
            return dict(sorted(out.items()))

        return {"total": summary(total, window), "routes": group(RequestLog.route, by_route),
                "providers": group(RequestLog.provider, by_provider),
                "client_apis": group(RequestLog.client_api, by_client)}
