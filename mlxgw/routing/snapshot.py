"""The Snapshot: everything the request path needs from the config, compiled once, never mutated.

The server builds one at start and builds a fresh one whenever the store's revision moves, then swaps a
single reference; a request keeps the Snapshot it started with. Hence: no database, no regex compilation
and no timeout arithmetic per request.

Route precedence (GATE-03): an exact match, else the LONGEST matching prefix (ties: declared order), else
the first regex in declared order that `re.search`es the name (a regex anchors itself with ^ and $).
Regexes run on RE2 with Python's meaning (`mlxgw.regex`), and answers are cached per model name.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from mlxgw import kinds
from mlxgw.backends.base import Timeouts
from mlxgw.config import durations
from mlxgw.regex import Matcher
from mlxgw.routing.policy import DEFAULT_COOLDOWN, RetryPolicy
from mlxgw.supervisor.models import DEFAULT_IDLE_TTL, DEFAULT_START_TIMEOUT, LaunchSpec, LocalModel, ModelSettings

DEFAULT_TIMEOUTS = Timeouts()
ROUTE_CACHE = 4096  # model names whose route each Snapshot remembers (least recently used go first)

# Local engines prefill on the machine's own GPU: an agent's 30k-token prompt can take minutes before its
# first token, so their built-in first_token is 10 minutes (and total 30), not a cloud's 60 s. `idle`
# counts only after the first token. Config `defaults.timeouts`, then the provider's and the route's
# `timeouts`, still override these.
LOCAL_TIMEOUTS = Timeouts(first_token=600.0, total=1800.0)


def kind_timeouts(kind: str) -> Timeouts:
    """The built-in timeouts of a provider kind (before any config)."""
    return LOCAL_TIMEOUTS if kinds.is_local(kind) else DEFAULT_TIMEOUTS


def merge_timeouts(base: Timeouts, overrides: dict | None) -> Timeouts:
    """`base` with the durations written in `overrides` (a config `timeouts` mapping) applied."""
    if not overrides:
        return base
    values = {k: durations.parse_seconds(v) for k, v in overrides.items() if k in Timeouts.__slots__}
    return Timeouts(**{**{k: getattr(base, k) for k in Timeouts.__slots__}, **values})


def merge_retry(base: RetryPolicy, spec: dict | None) -> RetryPolicy:
    """`base` with the fields of a config `retry` mapping applied."""
    if not spec:
        return base
    return RetryPolicy(
        attempts=int(spec.get("attempts", base.attempts)),
        backoff=durations.parse_seconds(spec["backoff"]) if spec.get("backoff") else base.backoff,
        max_backoff=durations.parse_seconds(spec["max_backoff"]) if spec.get("max_backoff") else base.max_backoff,
    )


def local_models(kind: str, spec: dict) -> tuple[LocalModel, ...]:
    """The models of a provider the gateway launches itself (a local kind without a `base_url`), typed
    for the supervisor. A launch `command` of "" means the engine's own executable."""
    if not kinds.is_local(kind) or spec.get("base_url"):
        return ()
    out = []
    for m in spec.get("models") or []:
        launch = LaunchSpec(
            kind=kind, command=os.path.expanduser(spec["command"]) if spec.get("command") else "",
            path=str(Path(m.get("path") or "").expanduser()),
            args=tuple(spec.get("args") or ()) + tuple(m.get("args") or ()),
            env=tuple(sorted((spec.get("env") or {}).items())),
        )
        settings = ModelSettings(
            aliases=tuple(m.get("aliases") or ()),
            idle_ttl=durations.parse_seconds(m["idle_ttl"]) if m.get("idle_ttl") else DEFAULT_IDLE_TTL,
            start_timeout=durations.parse_seconds(m["start_timeout"]) if m.get("start_timeout")
            else DEFAULT_START_TIMEOUT,
            context_length=m.get("context_length"),
            on_overflow=m.get("on_overflow") or "clamp",
            defaults=dict(m.get("defaults") or {}),
            max_loaded=spec.get("max_loaded"),
        )
        out.append(LocalModel(m["name"], launch, settings))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    kind: str
    spec: dict  # canonical provider spec (models included)
    api_key: str | None
    timeouts: Timeouts
    models: tuple[str, ...] = ()
    aliases: dict = field(default_factory=dict)  # alias or name -> model name
    retry: RetryPolicy = RetryPolicy()
    cooldown: float = DEFAULT_COOLDOWN  # seconds a failing provider is skipped (0: never)
    local_models: tuple[LocalModel, ...] = ()  # the models the gateway launches itself, for the supervisor

    @property
    def local(self) -> bool:
        return kinds.is_local(self.kind)

    def resolve(self, model: str) -> str:
        return self.aliases.get(model, model)


