"""The canonical form of a valid config: what the store holds and `mlxgw export` writes.

Canonical means: keys in schema order, durations in their shortest exact spelling (60s -> 1m), empty
lists and mappings dropped. Two files that mean the same thing have the same canonical form, which is
what lets `diff` report "no change" for a file that differs only in spelling.
"""

from __future__ import annotations

from mlxgw.config import durations

PROVIDER_KEYS = (
    "name", "kind", "base_url", "api_key", "organization", "project", "headers", "timeouts", "retry",
    "cooldown", "command", "args", "env", "max_loaded", "models",
)  # fmt: skip
MODEL_KEYS = ("name", "path", "aliases", "idle_ttl", "start_timeout", "context_length", "on_overflow", "args",
              "defaults")
ROUTE_KEYS = ("name", "match", "target", "fallback", "timeouts", "max_wait", "on_cold")
DEFAULTS_KEYS = ("timeouts", "retry", "cooldown")
SERVER_KEYS = ("allowed_hosts", "allow_origins")
AUDIT_KEYS = ("retention", "max_rows")
# Document-level sections kept whole (one store Setting each), in file order.
SETTINGS = ("defaults", "responses", "audit", "server")
_DURATION_FIELDS = {"connect", "first_token", "idle", "total", "cooldown", "idle_ttl", "start_timeout",
                    "backoff", "max_backoff", "max_wait"}  # fmt: skip


def _clean(value, key: str | None = None):
    if isinstance(value, dict):
        out = {k: _clean(v, k) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if key in _DURATION_FIELDS and isinstance(value, str):
        return durations.canonical(value)
    if key == "retention" and isinstance(value, str):
        return durations.canonical(value, days=True)
    return value


def _ordered(d: dict, keys: tuple) -> dict:
    return {k: d[k] for k in keys if k in d and d[k] not in ({}, [], None)}


def model(m: dict) -> dict:
    return _ordered(_clean(m), MODEL_KEYS)


def provider(p: dict, with_models: bool = True) -> dict:
    out = _clean(p)
    if with_models:
        out["models"] = [model(m) for m in p.get("models") or []]
    else:
        out.pop("models", None)
    return _ordered(out, PROVIDER_KEYS)


def route(r: dict) -> dict:
    return _ordered(_clean(r), ROUTE_KEYS)


def defaults(d: dict | None) -> dict:
    return _ordered(_clean(d or {}), DEFAULTS_KEYS)


def responses(r: dict | None) -> dict:
    """The stored responses' settings: a retention spelled in days where it can be (30d, not 720h)."""
    r = r or {}
    return {"retention": durations.canonical(r["retention"], days=True)} if r.get("retention") else {}


def server(d: dict | None) -> dict:
    return _ordered(_clean(d or {}), SERVER_KEYS)


def audit(a: dict | None) -> dict:
    return _ordered(_clean(a or {}), AUDIT_KEYS)


def config(data: dict) -> dict:
    out: dict = {"version": 1}
    for name, section in (("defaults", defaults), ("responses", responses), ("audit", audit), ("server", server)):
        value = section(data.get(name))
        if value:  # an empty section is the same as none
            out[name] = value
    out["providers"] = [provider(p) for p in data.get("providers") or []]
    out["routes"] = [route(r) for r in data.get("routes") or []]
    return out


def route_key(r: dict) -> str:
    """A route's identity across applies: its name, else its match rule."""
    if r.get("name"):
        return r["name"]
    (kind, pattern), = r["match"].items()
    return f"{kind}:{pattern}"


def _str(dumper, value):
    style = '"' if value.startswith(("${", "^", "@")) or value in ("", "y", "n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def to_yaml(data: dict) -> str:
    import yaml  # here, not at the top: the server imports this module and never writes YAML

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(str, _str)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
