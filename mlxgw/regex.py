"""Route regexes in linear time: Python's regex meaning, run by RE2 (google-re2, what Envoy's safe_regex
uses), so no model name a client sends can make matching backtrack (issue 12: `^(a+)+$` on 40
characters never returned, and blocked the event loop meanwhile).

A route regex is written in Python's syntax and means what Python's `re.search` means; `translate` walks
the tree Python's own parser builds and emits an RE2 pattern with the SAME meaning on every name:
- `\\d`, `\\w`, `\\s` and their negations become the explicit code point ranges Python matches (RE2's
  classes are ASCII-only or follow another Unicode version), computed once from Python itself;
- `.` becomes `[^\\n]` (or any character under DOTALL), `\\Z` becomes `\\z`;
- `$` (Python: the end, or before a final newline) becomes `\\n?\\z` where nothing follows it in the
  pattern (a search only asks whether a match exists, so consuming that newline changes nothing); `^`
  and `$` under MULTILINE are RE2's own, which mean the same;
- `\\b` and `\\B` under ASCII (`(?a)`) are RE2's; IGNORECASE is RE2's simple case folding, which agrees
  with Python's on ASCII names (the route view marks such regexes as it always did).
What RE2 cannot run in linear time has no translation, and `mlxgw validate` refuses it with the reason:
lookarounds, backreferences, possessive quantifiers, atomic groups, conditionals, Unicode `\\b`/`\\B`
(use `(?a)\\b`, or spell the separators out), and `$` with more pattern after it.
"""

from __future__ import annotations

import functools
import logging
import re
import sys

try:  # Python 3.11+
    from re import _constants as C  # noqa: N812
    from re import _parser as P  # noqa: N812
except ImportError:  # pragma: no cover - older layouts
    import sre_constants as C  # type: ignore[no-redef]  # noqa: N812
    import sre_parse as P  # type: ignore[no-redef]  # noqa: N812

log = logging.getLogger("mlxgw.routing")  # its messages are about routes
MAX_CODE_POINT = sys.maxunicode
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@functools.cache
def _re2():
    """The re2 module and its options, imported when the first route regex is compiled (a config without
    regex routes never loads it)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported by validate, not on stderr
    return re2, options


class Untranslatable(Exception):
    """A construct RE2 cannot run with Python's meaning; args[0] names it for a person."""


# --- character classes as Python sees them (shared with the route view's JavaScript translation) ----

def _all_chars() -> str:
    """Every code point, once per class computed (not cached: 4 MiB a server need not keep)."""
    return "".join(map(chr, range(MAX_CODE_POINT + 1)))


@functools.cache
def class_ranges(escape: str, ascii_only: bool) -> tuple[tuple[int, int], ...]:
    """The code point ranges Python's `re` matches with `escape` (r'\\d', r'\\w' or r'\\s')."""
    rx = re.compile(escape + "+", re.ASCII if ascii_only else 0)
    return tuple((m.start(), m.end() - 1) for m in rx.finditer(_all_chars()))


def complement(ranges) -> list[tuple[int, int]]:
    out, nxt = [], 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return out


CATEGORIES = {
    C.CATEGORY_DIGIT: (r"\d", False), C.CATEGORY_NOT_DIGIT: (r"\d", True),
    C.CATEGORY_WORD: (r"\w", False), C.CATEGORY_NOT_WORD: (r"\w", True),
    C.CATEGORY_SPACE: (r"\s", False), C.CATEGORY_NOT_SPACE: (r"\s", True),
}


def category(code, ascii_only: bool) -> list[tuple[int, int]]:
    if code not in CATEGORIES:
        raise Untranslatable(f"character category {code}")
    escape, negated = CATEGORIES[code]
    ranges = list(class_ranges(escape, ascii_only))
    return complement(ranges) if negated else ranges


def class_set(av, ascii_only: bool) -> tuple[bool, list[tuple[int, int]]]:
    """A parsed `[...]` as (negated?, the code point ranges it lists)."""
    negate, ranges = False, []
    for kind, val in av:
        if kind is C.NEGATE:
            negate = True
        elif kind is C.LITERAL:
            ranges.append((val, val))
        elif kind is C.RANGE:
            ranges.append(tuple(val))
        elif kind is C.CATEGORY:
            ranges.extend(category(val, ascii_only))
        else:
            raise Untranslatable(f"class item {kind}")
    return negate, ranges


