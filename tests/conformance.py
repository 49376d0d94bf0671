"""Conformance checks against OpenAI's published chat-completions schemas.

The schema bundle is ``../shared/conformance/openai-chat.schema.json`` (relative to the repository root),
a JSON Schema 2020-12 document whose only payload is ``$defs``: one entry per OpenAPI component
(``CreateChatCompletionResponse``, ``CreateChatCompletionStreamResponse``, ``ListModelsResponse``,
``ErrorResponse``, ``CreateChatCompletionRequest``, ``Model``, ``CompletionUsage``, ...). Every ``$ref`` in it
is local (``#/$defs/NAME``), so a body of kind NAME is validated against ``{"$ref": "#/$defs/NAME"}``
evaluated inside the bundle.

Where the bundle is found: the directory named by ``MLXGW_CONFORMANCE_DIR`` if set, else the copy vendored
in ``tests/data/`` (a test keeps it identical to ``../shared/conformance`` whenever that is present).

Interface::

    from tests import conformance            # or: import conformance (tests/ on sys.path)

    conformance.validate("CreateChatCompletionResponse", body)        # raises AssertionError
    conformance.validate_chunks(chunks)       # every chunk is a CreateChatCompletionStreamResponse
    conformance.validate_sse(raw_text)        # parse an SSE body: chunks validate, ends with [DONE]
    conformance.errors("ErrorResponse", body) # list of readable messages, empty when valid
    conformance.is_valid(kind, body)          # bool
    conformance.kinds()                       # every name in $defs

The Responses API has its own bundle, ``openai-responses.schema.json`` (``Response``, ``ResponseStreamEvent``,
``CreateResponse``, ``ResponseItemList``, ``ErrorResponse``), vendored and found the same way; its helpers::

    conformance.validate_responses("Response", body)   # any kind of that bundle
    conformance.validate_response(body)                # a Response object (known gap below)
    conformance.validate_response_events(events)       # ResponseStreamEvent each, sequence_number 0,1,2...
    conformance.validate_response_sse(raw_text)        # parse `event:`/`data:` pairs, validate, return events

Known gap: the live API sends ``"user": null`` where the description says string; ``validate_response``
accepts that one deviation (it drops a null ``user`` before validating), nothing else.

The bundle is loaded once, at first use, and each kind's validator is compiled once and cached. Validation
uses the 2020-12 format checker (``date`` is checked; ``unixtime`` is not a standard format and is ignored).
An unknown kind raises ``KeyError`` listing the known ones. ``AssertionError`` messages list every
violation (up to 20) as ``<json path>: <message>`` followed by the offending body (truncated), so a failing
test says what is wrong without a debugger.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Iterable

from jsonschema import Draft202012Validator

SCHEMA_FILE = "openai-chat.schema.json"
RESPONSES_SCHEMA_FILE = "openai-responses.schema.json"

# The kinds the gateway's responses are checked against, for convenience in tests.
CHAT_RESPONSE = "CreateChatCompletionResponse"
CHAT_CHUNK = "CreateChatCompletionStreamResponse"
MODELS = "ListModelsResponse"
ERROR = "ErrorResponse"
CHAT_REQUEST = "CreateChatCompletionRequest"
RESPONSE = "Response"
RESPONSE_EVENT = "ResponseStreamEvent"
RESPONSE_REQUEST = "CreateResponse"
RESPONSE_ITEMS = "ResponseItemList"

_MAX_REPORTED = 20
_MAX_BODY_CHARS = 2000


VENDORED = Path(__file__).resolve().parent / "data" / SCHEMA_FILE
SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance" / SCHEMA_FILE
VENDORED_RESPONSES = VENDORED.parent / RESPONSES_SCHEMA_FILE
SHARED_RESPONSES = SHARED.parent / RESPONSES_SCHEMA_FILE


def schema_path(name: str = SCHEMA_FILE) -> Path:
    """$MLXGW_CONFORMANCE_DIR's bundle if set, else the copy vendored in tests/data (kept identical to
    ../shared/conformance by tests/test_upstream.py, so a clone without shared/ beside it still tests)."""
    env = os.environ.get("MLXGW_CONFORMANCE_DIR")
    if env:
        candidate = Path(env).expanduser() / name
        if candidate.is_file():
            return candidate
        raise FileNotFoundError(f"MLXGW_CONFORMANCE_DIR={env!r} does not contain {name}")
    return VENDORED.parent / name


@functools.lru_cache(maxsize=2)
def bundle(name: str = SCHEMA_FILE) -> dict[str, Any]:
    """The parsed schema bundle (loaded once)."""
    with schema_path(name).open("r", encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc.get("$defs"), dict):
        raise ValueError(f"{schema_path(name)}: expected a JSON Schema bundle with $defs")
    for key, sub in doc["$defs"].items():
        if isinstance(sub, dict) and sub.pop("$recursiveAnchor", None):
            _unrecurse(sub, f"#/$defs/{key}")
    Draft202012Validator.check_schema(doc)
    return doc


def _unrecurse(node: Any, target: str) -> None:
    """Draft 2019-09's `$recursiveAnchor`/`$recursiveRef: "#"` (the Responses bundle's CompoundFilter uses
    them; 2020-12 does not know them) rewritten in memory as a plain `$ref` to the component itself."""
    if isinstance(node, dict):
        if node.get("$recursiveRef") == "#":
            del node["$recursiveRef"]
            node["$ref"] = target
        for value in node.values():
            _unrecurse(value, target)
    elif isinstance(node, list):
        for value in node:
            _unrecurse(value, target)


def kinds(name: str = SCHEMA_FILE) -> list[str]:
    """Every component name the bundle defines (valid values for ``kind``)."""
    return sorted(bundle(name)["$defs"])


@functools.lru_cache(maxsize=None)
def validator(kind: str, name: str = SCHEMA_FILE) -> Draft202012Validator:
    """The compiled validator for one component (cached per kind)."""
    doc = bundle(name)
    if kind not in doc["$defs"]:
        raise KeyError(f"unknown conformance kind {kind!r}; known kinds: {', '.join(kinds(name))}")
    # Root schema = the bundle itself plus a $ref to the component, so "#/$defs/..." refs resolve in it.
    schema = {key: value for key, value in doc.items() if key != "$comment"}
    schema["$ref"] = f"#/$defs/{kind}"
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _path(error) -> str:
    out = "$"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _leaf_errors(error) -> Iterable:
    """Descend into anyOf/oneOf failures so the message names the real culprit, not 'is not valid'."""
    if error.context:
        # Prefer the branch whose errors are deepest (the one that got furthest).
        best = max(error.context, key=lambda e: (len(e.absolute_path), -len(e.context or [])))
        yield from _leaf_errors(best)
    else:
        yield error


def errors(kind: str, obj: Any, name: str = SCHEMA_FILE) -> list[str]:
    """Readable violations of ``obj`` against component ``kind``; empty when it conforms."""
    found = sorted(validator(kind, name).iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    messages: list[str] = []
    for err in found:
        leaf = next(iter(_leaf_errors(err)))
        msg = f"{_path(err)}: {err.message}"
        if leaf is not err:
            msg += f" (deepest branch: {_path(leaf)}: {leaf.message})"
        messages.append(msg)
    return messages


def is_valid(kind: str, obj: Any, name: str = SCHEMA_FILE) -> bool:
    return validator(kind, name).is_valid(obj)


def validate(kind: str, obj: Any, name: str = SCHEMA_FILE) -> None:
    """Assert that ``obj`` conforms to component ``kind``; AssertionError lists every violation."""
    problems = errors(kind, obj, name)
    if not problems:
        return
    shown = problems[:_MAX_REPORTED]
    more = len(problems) - len(shown)
    try:
        body = json.dumps(obj, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        body = repr(obj)
    if len(body) > _MAX_BODY_CHARS:
        body = body[:_MAX_BODY_CHARS] + f"... ({len(body)} chars)"
    lines = [f"{kind}: {len(problems)} violation(s)"]
    lines += [f"  - {p}" for p in shown]
    if more:
        lines.append(f"  ... and {more} more")
    lines.append(f"  body: {body}")
    raise AssertionError("\n".join(lines))


def validate_chunks(chunks: Iterable[Any], kind: str = CHAT_CHUNK) -> list[Any]:
    """Validate every stream chunk (dicts); returns them as a list. The message names the chunk index."""
    out = list(chunks)
    for i, chunk in enumerate(out):
        try:
            validate(kind, chunk)
        except AssertionError as exc:
            raise AssertionError(f"stream chunk #{i}: {exc}") from None
    return out


def parse_sse(text: str) -> tuple[list[Any], bool]:
    """Split an SSE body into its JSON data payloads; returns (payloads, saw_done).

    Multi-line ``data:`` fields of one event are joined with newlines, as the SSE spec says; comments
    (``:``) and other fields (``event:``, ``id:``) are ignored.
    """
    payloads: list[Any] = []
    done = False
    data_lines: list[str] = []

    def flush() -> None:
        nonlocal done
        if not data_lines:
            return
        data = "\n".join(data_lines)
        data_lines.clear()
        if data.strip() == "[DONE]":
            done = True
        else:
            if done:
                raise AssertionError(f"SSE data after [DONE]: {data[:200]!r}")
            payloads.append(json.loads(data))

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            flush()
        elif line.startswith(":"):
            continue
        elif line.startswith("data:"):
            value = line[5:]
            data_lines.append(value[1:] if value.startswith(" ") else value)
    flush()
    return payloads, done


def validate_sse(text: str, *, require_done: bool = True, kind: str = CHAT_CHUNK) -> list[Any]:
    """Validate a whole SSE chat-completions body: every data payload is a chunk, and it ends with [DONE]."""
    payloads, done = parse_sse(text)
    if require_done and not done:
        raise AssertionError(f"SSE stream did not end with 'data: [DONE]' ({len(payloads)} chunks)")
    return validate_chunks(payloads, kind)


# --- the Responses API bundle -----------------------------------------------------------------------


def validate_responses(kind: str, obj: Any) -> None:
    """Assert that ``obj`` conforms to component ``kind`` of the Responses bundle."""
    validate(kind, obj, RESPONSES_SCHEMA_FILE)


def _without_null_user(obj: Any) -> Any:
    # The known gap: the live API sends "user": null, the description says string.
    if isinstance(obj, dict) and "user" in obj and obj["user"] is None:
        return {k: v for k, v in obj.items() if k != "user"}
    return obj


def validate_response(obj: Any) -> None:
    """A Response object (a null ``user`` tolerated, see the module docstring)."""
    validate_responses(RESPONSE, _without_null_user(obj))


def validate_response_events(events: Iterable[Any]) -> list[Any]:
    """Every event is a ResponseStreamEvent and sequence_number counts 0, 1, 2...; returns them."""
    out = list(events)
    for i, ev in enumerate(out):
        if isinstance(ev, dict) and isinstance(ev.get("response"), dict):
            ev = {**ev, "response": _without_null_user(ev["response"])}
        try:
            validate_responses(RESPONSE_EVENT, ev)
        except AssertionError as exc:
            raise AssertionError(f"stream event #{i}: {exc}") from None
        if ev.get("sequence_number") != i:
            raise AssertionError(f"stream event #{i} has sequence_number {ev.get('sequence_number')!r}")
    return out


def parse_response_sse(text: str) -> list[tuple[str | None, Any]]:
    """(event name, decoded data) pairs of a Responses SSE body, in order. A ``[DONE]`` is an error (the
    Responses API never sends one)."""
    pairs: list[tuple[str | None, Any]] = []
    name: str | None = None
    data_lines: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") + [""]:
        if line == "":
            if data_lines:
                data = "\n".join(data_lines)
                if data.strip() == "[DONE]":
                    raise AssertionError("a Responses stream sent [DONE]")
                pairs.append((name, json.loads(data)))
            name, data_lines = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            value = line[5:]
            data_lines.append(value[1:] if value.startswith(" ") else value)
    return pairs


def validate_response_sse(text: str) -> list[Any]:
    """Validate a whole Responses SSE body: every event valid, its ``event:`` name equal to its ``type``,
    sequence numbers 0, 1, 2...; returns the decoded events."""
    pairs = parse_response_sse(text)
    for i, (name, ev) in enumerate(pairs):
        if name != ev.get("type"):
            raise AssertionError(f"stream event #{i}: event name {name!r} but type {ev.get('type')!r}")
    return validate_response_events(ev for _, ev in pairs)
