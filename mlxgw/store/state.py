"""Config state in the store: read it back as canonical config, write a plan in one transaction, and
hand the server what it needs to build its in-memory snapshot."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlxgw.config.canonical import SETTINGS, route_key
from mlxgw.config.plan import Plan, checksum
from mlxgw.fingerprints import fingerprint
from mlxgw.store import tables
from mlxgw.store.live import current_revision, load_runtime  # noqa: F401  (the server's readers)
from mlxgw.store.secrets import SecretBox


def read_config(s: Session) -> dict:
    """The store's config in canonical form, providers and routes in their stored order."""
    out: dict = {"version": 1}
    for key in SETTINGS:
        row = s.get(tables.Setting, key)
        if row and row.value:
            out[key] = row.value
    providers = []
    for p in s.scalars(select(tables.Provider).order_by(tables.Provider.position, tables.Provider.id)):
        spec = dict(p.spec)
        models = [m.spec for m in p.models]
        if models:
            spec["models"] = models
        providers.append(spec)
    out["providers"] = providers
    out["routes"] = [r.spec for r in s.scalars(select(tables.Route).order_by(tables.Route.position, tables.Route.id))]
    return out


def read_secrets(s: Session, box_factory, decrypt: set[str] | frozenset = frozenset()) -> dict:
    """provider -> (env_ref, value). Only providers in `decrypt` are decrypted (the master key is loaded
    only when needed); the rest map to (env_ref, None)."""
    out = {}
    box = None
    for row in s.scalars(select(tables.Secret)):
        value = None
        if row.provider in decrypt:
            box = box or box_factory()
            value = box.decrypt(row.ciphertext, f"the key of provider '{row.provider}'")
        out[row.provider] = (row.env_ref, value)
    return out


def write_plan(s: Session, plan: Plan, source: str, box: SecretBox | None) -> int:
    """Write the plan's merged config inside the caller's write transaction and record a revision."""
    now = time.time()
    for key in SETTINGS:
        _sync_setting(s, key, plan.merged.get(key))
    _sync_providers(s, plan.merged["providers"], now)
    _sync_routes(s, plan.merged["routes"], now)
    live = {p["name"] for p in plan.merged["providers"]}
    secrets = {row.provider: row for row in s.scalars(select(tables.Secret))}
    for name, row in secrets.items():
        if name not in live:
            s.delete(row)
    for name, (ref, value) in plan.secrets.items():
        row = secrets.get(name) or tables.Secret(provider=name)
        row.env_ref, row.ciphertext = ref, box.encrypt(value)  # type: ignore[union-attr]
        row.fingerprint, row.updated_at = fingerprint(value), now
        s.add(row)
    rev = tables.Revision(applied_at=now, source=source[:500], checksum=checksum(plan.merged),
                          summary=plan.counts())
    s.add(rev)
    s.flush()
    return rev.id


def _sync_setting(s: Session, key: str, value: dict | None) -> None:
    row = s.get(tables.Setting, key)
    if value:
        if row is None:
            s.add(tables.Setting(key=key, value=value))
        elif row.value != value:
            row.value = value
    elif row is not None:
        s.delete(row)


def _sync_providers(s: Session, providers: list[dict], now: float) -> None:
    rows = {p.name: p for p in s.scalars(select(tables.Provider))}
    wanted = {p["name"] for p in providers}
    for name, row in rows.items():
        if name not in wanted:
            s.delete(row)
    for pos, p in enumerate(providers):
        spec = {k: v for k, v in p.items() if k != "models"}
        row = rows.get(p["name"])
        if row is None:
            row = tables.Provider(name=p["name"], created_at=now)
            s.add(row)
        if (row.kind, row.spec, row.position) != (p["kind"], spec, pos):
            row.kind, row.spec, row.position, row.updated_at = p["kind"], spec, pos, now
        models = {m.name: m for m in row.models}
        want_models = [m["name"] for m in p.get("models", [])]
        for name, m in models.items():
            if name not in want_models:
                row.models.remove(m)
        for mpos, m in enumerate(p.get("models", [])):
            mrow = models.get(m["name"])
            if mrow is None:
                mrow = tables.ProviderModel(name=m["name"])
                row.models.append(mrow)
            if (mrow.spec, mrow.position) != (m, mpos):
                mrow.spec, mrow.position = m, mpos


def _sync_routes(s: Session, routes: list[dict], now: float) -> None:
    rows = {r.key: r for r in s.scalars(select(tables.Route))}
    wanted = {route_key(r) for r in routes}
    for key, row in rows.items():
        if key not in wanted:
            s.delete(row)
    s.flush()  # free unique keys before re-adding
    for pos, r in enumerate(routes):
        key = route_key(r)
        row = rows.get(key)
        if row is None:
            row = tables.Route(key=key, created_at=now)
            s.add(row)
        (mtype, pattern), = r["match"].items()
        if (row.spec, row.position) != (r, pos):
            row.match_type, row.pattern, row.target = mtype, pattern, r["target"]
            row.spec, row.position, row.updated_at = r, pos, now
