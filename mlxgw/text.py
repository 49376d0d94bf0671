"""Text a client controls, made safe to store, echo and print. A leaf module: imports nothing of mlxgw.

- `clip`: a bounded copy for echoing in messages and storing in the audit log, so a 4 MB model name
  costs neither 4 MB of response nor 8 MB of database;
- `storable`: a string every database driver and encoder accepts (lone surrogates replaced);
- `printable`: a string safe on a terminal (control characters, ESC and line breaks escaped).
"""

from __future__ import annotations

import re

# The longest model name a request may carry; longer ones get a 400 naming `model`.
MAX_MODEL_NAME = 256
# Error texts kept in an audit row.
MAX_ERROR_TEXT = 2000

# In a Python str a valid pair is one code point, so any code point in this range is a lone surrogate.
# NUL is refused by PostgreSQL's text columns.
_SURROGATE = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clip(text: str, n: int) -> str:
    """`text` cut to at most `n` characters, ending in "…" when cut."""
    return text if len(text) <= n else text[: max(n - 1, 0)] + "…"


def storable(text: str) -> str:
    """`text` with every lone surrogate and NUL replaced by U+FFFD."""
    if text.isascii() and "\x00" not in text:  # the common text: two C scans, no regex
        return text
    return _SURROGATE.sub("\ufffd", text)


def printable(text: str) -> str:
    """`text` for a terminal: control characters (newlines, ESC, C1, line separators) as escapes."""
    return _CONTROL.sub(_escape, text)


def _escape(m: re.Match) -> str:
    c = m.group()
    if c in _SHORT:
        return _SHORT[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
