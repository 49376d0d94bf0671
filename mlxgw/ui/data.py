"""What the route view shows, as plain data: built from a Snapshot (the server's own compiled routes, so
the page cannot drift from the server's precedence) plus key fingerprints and audit figures.

`view(snapshot, fingerprints)` gives providers, routes in precedence order and the resolver table;
`audit_figures(store)` gives requests, errors, failovers and p50 latency per route over the last hour and
day, and the hourly buckets behind the chart. No function here ever sees a key in clear except
`fingerprints_from_snapshot`, which turns the server's in-memory keys into fingerprints at once.
"""

from __future__ import annotations

import math
import time

from mlxgw.config import durations
from mlxgw.routing.snapshot import Snapshot
from mlxgw.fingerprints import fingerprint
from mlxgw.ui.jsregex import translate

HOUR = 3600.0
DAY = 24 * HOUR
DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
TIMEOUT_FIELDS = ("connect", "first_token", "idle", "total")


def _duration(seconds: float) -> str:
    return durations.format_ms(round(seconds * 1000))


def _timeouts(t) -> dict:
    return {k: _duration(getattr(t, k)) for k in TIMEOUT_FIELDS}


def fingerprints_from_store(store) -> dict[str, dict]:
    """provider -> {"key": fingerprint, "source": env var name or "set-key"}, from the secrets table."""
    from sqlalchemy import select

    from mlxgw.store import tables

    with store.session() as s:
        return {r.provider: {"key": r.fingerprint, "source": r.env_ref or "set-key"}
                for r in s.scalars(select(tables.Secret))}


def fingerprints_from_snapshot(snapshot: Snapshot) -> dict[str, dict]:
    """The same, from the keys a running server holds in memory (the source is not kept there)."""
    return {p.name: {"key": fingerprint(p.api_key), "source": None}
            for p in snapshot.providers.values() if p.api_key}


def precedence(snapshot: Snapshot) -> list:
    """The snapshot's routes in the order `Snapshot.route` tries them: exact names (declared order), the
    prefixes longest first, then the regexes in declared order. An exact route whose name an earlier
    exact route already took (validation refuses that) comes last: it can never match."""
    exact_table = snapshot.exact_routes
    exact = [rt for rt in snapshot.routes if rt.match_type == "exact" and exact_table.get(rt.pattern) is rt]
    prefixes = [rt for _, rt in snapshot.prefix_routes]
    regexes = list(snapshot.regex_routes)
    shadowed = [rt for rt in snapshot.routes if rt.match_type == "exact" and exact_table.get(rt.pattern) is not rt]
    return exact + prefixes + regexes + shadowed


def view(snapshot: Snapshot, fingerprints: dict[str, dict]) -> dict:
    providers = []
    for p in snapshot.providers.values():
        spec = p.spec
        fp = fingerprints.get(p.name) or {}
        models = []
        for m in spec.get("models") or []:
            models.append({
                "name": m["name"], "path": m.get("path"), "aliases": list(m.get("aliases") or []),
                "idle_ttl": m.get("idle_ttl"), "context_length": m.get("context_length"),
            })
        providers.append({
            "name": p.name, "kind": p.kind, "local": p.local,
            "base_url": spec.get("base_url") or DEFAULT_BASE_URLS.get(p.kind),
            "base_url_default": not spec.get("base_url") and p.kind in DEFAULT_BASE_URLS,
            "command": spec.get("command"), "max_loaded": spec.get("max_loaded"),
            "key": fp.get("key"), "key_source": fp.get("source"),
            "timeouts": _timeouts(p.timeouts), "models": models,
        })
    ordered = precedence(snapshot)
    index = {id(rt): i for i, rt in enumerate(ordered)}
    declared_at = {id(rt): i for i, rt in enumerate(snapshot.routes)}
    routes = []
    for i, rt in enumerate(ordered):
        entry = {
            "key": rt.key, "match_type": rt.match_type, "pattern": rt.pattern, "declared": declared_at[id(rt)] + 1,
            "precedence": i + 1, "shadowed": rt.match_type == "exact" and snapshot.exact_routes.get(rt.pattern) is not rt,
            "targets": [{
                "provider": t.provider, "model": t.model, "label": t.label,
                "local": bool(snapshot.providers.get(t.provider) and snapshot.providers[t.provider].local),
                "known": t.provider in snapshot.providers, "timeouts": _timeouts(t.timeouts),
            } for t in rt.targets],
        }
        if rt.match_type == "regex":
            entry["regex"] = translate(rt.pattern).as_dict()
        routes.append(entry)
    table = {
        "exact": [[rt.pattern, index[id(rt)]] for rt in ordered if rt.match_type == "exact" and not routes[index[id(rt)]]["shadowed"]],
        "prefix": [[pattern, index[id(rt)]] for pattern, rt in snapshot.prefix_routes],
        "regex": [index[id(rt)] for rt in snapshot.regex_routes],
        "aliases": {p.name: p.aliases for p in snapshot.providers.values()},
    }
    return {"revision": snapshot.revision, "providers": providers, "routes": routes, "table": table}


# --- audit figures ---------------------------------------------------------------------------------------

def _p50(values: list[float]) -> float | None:
    """Nearest-rank median, as `mlxgw logs stats` computes it."""
    if not values:
        return None
    values = sorted(values)
    return values[max(0, math.ceil(0.5 * len(values)) - 1)]


def _window(rows: list[tuple]) -> dict:
    return {
        "requests": len(rows),
        "errors": sum(1 for r in rows if r[2] >= 400 or r[3]),
        "failovers": sum(1 for r in rows if (r[4] or 0) > 0),
        "p50_ms": _p50([r[5] for r in rows if r[5] is not None]),
    }


def audit_figures(store, now: float | None = None) -> dict:
    """Per route (and in total) over the last hour and the last day, plus 24 hourly buckets (oldest
    first) of requests and errors for the chart. One query over the last day's rows."""
    now = time.time() if now is None else now
    rows = store.db.query("SELECT ts, route, status, error, failovers, duration_ms FROM requests WHERE ts >= ?",
                          (now - DAY,))
    return figures_from_rows(rows, now)


def figures_from_rows(rows: list[tuple], now: float) -> dict:
    """`rows`: (ts, route, status, error, failovers, duration_ms) of the last day."""
    by_route: dict[str, list] = {}
    for r in rows:
        by_route.setdefault(r[1] or "(no route)", []).append(r)

    def windows(rs: list) -> dict:
        return {"hour": _window([r for r in rs if r[0] >= now - HOUR]), "day": _window(rs)}

    buckets = [{"requests": 0, "errors": 0} for _ in range(24)]
    for r in rows:
        i = 23 - min(23, int((now - r[0]) // HOUR))
        buckets[i]["requests"] += 1
        if r[2] >= 400 or r[3]:
            buckets[i]["errors"] += 1
    return {
        "now": now,
        "total": windows(rows),
        "routes": {k: windows(v) for k, v in sorted(by_route.items())},
        "buckets": buckets,
    }
