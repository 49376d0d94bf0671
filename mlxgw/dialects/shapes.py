"""Type checks of the request fields the gateway reads or translates, for both dialects.

Translation walks these fields (an OpenAI client on an Anthropic backend, and the reverse), and a number
where a list belongs used to end in a 500. Each check here names the field, as the two APIs do, so the
client gets a 400 it can act on; a field the gateway does not read is left to the backend. Only types are
checked, never values: the backend knows its own limits. `None` counts as absent (clients send nulls).
"""

from __future__ import annotations


class ShapeError(ValueError):
    """A field of the wrong type: `param` is its path (OpenAI's `param`), `message` names it too."""

    def __init__(self, param: str, what: str):
        super().__init__(f"{param}: must be {what}")
        self.param = param
        self.message = f"{param}: must be {what}"


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


KINDS = {
    "a string": lambda v: isinstance(v, str), "a number": _is_number, "an integer": _is_int,
    "a boolean": lambda v: isinstance(v, bool), "an object": lambda v: isinstance(v, dict),
    "an array": lambda v: isinstance(v, list),
    "a string or an array of strings": lambda v: isinstance(v, str) or (
        isinstance(v, list) and all(isinstance(s, str) for s in v)),
    "an array of strings": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
    "a string or an object": lambda v: isinstance(v, (str, dict)),
    "a string or an array": lambda v: isinstance(v, (str, list)),
}


# Per kind, the types whose values surely are of it: a set lookup in C instead of a call of KINDS' test,
# which still decides for any other value (a list that must hold strings, a bool where a number belongs).
_SURE = {kind: frozenset(types) for kind, types in {
    "a string": {str}, "a number": {int, float}, "an integer": {int}, "a boolean": {bool}, "an object": {dict},
    "an array": {list}, "a string or an array of strings": {str}, "an array of strings": set(),
    "a string or an object": {str, dict}, "a string or an array": {str, list}}.items()}


def field(obj: dict, key: str, kind: str, at: str, sep: str = ".") -> object:
    """obj[key] when present and of `kind` (a key of KINDS); ShapeError naming `at + key` otherwise."""
    value = obj.get(key)
    if value is not None and type(value) not in _SURE[kind] and not KINDS[kind](value):
        raise ShapeError(f"{at}{sep}{key}" if at else key, kind)
    return value


def fields(obj: dict, at: str, spec: dict[str, str], sep: str = ".") -> None:
    """`field()` for each key of `spec` that `obj` has (walking the object's few keys, not the spec's many:
    this runs for every message of every request)."""
    for key, value in obj.items():
        kind = spec.get(key)
        if kind is not None and value is not None and type(value) not in _SURE[kind] and not KINDS[kind](value):
            raise ShapeError(f"{at}{sep}{key}" if at else key, kind)


def items(value, at: str, sep: str = "."):
    """(path, item) for each item of a list that must hold objects."""
    for i, item in enumerate(value or []):
        where = f"{at}[{i}]" if sep == "[" else f"{at}.{i}"
        if not isinstance(item, dict):
            raise ShapeError(where, "an object")
        yield where, item


# --- OpenAI chat completions ------------------------------------------------------------------------

OPENAI_TOP = {"temperature": "a number", "top_p": "a number", "presence_penalty": "a number",
              "frequency_penalty": "a number", "max_tokens": "an integer", "max_completion_tokens": "an integer",
              "n": "an integer", "seed": "an integer", "top_logprobs": "an integer", "logprobs": "a boolean",
              "parallel_tool_calls": "a boolean", "user": "a string", "reasoning_effort": "a string",
              "stop": "a string or an array of strings", "tools": "an array", "tool_choice": "a string or an object",
              "response_format": "an object", "metadata": "an object"}


# Per top-level field, the types its value may have and need no further look: the fast path of a request's
# checks (openai.parse_request) accepts a body in one pass when every field it has is one of these. They are
# the kind's sure types, but for the fields check_openai walks into (a tools list, a tool_choice object, a
# response_format's type): such a value takes the full walk, which names the problem if there is one.
# `None` counts as absent, as everywhere here.
_WALKED = frozenset({"tools", "tool_choice", "response_format"})
OPENAI_TOP_PLAIN = {key: frozenset({type(None), *(_SURE[kind] - {dict, list} if key in _WALKED else _SURE[kind])})
                    for key, kind in OPENAI_TOP.items()}


