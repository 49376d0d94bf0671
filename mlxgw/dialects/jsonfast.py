"""One place that picks the fastest JSON codec available: orjson when installed, else the standard
library. The hot path parses and serialises every body, so this is worth a few percent of throughput."""

from __future__ import annotations

import json

try:  # pragma: no cover - depends on the environment
    import orjson

    def dumps(obj) -> bytes:
        return orjson.dumps(obj)

    loads = orjson.loads
    DecodeError: tuple = (orjson.JSONDecodeError, ValueError, TypeError)
except ImportError:  # pragma: no cover
    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    loads = json.loads
    DecodeError = (ValueError, TypeError)
