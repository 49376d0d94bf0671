"""Durations as written in gateway.yaml: 500ms, 30s, 10m, 1h; and days (30d) where the schema allows them
(retention periods)."""

from __future__ import annotations

import re

_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_ms(text: str) -> int:
    """Milliseconds in a duration string; ValueError if it is not one."""
    m = _RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 10m, 1h, 30d)")
    return round(float(m.group(1)) * _UNIT_MS[m.group(2)])


def parse_seconds(text: str) -> float:
    return parse_ms(text) / 1000


def format_ms(ms: int, days: bool = False) -> str:
    """The canonical spelling: the largest unit that divides the value exactly (90s, not 1.5m); days only
    when `days` (where the schema allows them)."""
    for unit in ("d", "h", "m", "s") if days else ("h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def canonical(text: str, days: bool = False) -> str:
    return format_ms(parse_ms(text), days)