def quantifier(lo: int, hi, lazy: bool) -> str:
    """A parsed repeat as `*`, `+`, `?`, `{n}` or `{n,m}` (the same in RE2 and JavaScript)."""
    if hi is C.MAXREPEAT:
        q = {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    elif (lo, hi) == (0, 1):
        q = "?"
    elif lo == hi:
        q = f"{{{lo}}}"
    else:
        q = f"{{{lo},{hi}}}"
    return q + ("?" if lazy else "")


UNSUPPORTED = {"ASSERT": "a lookaround (?=...), (?!...), (?<=...) or (?<!...)",
               "ASSERT_NOT": "a lookaround (?=...), (?!...), (?<=...) or (?<!...)",
               "GROUPREF": "a backreference (\\1 or (?P=name))",
               "POSSESSIVE_REPEAT": "a possessive quantifier (a*+)", "ATOMIC_GROUP": "an atomic group (?>...)",
               "GROUPREF_EXISTS": "a conditional group (?(1)a|b)"}


# --- emitting RE2 -----------------------------------------------------------------------------------------

def _char(cp: int) -> str:
    c = chr(cp)
    return c if c in _ALNUM else f"\\x{{{cp:X}}}"


def _class(ranges, negate: bool = False) -> str:
    parts = []
    for lo, hi in ranges:
        # Surrogates cannot occur in UTF-8 text, and RE2 refuses them in a class.
        for a, b in ((lo, min(hi, 0xD7FF)), (max(lo, 0xE000), hi)):
            if a <= b:
                parts.append(_char(a) if a == b else f"{_char(a)}-{_char(b)}")
    if not parts:  # a class that matches nothing
        return "[^\\x{0}-\\x{10FFFF}]" if not negate else "[\\x{0}-\\x{10FFFF}]"
    return f"[{'^' if negate else ''}{''.join(parts)}]"


class _Emitter:
    def seq(self, items, flags: int, tail: bool) -> str:
        items = list(items)
        out = []
        for i, (op, av) in enumerate(items):
            # An element is in tail position when nothing after it can consume a character.
            rest_empty = all(o is C.AT for o, _ in items[i + 1:])
            out.append(self.node(op, av, flags, tail and rest_empty))
        return "".join(out)

    def node(self, op, av, flags: int, tail: bool) -> str:
        ascii_only = bool(flags & re.ASCII)
        fold = "(?i:{})" if flags & re.IGNORECASE else "{}"
        if op is C.LITERAL:
            return fold.format(_char(av))
        if op is C.NOT_LITERAL:
            return fold.format(f"[^{_char(av)}]")
        if op is C.ANY:
            return "(?s:.)" if flags & re.DOTALL else "[^\\n]"
        if op is C.IN:
            negate, ranges = class_set(av, ascii_only)
            return fold.format(_class(ranges, negate))
        if op is C.CATEGORY:
            return _class(category(av, ascii_only))
        if op is C.AT:
            return self.anchor(av, flags, tail)
        if op is C.BRANCH:
            return "(?:" + "|".join(self.seq(alt, flags, tail) for alt in av[1]) + ")"
        if op is C.SUBPATTERN:
            _group, add, delete, items = av
            return "(?:" + self.seq(items, (flags | add) & ~delete, tail) + ")"
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, items = av
            body = self.seq(items, flags, tail and hi is not C.MAXREPEAT and hi <= 1)
            return f"(?:{body}){quantifier(lo, hi, op is C.MIN_REPEAT)}"
        name = getattr(op, "name", str(op))
        raise Untranslatable(UNSUPPORTED.get(name, name))

    @staticmethod
    def anchor(av, flags: int, tail: bool) -> str:
        multiline = bool(flags & re.MULTILINE)
        if av is C.AT_BEGINNING:
            return "(?m:^)" if multiline else "\\A"
        if av is C.AT_BEGINNING_STRING:
            return "\\A"
        if av is C.AT_END:
            if multiline:
                return "(?m:$)"
            if not tail:
                raise Untranslatable("`$` with more pattern after it (use \\Z, or end the pattern with `$`)")
            return "(?:\\n?\\z)"
        if av is C.AT_END_STRING:
            return "\\z"
        if av in (C.AT_BOUNDARY, C.AT_NON_BOUNDARY):
            if not flags & re.ASCII:
                raise Untranslatable("a Unicode word boundary \\b or \\B (write (?a)\\b for ASCII words)")
            return "\\b" if av is C.AT_BOUNDARY else "\\B"
        raise Untranslatable(f"the anchor {av}")


def translate(pattern: str) -> str:
    """The RE2 pattern meaning what `pattern` means to Python's `re.search`; raises Untranslatable
    (or re.error for a pattern Python itself refuses)."""
    parsed = P.parse(pattern, 0)
    return _Emitter().seq(list(parsed), parsed.state.flags, True)


def problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a route regex, for `mlxgw validate`; None when it can."""
    re2, options = _re2()
    try:
        re2.compile(translate(pattern), options)
    except re.error as exc:
        return f"regex does not compile: {exc}"
    except Untranslatable as exc:
        return (f"regex uses {exc.args[0]}, which a route regex cannot: route regexes run on RE2, in "
                "linear time, so no model name can stall the gateway")
    except re2.error as exc:
        text = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return f"regex is too large or complex for RE2: {text}"
    return None


class Matcher:
    """`search(name)`: does the route regex match `name`? In time linear in the name."""

    __slots__ = ("pattern", "_rx")

    def __init__(self, pattern: str):
        self.pattern = pattern
        why = problem(pattern)
        if why is not None:  # stored before this check existed: such a route matches nothing
            log.error("route regex %r never matches: %s (mlxgw validate says the same)", pattern, why)
            self._rx = None
        else:
            re2, options = _re2()
            self._rx = re2.compile(translate(pattern), options)

    def search(self, name: str) -> bool:
        if self._rx is None:
            return False
        try:
            return self._rx.search(name) is not None
        except UnicodeEncodeError:  # a lone surrogate (never from a checked body): no route
            return False
