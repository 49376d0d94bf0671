"""Python route regexes, translated for the page's resolver (JavaScript `RegExp` with the `u` flag).

The server matches a regex route with Python's `re.search`; the page must give the same answer in a
browser. Python's and JavaScript's regex dialects differ in syntax and, worse, in meaning (`.`, `$`,
`\\d`, `\\w`, `\\s`, `\\b`, `^` under MULTILINE...). So the translation does not rewrite the pattern's
text: it walks the tree Python's own parser (`re._parser`) builds and emits, node by node, JavaScript
with the SAME meaning:

- every character class (`\\d`, `\\w`, `\\s`, their negations, inside or outside `[...]`) becomes the
  explicit list of code point ranges Python's `re` matches, computed once from Python itself;
- `.` becomes `[^\\n]` (or `[\\s\\S]` under DOTALL): JavaScript's `.` also stops at `\\r`, U+2028, U+2029;
- `$` becomes `(?=\\n?$)` (Python's `$` also matches before a final newline), `\\Z` becomes `$`, `^` and
  `$` under MULTILINE become lookarounds on `\\n` only; MULTILINE, DOTALL and ASCII may be scoped;
- `\\b` and `\\B` become lookarounds on Python's word class (JavaScript's `\\b` is ASCII-only);
- groups are emitted as plain numbered groups (named groups keep their number), `{,n}` as `{0,n}`,
  every literal that is not a letter or digit as a `\\u{...}` escape.

Exact (`exact: True`) means: the page and the server agree on every model name. The subset that is
translated but NOT exact (`exact: False`, with a note the page shows next to the answer):
- IGNORECASE (global `(?i)`, or scoped `(?i:...)`, which needs a browser with RegExp modifiers): both
  engines fold case with Unicode simple case folding, so ASCII names agree; non-ASCII names may differ;
- backreferences: JavaScript treats a reference to a group that did not take part as empty, Python fails.
What cannot be translated (`js: None`, the page says "the server decides" and, on `/ui`, asks it):
possessive quantifiers (`a*+`), atomic groups (`(?>...)`) and conditionals (`(?(1)a|b)`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from mlxgw.regex import C, P, class_ranges, class_set, quantifier
from mlxgw.regex import Untranslatable as _Untranslatable
from mlxgw.regex import category as _category

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass(frozen=True)
class Translation:
    source: str  # the Python pattern
    js: str | None  # JavaScript source for `new RegExp(js, flags)`, None if not translatable
    flags: str
    exact: bool
    note: str  # why the page may differ from the server ("" when exact)

    def as_dict(self) -> dict:
        return {"js": self.js, "flags": self.flags, "exact": self.exact, "note": self.note}


# The character classes as Python sees them come from mlxgw.regex (the server's RE2
# translation uses the very same ranges).
_class_ranges = class_ranges


# --- emitting --------------------------------------------------------------------------------------------

def _char(cp: int) -> str:
    c = chr(cp)
    return c if c in _ALNUM else f"\\u{{{cp:X}}}"


def _class(ranges, negate: bool = False) -> str:
    parts = []
    for lo, hi in ranges:
        parts.append(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}")
    return f"[{'^' if negate else ''}{''.join(parts)}]"


class _Emitter:
    def __init__(self, flags: int):
        self.notes: list[str] = []
        self.global_i = bool(flags & re.IGNORECASE)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def seq(self, items, flags: int) -> str:
        return "".join(self.node(op, av, flags) for op, av in items)

    def word(self, flags: int) -> str:
        return _class(_class_ranges(r"\w", bool(flags & re.ASCII)))

    def node(self, op, av, flags: int) -> str:
        ascii_only = bool(flags & re.ASCII)
        if op is C.LITERAL:
            return _char(av)
        if op is C.NOT_LITERAL:
            return f"[^{_char(av)}]"
        if op is C.ANY:
            return r"[\s\S]" if flags & re.DOTALL else r"[^\n]"
        if op is C.IN:
            negate, ranges = class_set(av, ascii_only)
            return _class(ranges, negate)
        if op is C.CATEGORY:
            return _class(_category(av, ascii_only))
        if op is C.AT:
            multiline = bool(flags & re.MULTILINE)
            if av is C.AT_BEGINNING:
                return r"(?:^|(?<=\n))" if multiline else "^"
            if av is C.AT_BEGINNING_STRING:
                return "^"
            if av is C.AT_END:
                return r"(?=\n|$)" if multiline else r"(?=\n?$)"
            if av is C.AT_END_STRING:
                return "$"
            if av in (C.AT_BOUNDARY, C.AT_NON_BOUNDARY):
                w = self.word(flags)
                if av is C.AT_BOUNDARY:
                    return f"(?:(?<={w})(?!{w})|(?<!{w})(?={w}))"
                return f"(?:(?<={w})(?={w})|(?<!{w})(?!{w}))"
            raise _Untranslatable(f"anchor {av}")
        if op is C.BRANCH:
            return "(?:" + "|".join(self.seq(alt, flags) for alt in av[1]) + ")"
        if op is C.SUBPATTERN:
            group, add, delete, items = av
            inner_flags = (flags | add) & ~delete
            inner = self.seq(items, inner_flags)
            i_before, i_after = bool(flags & re.IGNORECASE), bool(inner_flags & re.IGNORECASE)
            if i_before != i_after:
                self.note("scoped case-insensitivity (?i:...) needs a browser with RegExp modifiers, "
                          "and non-ASCII names may fold differently")
                inner = f"(?{'i' if i_after else '-i'}:{inner})"
            return f"({inner})" if group is not None else f"(?:{inner})"
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, items = av
            body = self.seq(items, flags)
            return f"(?:{body}){quantifier(lo, hi, op is C.MIN_REPEAT)}"
        if op in (C.ASSERT, C.ASSERT_NOT):
            direction, items = av
            kind = ("=" if op is C.ASSERT else "!")
            return f"(?{'<' if direction < 0 else ''}{kind}{self.seq(items, flags)})"
        if op is C.GROUPREF:
            self.note("a backreference to a group that did not take part matches empty in JavaScript "
                      "but fails in Python")
            return f"(?:\\{av})"
        name = getattr(op, "name", str(op))
        readable = {"POSSESSIVE_REPEAT": "possessive quantifiers (a*+)", "ATOMIC_GROUP": "atomic groups (?>...)",
                    "GROUPREF_EXISTS": "conditional groups (?(1)a|b)"}.get(name, name)
        raise _Untranslatable(readable)


@functools.lru_cache(maxsize=256)
def translate(pattern: str) -> Translation:
    """The JavaScript equivalent of the Python regex `pattern` (see the module docstring)."""
    try:
        parsed = P.parse(pattern, 0)
    except re.error as exc:
        return Translation(pattern, None, "u", False, f"not a valid Python regex: {exc}")
    flags = parsed.state.flags
    emitter = _Emitter(flags)
    try:
        js = emitter.seq(list(parsed), flags)
    except _Untranslatable as exc:
        return Translation(pattern, None, "u", False,
                           f"uses {exc.args[0]}, which JavaScript cannot express: the server decides")
    js_flags = "iu" if flags & re.IGNORECASE else "u"
    if flags & re.IGNORECASE:
        emitter.note("case-insensitive: page and server agree on ASCII names; non-ASCII names may fold differently")
    return Translation(pattern, js, js_flags, not emitter.notes, "; ".join(emitter.notes))