@dataclass(frozen=True, slots=True)
class Target:
    """One place a request may go. `model` None means the requested name passes through."""

    provider: str
    model: str | None
    timeouts: Timeouts

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}" if self.model else self.provider


@dataclass(frozen=True, slots=True)
class Route:
    key: str  # the route's name, else "kind:pattern"
    match_type: str
    pattern: str
    targets: tuple[Target, ...]
    max_wait: float | None = None  # how long a client may wait for a cold local model
    on_cold: str = "wait"  # failover | wait | retry_later (failover when only max_wait is set)
    # The attempt loop's plan of this route per client dialect (`server.attempts.steps`: each target's
    # backend, pair, retry policy... looked up once, not per request). It lives and dies with the
    # Snapshot, so a reload never sees an old one; at most one entry per dialect.
    steps: dict = field(default_factory=dict, init=False, repr=False, compare=False)


class Snapshot:
    """Immutable view of one config revision. Build with Snapshot(config, keys, revision)."""

    __slots__ = ("revision", "providers", "routes", "_exact", "_prefixes", "_regexes", "_models", "defaults",
                 "response_retention", "audit_retention", "audit_max_rows", "_cached")

    def __init__(self, config: dict, keys: dict | None = None, revision: int = 0):
        keys = keys or {}
        self.revision = revision
        d = config.get("defaults") or {}
        retention = (config.get("responses") or {}).get("retention")
        # Stored Responses API responses are kept this long (None: the store's default, 30 days).
        self.response_retention = durations.parse_seconds(retention) if retention else None
        self.defaults = merge_timeouts(DEFAULT_TIMEOUTS, d.get("timeouts"))
        audit = config.get("audit") or {}  # what the server's background pruning keeps (None: no limit)
        self.audit_retention = durations.parse_seconds(audit["retention"]) if audit.get("retention") else None
        self.audit_max_rows: int | None = audit.get("max_rows")
        retry = merge_retry(RetryPolicy(), d.get("retry"))
        cooldown = durations.parse_seconds(d["cooldown"]) if d.get("cooldown") else DEFAULT_COOLDOWN
        providers: dict[str, Provider] = {}
        for p in config.get("providers") or []:
            names, aliases = [], {}
            for m in p.get("models") or []:
                names.append(m["name"])
                aliases[m["name"]] = m["name"]
                for a in m.get("aliases") or []:
                    aliases.setdefault(a, m["name"])
            providers[p["name"]] = Provider(
                name=p["name"], kind=p["kind"], spec=p, api_key=keys.get(p["name"]),
                timeouts=merge_timeouts(merge_timeouts(kind_timeouts(p["kind"]), d.get("timeouts")),
                                        p.get("timeouts")),
                models=tuple(names), aliases=aliases,
                retry=merge_retry(retry, p.get("retry")),
                cooldown=durations.parse_seconds(p["cooldown"]) if p.get("cooldown") else cooldown,
                local_models=local_models(p["kind"], p),
            )
        self.providers = providers
        specs = list(config.get("routes") or [])
        by_name = {r["name"]: r for r in specs if r.get("name")}
        routes, exact, prefixes, regexes = [], {}, [], []
        for r in specs:
            (mtype, pattern), = r["match"].items()
            key = r.get("name") or f"{mtype}:{pattern}"
            targets = tuple(
                Target(provider=prov, model=model,
                       timeouts=merge_timeouts(providers[prov].timeouts if prov in providers else self.defaults,
                                               r.get("timeouts")))
                for prov, model in self._chain(r, by_name, providers)
            )
            max_wait = durations.parse_seconds(r["max_wait"]) if r.get("max_wait") else None
            on_cold = r.get("on_cold") or ("failover" if max_wait is not None else "wait")
            route = Route(key=key, match_type=mtype, pattern=pattern, targets=targets, max_wait=max_wait,
                          on_cold=on_cold)
            routes.append(route)
            if mtype == "exact":
                exact.setdefault(pattern, route)
            elif mtype == "prefix":
                prefixes.append(route)
            else:
                regexes.append((Matcher(pattern), route))
        # Longest first; sorted() is stable, so equal lengths keep declared order.
        prefixes.sort(key=lambda rt: len(rt.pattern), reverse=True)
        self.routes = tuple(routes)
        self._exact = exact
        self._prefixes = tuple((rt.pattern, rt) for rt in prefixes)
        self._regexes = tuple(regexes)
        self._models = self._list_models()
        self._cached = functools.lru_cache(maxsize=ROUTE_CACHE)(self._route)

    @staticmethod
    def _parse_target(text: str, providers: dict) -> tuple[str, str | None]:
        prov, _, model = text.partition("/")
        if model and prov in providers:
            model = providers[prov].resolve(model)
        return prov, model or None

    def _chain(self, route: dict, by_name: dict, providers: dict, seen: set | None = None) -> list:
        """The route's ordered targets: target, then each fallback; `@name` expands to that route's own
        chain. Duplicates and reference cycles are dropped."""
        seen = set() if seen is None else seen
        if route.get("name"):
            seen.add(route["name"])
        out: list = []
        for entry in [route["target"], *(route.get("fallback") or [])]:
            if entry.startswith("@"):
                ref = by_name.get(entry[1:])
                items = [] if ref is None or entry[1:] in seen else self._chain(ref, by_name, providers, seen)
            else:
                items = [self._parse_target(entry, providers)]
            for item in items:
                if item not in out:
                    out.append(item)
        return out

    # Read-only views of the resolver's tables (the UI draws the precedence from them).

    @property
    def exact_routes(self) -> MappingProxyType:
        """name -> the exact route that answers it (the first declared one when names repeat)."""
        return MappingProxyType(self._exact)

    @property
    def prefix_routes(self) -> tuple[tuple[str, Route], ...]:
        """(prefix, route) pairs, longest prefix first, ties in declared order."""
        return self._prefixes

    @property
    def regex_routes(self) -> tuple[Route, ...]:
        """The regex routes in declared order."""
        return tuple(rt for _, rt in self._regexes)

    def route(self, model: str) -> Route | None:
        return self._cached(model) if len(model) <= 256 else self._route(model)

    def _route(self, model: str) -> Route | None:
        r = self._exact.get(model)
        if r is not None:
            return r
        for prefix, r in self._prefixes:
            if model.startswith(prefix):
                return r
        for rx, r in self._regexes:
            if rx.search(model):
                return r
        return None

    def backend_model(self, target: Target, requested: str) -> str:
        """The model name sent to the target's backend."""
        if target.model:
            return target.model
        p = self.providers.get(target.provider)
        return p.resolve(requested) if p else requested

    def _list_models(self) -> tuple[tuple[str, str], ...]:
        out: dict[str, str] = {}
        for r in self.routes:
            if r.match_type == "exact":
                out.setdefault(r.pattern, r.targets[0].provider if r.targets else "mlxgw")
        for p in self.providers.values():
            for name in p.aliases:  # names and aliases, in declared order
                out.setdefault(name, p.name)
        return tuple(out.items())

    def models(self) -> tuple[tuple[str, str], ...]:
        """(model id, owner) pairs a client can ask for: exact-route names, then every declared model
        name and alias of every provider."""
        return self._models
