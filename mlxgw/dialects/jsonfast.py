"""One place that picks the fastest JSON codec available (orjson when installed, else the standard
library), and `parse_body`, the one way a client's body becomes data.

The hot path parses and serialises every body, so the codec is worth a few percent of throughput. A
client's body must also come out as data every later step can handle: valid UTF-8 with no lone
surrogate (a string holding one cannot be encoded again: not upstream, not into the audit log), and
nested no deeper than MAX_DEPTH (the translators recurse, and the standard library's decoder and
encoder raise RecursionError near 1,000 levels)."""

from __future__ import annotations

import json
import re

try:  # pragma: no cover - depends on the environment
    import orjson

    dumps = orjson.dumps  # itself, not a function calling it: one Python call less per use
    loads = orjson.loads
    DecodeError: tuple = (orjson.JSONDecodeError, ValueError, TypeError)
    # orjson reads bytes, and refuses invalid UTF-8 and lone surrogate escapes itself.
    _READS_BYTES = True
except ImportError:  # pragma: no cover
    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    loads = json.loads
    DecodeError = (ValueError, TypeError)
    _READS_BYTES = False

# Far deeper than any real request (the deepest tool schemas real clients send nest about 20 levels),
# far below the interpreter's recursion limit.
MAX_DEPTH = 128
# A \uD800-\uDFFF escape: the only way valid UTF-8 JSON text can produce a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BodyError(ValueError):
    """A body that is not usable JSON; `reason` says why, in words for the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def parse_body(raw: bytes, max_depth: int = MAX_DEPTH):
    """`raw` as data, or BodyError: not UTF-8, not JSON, a lone surrogate, or nested too deep."""
    if _READS_BYTES:  # the common body in one C call; a bad one is read again below to say why
        try:
            obj = loads(raw)
        except (*DecodeError, RecursionError):
            pass
        else:
            # (a body no longer than the limit cannot hold more brackets than it: no scan)
            if len(raw) > max_depth and raw.count(b"[") + raw.count(b"{") > max_depth:
                _check(obj, max_depth, False)
            return obj
    try:
        text = raw.decode("utf-8")  # strict: refuses invalid bytes and UTF-8-encoded surrogates
    except UnicodeDecodeError as exc:
        raise BodyError(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = loads(text)
    except RecursionError:
        raise BodyError(f"the JSON is nested deeper than {max_depth} levels") from None
    except DecodeError:
        raise BodyError("the body is not valid JSON") from None
    # Walk only when the text could break a rule: more brackets than the depth limit, or a surrogate escape.
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if surrogates or text.count("[") + text.count("{") > max_depth:
        _check(obj, max_depth, surrogates)
    return obj


def _check(obj, max_depth: int, surrogates: bool) -> None:
    """Depth and lone surrogates, iteratively (a recursive walk would fail where it is needed)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        if depth > max_depth:
            raise BodyError(f"the JSON is nested deeper than {max_depth} levels")
        for k, v in items:
            if surrogates:
                if isinstance(k, str):
                    _encodable(k)
                if isinstance(v, str):
                    _encodable(v)
            if isinstance(v, (dict, list)):
                stack.append((v, depth + 1))
    if surrogates and isinstance(obj, str):
        _encodable(obj)


def _encodable(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BodyError(f"the body holds a lone surrogate escape (\\u{ord(s[exc.start]):04x}), "
                        "which is not valid Unicode") from None