OPENAI_TOOL = {"type": "a string", "function": "an object"}
OPENAI_FUNCTION = {"name": "a string", "description": "a string", "parameters": "an object"}
OPENAI_MESSAGE = {"name": "a string", "tool_call_id": "a string", "tool_calls": "an array", "refusal": "a string",
                  "content": "a string or an array"}
OPENAI_PART = {"type": "a string", "text": "a string"}
OPENAI_CALL = {"id": "a string", "type": "a string", "function": "an object"}
OPENAI_CALLED = {"name": "a string", "arguments": "a string or an object"}


def check_openai(body: dict) -> None:
    fields(body, "", OPENAI_TOP)
    tools = body.get("tools")
    if tools:
        for at, tool in items(tools, "tools", "["):
            fields(tool, at, OPENAI_TOOL)
            fields(tool.get("function") or {}, at + ".function", OPENAI_FUNCTION)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        fields(choice, "tool_choice", {"type": "a string", "function": "an object"})
        field(choice.get("function") or {}, "name", "a string", "tool_choice.function")
    field(body.get("response_format") or {}, "type", "a string", "response_format")
    for i, m in enumerate(body.get("messages") or ()):  # every message of the request: no generator step here
        at = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ShapeError(at, "an object")
        fields(m, at, OPENAI_MESSAGE)
        if isinstance(m.get("content"), list):
            for pat, part in items(m["content"], at + ".content", "["):
                fields(part, pat, OPENAI_PART)
        calls = m.get("tool_calls")
        if calls:
            for cat, call in items(calls, at + ".tool_calls", "["):
                fields(call, cat, OPENAI_CALL)
                fields(call.get("function") or {}, cat + ".function", OPENAI_CALLED)


# --- Anthropic messages -----------------------------------------------------------------------------

ANTHROPIC_TOP = {"temperature": "a number", "top_p": "a number", "top_k": "an integer",
                 "stop_sequences": "an array of strings", "tools": "an array", "tool_choice": "an object",
                 "metadata": "an object", "thinking": "an object", "output_config": "an object",
                 "output_format": "an object"}
BLOCK_FIELDS = {"text": {"text": "a string"}, "thinking": {"thinking": "a string", "signature": "a string"},
                "tool_use": {"id": "a string", "name": "a string", "input": "an object"},
                "server_tool_use": {"id": "a string", "name": "a string", "input": "an object"},
                "tool_result": {"tool_use_id": "a string", "is_error": "a boolean", "content": "a string or an array"},
                "image": {"source": "an object"}, "document": {"source": "an object"}}


REQUIRED = {"text": ("text",), "tool_use": ("id", "name"), "tool_result": ("tool_use_id",)}


def check_anthropic(body: dict) -> None:
    fields(body, "", ANTHROPIC_TOP)
    for at, tool in items(body.get("tools"), "tools"):
        fields(tool, at, {"name": "a string", "type": "a string", "description": "a string",
                          "input_schema": "an object"})
    fields(body.get("tool_choice") or {}, "tool_choice", {"type": "a string", "name": "a string"})
    field(body.get("metadata") or {}, "user_id", "a string", "metadata")
    fields(body.get("thinking") or {}, "thinking", {"type": "a string", "budget_tokens": "an integer"})
    if isinstance(body.get("system"), list):
        _blocks(body["system"], "system")
    for at, m in items(body.get("messages"), "messages"):
        if isinstance(m.get("content"), list):
            _blocks(m["content"], at + ".content")


def _blocks(blocks: list, at: str) -> None:
    """Content blocks, a tool_result's own content included (its depth is bounded by the body parser)."""
    stack = [(blocks, at)]
    while stack:
        value, where = stack.pop()
        for bat, block in items(value, where):
            kind = field(block, "type", "a string", bat)
            fields(block, bat, BLOCK_FIELDS.get(kind, {}))
            for key in REQUIRED.get(kind, ()):  # here null is not "absent": the block means nothing without it
                if block.get(key) is None:
                    raise ShapeError(f"{bat}.{key}", "a string")
            if kind == "tool_result" and isinstance(block.get("content"), list):
                stack.append((block["content"], bat + ".content"))
