"""What an apply would change: a pure comparison of the store's canonical config with a file's.

`make_plan` returns the changes entity by entity (+ add, ~ change, - remove, = kept because it is not in
the file and --prune was not given) and the merged config the store will hold afterwards. Secret values
are compared here but never shown: a change prints fingerprints only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from mlxgw.config.canonical import SETTINGS, route_key
from mlxgw.fingerprints import fingerprint

_MASKED_PREFIXES = ("headers.", "env.")


@dataclass
class Change:
    op: str  # + ~ - =
    kind: str  # defaults | responses | audit | server | provider | model | route | secret | order
    key: str
    details: list[str] = field(default_factory=list)

    def format(self) -> str:
        head = f"{self.op} {self.kind} {self.key}"
        return head + (": " + "; ".join(self.details) if self.details else "")

    def as_dict(self) -> dict:
        return {"op": self.op, "kind": self.kind, "key": self.key, "details": self.details}


@dataclass
class Plan:
    changes: list[Change]
    merged: dict  # canonical config the store holds after apply
    secrets: dict  # provider -> (env_ref, value) to write
    base: str = ""  # checksum of the config the plan was made from; apply refuses if the store moved

    @property
    def has_changes(self) -> bool:
        return any(c.op != "=" for c in self.changes)

    def counts(self) -> dict:
        out = {"add": 0, "change": 0, "remove": 0, "kept": 0}
        names = {"+": "add", "~": "change", "-": "remove", "=": "kept"}
        for c in self.changes:
            out[names[c.op]] += 1
        return out


def checksum(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and (value or not prefix):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: value}


def _field_changes(old: dict, new: dict) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    out = []
    for k in list(a) + [k for k in b if k not in a]:
        if a.get(k) == b.get(k):
            continue
        if k.startswith(_MASKED_PREFIXES):
            out.append(f"{k} changed")
        elif k not in a:
            out.append(f"{k} = {_show(b[k])}")
        elif k not in b:
            out.append(f"{k} removed (was {_show(a[k])})")
        else:
            out.append(f"{k}: {_show(a[k])} -> {_show(b[k])}")
    return out


def _show(v) -> str:
    return json.dumps(v) if not isinstance(v, str) else v


def _compare(kind: str, old: dict[str, dict], new: dict[str, dict], kept: set[str]) -> list[Change]:
    out = []
    for key, spec in new.items():
        if key not in old:
            out.append(Change("+", kind, key, _field_changes({}, spec)))
        elif key in kept:
            out.append(Change("=", kind, key, ["not in the file; kept (apply --prune removes it)"]))
        elif old[key] != spec:
            out.append(Change("~", kind, key, _field_changes(old[key], spec)))
    out += [Change("-", kind, key) for key in old if key not in new]
    return out


def _merge(current: list[dict], desired: list[dict], key, prune: bool) -> tuple[list[dict], set[str]]:
    names = {key(x) for x in desired}
    kept = [] if prune else [x for x in current if key(x) not in names]
    return list(desired) + kept, {key(x) for x in kept}


def make_plan(current: dict, desired: dict, current_secrets: dict, desired_secrets: dict, prune: bool) -> Plan:
    """current/desired: canonical configs. current_secrets: provider -> (env_ref, value in clear).
    desired_secrets: provider -> (env_ref, value, or None to keep what the store has)."""
    changes: list[Change] = []
    for section in SETTINGS:  # top-level settings: one change each
        old, new = current.get(section, {}), desired.get(section, {})
        if old != new:
            op = "+" if not old else "-" if not new else "~"
            changes.append(Change(op, section, section, _field_changes(old, new)))

    cur_p = {p["name"]: p for p in current.get("providers", [])}
    providers, kept_p = _merge(current.get("providers", []), desired.get("providers", []), lambda p: p["name"], prune)
    merged_providers = []
    old_models: dict[str, dict] = {}
    new_models: dict[str, dict] = {}
    kept_models: set[str] = set()
    for p in providers:
        old_list = cur_p.get(p["name"], {}).get("models", [])
        models, kept = (p.get("models", []), set()) if p["name"] in kept_p else _merge(
            old_list, p.get("models", []), lambda m: m["name"], prune)
        merged = dict(p)
        merged.pop("models", None)
        if models:
            merged["models"] = models
        merged_providers.append(merged)
        new_models.update({f"{p['name']}/{m['name']}": m for m in models})
        kept_models.update(f"{p['name']}/{k}" for k in kept)
        old_order = [m["name"] for m in old_list]
        new_order = [m["name"] for m in models]
        if p["name"] in cur_p and set(old_order) == set(new_order) and old_order != new_order:
            changes.append(Change("~", "order", f"models of {p['name']}", [f"{old_order} -> {new_order}"]))
    for name, p in cur_p.items():
        old_models.update({f"{name}/{m['name']}": m for m in p.get("models", [])})

    strip = lambda p: {k: v for k, v in p.items() if k != "models"}  # noqa: E731
    changes += _compare("provider", {n: strip(p) for n, p in cur_p.items()},
                        {p["name"]: strip(p) for p in merged_providers}, kept_p)
    changes += _compare("model", old_models, new_models,
                        kept_models | {k for k in new_models if k.split("/")[0] in kept_p})

    cur_r = {route_key(r): r for r in current.get("routes", [])}
    routes, kept_r = _merge(current.get("routes", []), desired.get("routes", []), route_key, prune)
    changes += _compare("route", cur_r, {route_key(r): r for r in routes}, kept_r)
    old_order, new_order = list(cur_r), [route_key(r) for r in routes]
    if set(old_order) == set(new_order) and old_order != new_order:
        changes.append(Change("~", "order", "routes", [f"{', '.join(old_order)} -> {', '.join(new_order)}"]))

    secrets = {}
    live = {p["name"] for p in merged_providers}
    for name, (ref, value) in desired_secrets.items():
        old = current_secrets.get(name)
        if value is None:
            continue
        if old is None:
            changes.append(Change("+", "secret", name, [f"api_key from {ref} ({fingerprint(value)})"]))
        elif old[1] != value or old[0] != ref:
            what = f"{old[0] or 'set-key'} -> {ref}" if old[0] != ref else ref
            changes.append(Change("~", "secret", name,
                                  [f"api_key from {what} ({fingerprint(old[1] or '')} -> {fingerprint(value)})"]))
        else:
            continue
        secrets[name] = (ref, value)
    changes += [Change("-", "secret", n) for n in current_secrets if n not in live]

    merged = {"version": 1}
    for section in SETTINGS:
        if desired.get(section):
            merged[section] = desired[section]
    merged["providers"] = merged_providers
    merged["routes"] = routes
    return Plan(changes, merged, secrets, checksum(current))
