"""Check a loaded gateway.yaml: schema first, then meaning. Every problem is reported, not just the first.

Messages never quote the value of a secret-bearing field (api_key, headers, env), so a key pasted into
the file by mistake does not end up in a terminal or CI log.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from mlxgw import kinds
from mlxgw.config.loader import Document
from mlxgw.config.schema import validator
from mlxgw.errors import Problem
from mlxgw.regex import problem as regex_problem

ENV_REF = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
_SECRET_FIELDS = {"api_key", "headers", "env"}


def env_name(ref: str) -> str | None:
    m = ENV_REF.match(ref) if isinstance(ref, str) else None
    return m.group(1) if m else None


def check(doc: Document, offline: bool = False, environ: dict | None = None) -> list[Problem]:
    problems = schema_problems(doc)
    problems += semantic_problems(doc, offline=offline, environ=os.environ if environ is None else environ)
    problems.sort(key=lambda p: (p.line or 0, p.column or 0, p.path))
    return problems


# --- schema ---------------------------------------------------------------------------------------


def schema_problems(doc: Document) -> list[Problem]:
    if not isinstance(doc.data, dict):
        return [doc.problem((), "the file must be a mapping with version, providers and routes")]
    out = []
    for err in validator().iter_errors(doc.data):
        for path, message in _explain(err):
            out.append(doc.problem(path, message))
    return out


def _is_secret(path) -> bool:
    return any(p in _SECRET_FIELDS for p in path if isinstance(p, str))


def _explain(err) -> list[tuple[tuple, str]]:
    path = tuple(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    kw = err.validator
    shown = "the value" if _is_secret(path) else repr(err.instance)
    if kw == "required":
        missing = err.message.split("'")[1] if "'" in err.message else "a field"
        return [(path, f"missing required field '{missing}'")]
    if kw == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = [k for k in err.instance if k not in schema.get("properties", {})]
        return [(path + (k,), f"unknown field '{k}'; allowed here: {', '.join(allowed)}") for k in extra]
    if kw in ("minProperties", "maxProperties") and path and path[-1] == "match":
        return [(path, "give exactly one of exact, prefix or regex")]
    if kw == "pattern":
        if "env:" in err.validator_value:
            return [
                (
                    path,
                    "must be a ${env:NAME} reference: keep the key in an environment variable, "
                    "or store it with `mlxgw providers set-key`",
                )
            ]
        return [(path, f"{shown} is not valid: {schema.get('description', 'must match ' + err.validator_value)}")]
    if kw == "anyOf":
        return [(path, f"{shown} is not valid: use provider, provider/model or @route-name")]
    if kw == "enum":
        return [(path, f"{shown} is not one of: {', '.join(map(str, err.validator_value))}")]
    if kw == "const":
        return [(path, f"must be {err.validator_value!r}")]
    if kw == "type":
        want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
        return [(path, f"must be {_a(want)}, not {_json_type(err.instance)}")]
    if _is_secret(path):
        return [(path, f"invalid value ({kw})")]
    return [(path, err.message)]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _json_type(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


# --- meaning --------------------------------------------------------------------------------------


def semantic_problems(doc: Document, offline: bool, environ) -> list[Problem]:
    data = doc.data if isinstance(doc.data, dict) else {}
    out: list[Problem] = []
    providers = _dicts(data.get("providers"))
    routes = _dicts(data.get("routes"))

    by_name: dict[str, dict] = {}
    for i, p in providers:
        name = p.get("name")
        if not isinstance(name, str):
            continue
        if name in by_name:
            out.append(doc.problem(("providers", i, "name"), f"duplicate provider name '{name}'"))
        else:
            by_name[name] = p
        out += _provider_problems(doc, i, p, offline, environ)

    route_names: dict[str, int] = {}
    matches: dict[tuple, int] = {}
    for i, r in routes:
        name = r.get("name")
        if isinstance(name, str):
            if name in route_names:
                out.append(doc.problem(("routes", i, "name"), f"duplicate route name '{name}'"))
            else:
                route_names[name] = i
        match = r.get("match")
        if isinstance(match, dict) and len(match) == 1:
            (kind, pattern), = match.items()
            if (kind, pattern) in matches:
                out.append(
                    doc.problem(("routes", i, "match"), f"same match as routes[{matches[(kind, pattern)]}]; merge them")
                )
            else:
                matches[(kind, pattern)] = i
            if kind == "regex" and isinstance(pattern, str):
                why = regex_problem(pattern)
                if why is not None:
                    out.append(doc.problem(("routes", i, "match", "regex"), why))
        target = r.get("target")
        if isinstance(target, str):
            msg = _target_problem(target, by_name)
            if msg:
                out.append(doc.problem(("routes", i, "target"), msg))
        for j, fb in enumerate(r.get("fallback") or [] if isinstance(r.get("fallback"), list) else []):
            if not isinstance(fb, str):
                continue
            if fb.startswith("@"):
                if fb[1:] not in {x.get("name") for _, x in routes}:
                    out.append(doc.problem(("routes", i, "fallback", j), f"no route named '{fb[1:]}'"))
                continue
            msg = _target_problem(fb, by_name)
            if msg:
                out.append(doc.problem(("routes", i, "fallback", j), msg))
            elif fb == target:
                out.append(doc.problem(("routes", i, "fallback", j), "repeats the route's target"))
    out += _cycle_problems(doc, routes)
    return out


def _dicts(value) -> list[tuple[int, dict]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _provider_problems(doc: Document, i: int, p: dict, offline: bool, environ) -> list[Problem]:
    out = []
    kind = p.get("kind")
    at = ("providers", i)
    local = kinds.is_local(kind)
    remote = kind in kinds.KINDS and not local
    if local:
        if "base_url" in p:
            out.append(doc.problem(at + ("base_url",), "local engines get a port from the gateway; remove base_url"))
        if not p.get("models"):
            out.append(doc.problem(at, "a local engine needs at least one model under 'models'"))
        for field in ("api_key", "organization", "project"):
            if field in p:
                out.append(doc.problem(at + (field,), f"'{field}' applies only to cloud providers"))
    elif remote:
        if kind == "openai-compatible" and "base_url" not in p:
            out.append(doc.problem(at, "kind openai-compatible needs a base_url, e.g. http://127.0.0.1:8000/v1"))
        for field in ("command", "args", "env", "max_loaded"):
            if field in p:
                out.append(doc.problem(at + (field,), f"'{field}' applies only to local engines"))
    seen: dict[str, str] = {}
    for j, m in _dicts(p.get("models")):
        mat = at + ("models", j)
        if local and "path" not in m:
            out.append(doc.problem(mat, "missing required field 'path' (the model directory)"))
        if remote:
            for field in ("path", "idle_ttl", "start_timeout", "args"):
                if field in m:
                    out.append(doc.problem(mat + (field,), f"'{field}' applies only to local engines"))
        names = [(mat + ("name",), m.get("name"))]
        names += [(mat + ("aliases", k), a) for k, a in enumerate(m.get("aliases") or [])] if isinstance(
            m.get("aliases"), list
        ) else []
        for where, n in names:
            if not isinstance(n, str):
                continue
            if n in seen:
                out.append(doc.problem(where, f"'{n}' is already a model name or alias in this provider ({seen[n]})"))
            else:
                seen[n] = "name" if where[-1] == "name" else "alias"
    out += _request_problems(doc, at, p)
    var = env_name(p.get("api_key"))
    if var and not offline and not environ.get(var):
        out.append(
            doc.problem(
                at + ("api_key",),
                f"environment variable {var} is not set; export it, or pass --offline to skip this check",
            )
        )
    return out


# Headers the HTTP client owns: a config that sets them can make the upstream see two lengths, or a
# length and chunked (request smuggling).
OWNED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_LINE_BREAK = re.compile(r"[\r\n\x00]")


def _request_problems(doc: Document, at: tuple, p: dict) -> list[Problem]:
    """What the provider puts into upstream requests: no line breaks (header injection), no header the
    HTTP client owns, and a base_url without query, fragment or password (it is shown in messages)."""
    out = []
    for field in ("organization", "project"):
        if isinstance(p.get(field), str) and _LINE_BREAK.search(p[field]):
            out.append(doc.problem(at + (field,), "must not contain a line break (CR, LF) or NUL"))
    headers = p.get("headers")
    for name, value in headers.items() if isinstance(headers, dict) else ():
        where = at + ("headers", name)
        if _LINE_BREAK.search(name) or (isinstance(value, str) and _LINE_BREAK.search(value)):
            out.append(doc.problem(where, "a header name or value must not contain a line break (CR, LF) or NUL"))
        elif name.strip().lower() in OWNED_HEADERS:
            out.append(doc.problem(where, f"the gateway sets '{name}' itself; remove it from headers"))
    url = p.get("base_url")
    if isinstance(url, str):
        try:
            parts = urlsplit(url)
            password = parts.password
        except ValueError:
            return out  # the schema's pattern reports a malformed URL
        if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
            out.append(doc.problem(at + ("base_url",), "base_url must not have a query (?...) or fragment (#...)"))
        if password is not None or parts.username:
            out.append(doc.problem(at + ("base_url",), "base_url must not hold credentials (user:password@): it is "
                                   "shown in messages and listings; put them in api_key or headers"))
        if _LINE_BREAK.search(url):
            out.append(doc.problem(at + ("base_url",), "must not contain a line break (CR, LF) or NUL"))
    return out


def model_names(provider: dict) -> set[str]:
    names = set()
    for m in provider.get("models") or []:
        if isinstance(m, dict):
            names.add(m.get("name"))
            names.update(m.get("aliases") or [])
    return names


def _target_problem(target: str, providers: dict[str, dict]) -> str | None:
    pname, _, model = target.partition("/")
    p = providers.get(pname)
    if p is None:
        known = ", ".join(sorted(providers)) or "none defined"
        return f"no provider named '{pname}' (providers: {known})"
    if not model:
        return None
    declared = model_names(p)
    if (kinds.is_local(p.get("kind")) or declared) and model not in declared:
        return f"provider '{pname}' has no model '{model}' (models: {', '.join(sorted(declared)) or 'none'})"
    return None


def _cycle_problems(doc: Document, routes: list[tuple[int, dict]]) -> list[Problem]:
    edges: dict[str, list[str]] = {}
    index: dict[str, int] = {}
    for i, r in routes:
        name = r.get("name")
        if not isinstance(name, str):
            continue
        index[name] = i
        fbs = r.get("fallback") if isinstance(r.get("fallback"), list) else []
        edges[name] = [f[1:] for f in fbs if isinstance(f, str) and f.startswith("@")]
    out, reported = [], set()
    for start in edges:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in edges.get(node, []):
                if nxt == start:
                    cycle = frozenset(trail)
                    if cycle not in reported:
                        reported.add(cycle)
                        chain = " -> ".join("@" + n for n in trail + [start])
                        out.append(doc.problem(("routes", index[start], "fallback"), f"fallback cycle: {chain}"))
                elif nxt not in trail and nxt in edges:
                    stack.append((nxt, trail + [nxt]))
    return out
