"""The OpenAI chat-completions dialect: request checks, response and stream-chunk normalisation, SSE
framing and error bodies.

Why normalise at all: OpenAI-compatible servers deviate in small ways (no `logprobs`, no `object`, usage
missing or partial, odd finish reasons), and strict clients and the conformance schema in
../shared/conformance reject such bodies. Every body the gateway sends passes through here first.

Everything is a pure function over dicts and bytes; the server and the backends do the I/O.
"""

from __future__ import annotations

import operator
import re
import time
import uuid
from dataclasses import dataclass

from mlxgw.dialects.jsonfast import BodyError, DecodeError, dumps, loads, parse_body
from mlxgw.dialects.shapes import OPENAI_TOP_PLAIN, ShapeError, check_openai
from mlxgw.text import MAX_MODEL_NAME

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
DELTA_ROLES = frozenset({"developer", "system", "user", "assistant", "tool"})
_FINISH_ALIASES = {"eos": "stop", "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                   "tool_use": "tool_calls", "abort": "stop", "error": "stop"}  # fmt: skip

DONE = b"data: [DONE]\n\n"

# Error `type` values by HTTP status, as OpenAI spells them.
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
                422: "invalid_request_error", 429: "rate_limit_error"}  # fmt: skip


class RequestError(ValueError):
    """A request body the gateway refuses: `param` names the offending field (OpenAI's `param`)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class ChatTarget:
    """What an OpenAI chat-completions backend accepts. OpenAI proper takes `role: developer`, wants
    `max_completion_tokens` and at most 4 stop sequences; many compatible servers (and local engines' chat
    templates) know only `system` and `max_tokens`."""

    max_tokens_field: str = "max_tokens"
    max_stop: int | None = None
    developer_role: bool = False


COMPATIBLE = ChatTarget()
OPENAI_PROPER = ChatTarget(max_tokens_field="max_completion_tokens", max_stop=4, developer_role=True)


# --- requests -----------------------------------------------------------------------------------


def parse_request(raw: bytes) -> dict:
    """The request body as a dict; RequestError when it is not a JSON object or misses required fields.

    Only what the gateway itself needs is checked (model, messages, stream, stream_options, and the types
    of the fields translation reads: `shapes.check_openai`): everything else passes through to the
    backend, which knows its own rules and answers in its own words."""
    try:
        body = parse_body(raw)
    except BodyError as exc:
        raise RequestError(
            f"We could not parse the JSON body of your request: {exc.reason}. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    if not _plain(body):  # the full checks only for an uncommon body: they name its first problem
        _check_request(body)
    return body


# Per top-level field checked, the types its value may have and need no further look (see _plain).
_PLAIN_TOP = {**OPENAI_TOP_PLAIN, "stream_options": frozenset((dict, type(None)))}
_PLAIN_KEYS = frozenset(_PLAIN_TOP)
_BOOL_OR_NONE = frozenset((bool, type(None)))


def _plain(body) -> bool:
    """Is `body` a common request, one that passes every check of `_check_request`? Answered in one pass
    over the few fields such a body has, since this runs for every request; `_check_request` walks the
    body only when the answer is no, so an error is the same one, in the same words, as ever."""
    if not isinstance(body, dict):
        return False
    model = body.get("model")
    messages = body.get("messages")
    if (not isinstance(model, str) or len(model) > MAX_MODEL_NAME or not model.strip()
            or not isinstance(messages, list) or not messages or type(body.get("stream")) not in _BOOL_OR_NONE):
        return False
    for key in _PLAIN_KEYS.intersection(body):  # the fields present that have a type to check: few, often none
        if type(body[key]) not in _PLAIN_TOP[key]:
            return False
    # A role and a string content, nothing else: the common message has no other field to check. This runs
    # for every message of every request, so a message that is not an object is not tested for: a string,
    # an array, a number or null has no len() or takes no string subscript (TypeError). Two fields, both
    # found, are exactly role and content; exact types, as parsed JSON has (half the instructions of
    # comparing .keys() to a set and two isinstance() calls).
    try:
        for m in messages:
            if len(m) != 2 or type(m["role"]) is not str or type(m["content"]) is not str:
                return False
    except (TypeError, KeyError):
        return False
    return True


def _check_request(body) -> None:
    """RequestError naming the first problem of `body`, if it has one."""
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if model is None:
        raise RequestError("you must provide a model parameter", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise RequestError("'model' must be a non-empty string", "model", "invalid_type")
    if len(model) > MAX_MODEL_NAME:
        raise RequestError(f"'model' is longer than {MAX_MODEL_NAME} characters", "model", "invalid_value")
    messages = body.get("messages")
    if messages is None:
        raise RequestError("'messages' is a required property", "messages", "missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array", "messages", "invalid_type")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RequestError(f"messages[{i}] must be an object", f"messages[{i}]", "invalid_type")
        if not isinstance(m.get("role"), str):
            raise RequestError(f"messages[{i}].role is required and must be a string", f"messages[{i}].role",
                               "invalid_type")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", "stream", "invalid_type")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise RequestError("'stream_options' must be an object", "stream_options", "invalid_type")
    try:
        check_openai(body)
    except ShapeError as exc:
        raise RequestError(exc.message, exc.param, "invalid_type") from None


def wants_usage(body: dict) -> bool:
    """Did the client ask for the final usage chunk of a stream?"""
    opts = body.get("stream_options")
    return opts is not None and isinstance(opts, dict) and bool(opts.get("include_usage"))  # mostly absent


def upstream_request(body: dict, backend_model: str) -> dict:
    """The body sent upstream: the backend's model name, and on streams always `include_usage` so the
    audit log gets token counts even when the client did not ask for them. The client's dict is untouched;
    the same dict comes back when nothing changes (not a stream, the model named as the backend names it)."""
    if body.get("stream"):
        opts = body.get("stream_options")
        return {**body, "model": backend_model,
                "stream_options": {**opts, "include_usage": True} if opts else {"include_usage": True}}
    return body if body.get("model") == backend_model else {**body, "model": backend_model}


def developer_to_system(body: dict) -> dict:
    """The body with `developer` messages sent as `system`, for backends that reject the role (most local
    engines' chat templates know only system/user/assistant/tool). The client's dict is untouched; the
    same dict comes back when nothing changes."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    # This runs for every request to such a backend, and rarely finds one. A plain loop of subscripts:
    # measured, half the instructions of `"developer" in map(methodcaller("get", "role"), messages)` for
    # one message, a third for twenty.
    try:
        for m in messages:
            if m["role"] == "developer":
                break
        else:
            return body
    except (KeyError, TypeError):  # a message that is no object, or has no role (parse_request lets none through)
        if not any(isinstance(m, dict) and m.get("role") == "developer" for m in messages):
            return body
    return {**body, "messages": [{**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m
                                 for m in messages]}


# --- responses ----------------------------------------------------------------------------------


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _finish_reason(value, has_tool_calls: bool) -> str:
    if not isinstance(value, str):  # a list or an object from a broken server must not raise (unhashable)
        return "tool_calls" if has_tool_calls else "stop"
    if value in FINISH_REASONS:
        return value
    if has_tool_calls:
        return "tool_calls"
    return _FINISH_ALIASES.get(value, "stop")


def _tool_calls(calls) -> list | None:
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for i, c in enumerate(calls):
        if not isinstance(c, dict):
            continue
        c = dict(c)
        fn = c.get("function") if isinstance(c.get("function"), dict) else {}
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = "" if args is None else dumps(args).decode()
        c["function"] = {**fn, "name": str(fn.get("name") or ""), "arguments": args}
        c.setdefault("type", "function")
        if not isinstance(c.get("id"), str) or not c["id"]:
            c["id"] = f"call_{uuid.uuid4().hex[:24]}"
        c.pop("index", None)
        out.append(c)
    return out or None


def usage(u) -> dict | None:
    """A usage object with the three required integers, or None when the backend sent nothing usable."""
    if not isinstance(u, dict):
        return None
    out = dict(u)
    p = out.get("prompt_tokens")
    c = out.get("completion_tokens")
    p = p if isinstance(p, int) and not isinstance(p, bool) else 0
    c = c if isinstance(c, int) and not isinstance(c, bool) else 0
    t = out.get("total_tokens")
    out["prompt_tokens"], out["completion_tokens"] = p, c
    out["total_tokens"] = t if isinstance(t, int) and not isinstance(t, bool) else p + c
    for key in ("prompt_tokens_details", "completion_tokens_details"):
        d = out.get(key)
        if d is None:
            out.pop(key, None)
        elif not isinstance(d, dict):
            out.pop(key)
        else:
            out[key] = {k: v for k, v in d.items() if isinstance(v, int) and not isinstance(v, bool)}
    return out


def tokens(u) -> tuple[int | None, int | None, int | None]:
    """(input, output, cached) token counts of a usage object, for the audit log."""
    if not isinstance(u, dict):
        return None, None, None
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return u.get("prompt_tokens"), u.get("completion_tokens"), cached


def _logprobs(lp):
    if not isinstance(lp, dict):
        return None
    return {**lp, "content": lp.get("content"), "refusal": lp.get("refusal")}


def response(body: dict, model: str) -> dict:
    """Normalise a non-streaming chat completion so it validates as CreateChatCompletionResponse."""
    out = dict(body)
    if not isinstance(out.get("id"), str) or not out["id"]:
        out["id"] = f"chatcmpl-{uuid.uuid4().hex}"
    out["object"] = "chat.completion"
    if not isinstance(out.get("created"), int) or isinstance(out.get("created"), bool):
        out["created"] = int(time.time())
    if not isinstance(out.get("model"), str) or not out["model"]:
        out["model"] = model
    choices = []
    for i, ch in enumerate(_list(out.get("choices"))):
        if not isinstance(ch, dict):
            continue
        msg = dict(ch["message"]) if isinstance(ch.get("message"), dict) else {}
        msg["role"] = "assistant"
        content = msg.get("content")
        if isinstance(content, list):  # content parts: keep the text
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict)) or None
        msg["content"] = content if isinstance(content, str) else None
        msg["refusal"] = msg.get("refusal") if isinstance(msg.get("refusal"), str) else None
        calls = _tool_calls(msg.get("tool_calls"))
        if calls:
            msg["tool_calls"] = calls
        else:
            msg.pop("tool_calls", None)
        if not isinstance(msg.get("function_call"), dict):
            msg.pop("function_call", None)
        if msg.get("audio") is None:
            msg.pop("audio", None)
        if not isinstance(msg.get("annotations"), list):
            msg.pop("annotations", None)
        choices.append({
            **ch,
            "index": ch["index"] if isinstance(ch.get("index"), int) else i,
            "message": msg,
            "logprobs": _logprobs(ch.get("logprobs")),
            "finish_reason": _finish_reason(ch.get("finish_reason"), bool(calls)),
        })
    out["choices"] = choices
    u = usage(out.get("usage"))
    if u is None:
        out.pop("usage", None)
    else:
        out["usage"] = u
    for key in ("system_fingerprint", "service_tier"):
        if not isinstance(out.get(key), str):
            out.pop(key, None)
    return out


_ANSWER_FIELDS = operator.itemgetter("id", "object", "created", "model", "choices")  # a chunk's too
_CHOICE_FIELDS = operator.itemgetter("index", "logprobs", "finish_reason", "message")
_MESSAGE_FIELDS = operator.itemgetter("role", "content", "refusal")
_USAGE_FIELDS = operator.itemgetter("prompt_tokens", "completion_tokens", "total_tokens")
_JUST_INT = frozenset({int})


def _kept_choices(body: dict, kind: str) -> list | None:
    """The choices of a chat completion or chunk (object `kind`) whose envelope `response()` or `chunk()`
    keeps as it is: a non-empty string id and model, an int created, a list of choices, a string
    system_fingerprint and service_tier if any. None otherwise; KeyError or TypeError for a missing field
    or a body that is no object (the callers' long way)."""
    id_, obj, created, model, choices = _ANSWER_FIELDS(body)
    if obj != kind or type(id_) is not str or not id_ or type(created) is not int \
            or type(model) is not str or not model or type(choices) is not list \
            or "system_fingerprint" in body and type(body["system_fingerprint"]) is not str \
            or "service_tier" in body and type(body["service_tier"]) is not str:
        return None
    return choices


def response_as_is(body: dict) -> tuple | None:
    """None when `response()` would change this chat completion, else its token counts (see `tokens`): then
    the upstream's bytes can go to the client as they came. Checked without building anything, fields
    read at once (itemgetter: a missing one raises KeyError, a value that is no object TypeError, and
    both mean the long way); a test keeps it in step with `response()`."""
    try:
        choices = _kept_choices(body, "chat.completion")
        if choices is None:
            return None
        for ch in choices:
            index, logprobs, finish, msg = _CHOICE_FIELDS(ch)
            role, content, refusal = _MESSAGE_FIELDS(msg)
            # (FINISH_REASONS holds only strings; an unhashable finish reason raises TypeError)
            if type(index) is not int or logprobs is not None or finish not in FINISH_REASONS \
                    or role != "assistant" or type(content) is not str and content is not None \
                    or refusal is not None and type(refusal) is not str \
                    or len(msg) > 3 and not _message_extras_as_is(msg):
                return None
    except (KeyError, TypeError):
        return None
    return _usage_tokens(body["usage"]) if "usage" in body else (None, None, None)


def _message_extras_as_is(msg: dict) -> bool:
    """Whether `response()` keeps a message's fields beyond role, content and refusal as they are."""
    return "tool_calls" not in msg and ("function_call" not in msg or type(msg["function_call"]) is dict) \
        and ("audio" not in msg or msg["audio"] is not None) \
        and ("annotations" not in msg or type(msg["annotations"]) is list)


def _usage_tokens(u) -> tuple | None:
    """The token counts (see `tokens`) of a usage object `usage()` would leave as it is, else None."""
    try:
        p, c, t = _USAGE_FIELDS(u)
    except (KeyError, TypeError):  # a count missing, or no object
        return None
    if type(p) is not int or type(c) is not int or type(t) is not int:
        return None
    cached = None
    if "prompt_tokens_details" in u:
        details = u["prompt_tokens_details"]
        if not _ints(details):
            return None
        cached = details.get("cached_tokens")
    if "completion_tokens_details" in u and not _ints(u["completion_tokens_details"]):
        return None
    return p, c, cached


def _ints(details) -> bool:
    """Whether a usage details object holds only integers (the types of its values, gathered in C)."""
    return type(details) is dict and set(map(type, details.values())) <= _JUST_INT


def chunk(body: dict, model: str, fallback_id: str, created: int, keep_usage: bool) -> dict:
    """Normalise one stream event so it validates as CreateChatCompletionStreamResponse.

    `fallback_id`/`created` keep the id and timestamp stable across a stream whose backend omits them.
    With `keep_usage` False the usage field is removed (the client did not ask for it)."""
    out = dict(body)
    if not isinstance(out.get("id"), str) or not out["id"]:
        out["id"] = fallback_id
    out["object"] = "chat.completion.chunk"
    if not isinstance(out.get("created"), int) or isinstance(out.get("created"), bool):
        out["created"] = created
    if not isinstance(out.get("model"), str) or not out["model"]:
        out["model"] = model
    choices = []
    for i, ch in enumerate(_list(out.get("choices"))):
        if not isinstance(ch, dict):
            continue
        raw_delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
        delta = {k: v for k, v in raw_delta.items() if v is not None or k in ("content", "refusal")}
        if "role" in delta and (not isinstance(delta["role"], str) or delta["role"] not in DELTA_ROLES):
            delta["role"] = "assistant"
        if not isinstance(delta.get("content", ""), str):
            delta["content"] = None
        if "tool_calls" in delta:
            calls = []
            for j, c in enumerate(delta["tool_calls"] if isinstance(delta["tool_calls"], list) else []):
                if isinstance(c, dict):
                    c = {k: v for k, v in c.items() if v is not None}
                    if not isinstance(c.get("index"), int):
                        c["index"] = j
                    if isinstance(c.get("function"), dict):
                        c["function"] = {k: v for k, v in c["function"].items() if isinstance(v, str)}
                    else:
                        c.pop("function", None)
                    if c.get("type") != "function":
                        c.pop("type", None)
                    if not isinstance(c.get("id"), str):
                        c.pop("id", None)
                    calls.append(c)
            if calls:
                delta["tool_calls"] = calls
            else:
                del delta["tool_calls"]
        fr = ch.get("finish_reason")
        new = {**ch, "index": ch["index"] if isinstance(ch.get("index"), int) else i, "delta": delta,
               "finish_reason": None if fr is None else _finish_reason(fr, "tool_calls" in delta)}
        if "logprobs" in ch:
            new["logprobs"] = _logprobs(ch["logprobs"])
        choices.append(new)
    out["choices"] = choices
    if keep_usage:
        out["usage"] = usage(out.get("usage"))
    else:
        out.pop("usage", None)
    for key in ("system_fingerprint", "service_tier"):
        if not isinstance(out.get(key), str):
            out.pop(key, None)
    return out


_TOOL_CALL_KEYS = frozenset({"index", "id", "type", "function"})
_CHUNK_CHOICE_FIELDS = operator.itemgetter("index", "delta", "finish_reason")


def chunk_as_is(body: dict, keep_usage: bool) -> bool | None:
    """Whether `chunk()` would leave this stream event exactly as it is, checked without building
    anything: None when it would change it, else whether a choice in it finished. The common event of a
    conformant server (a content delta) passes, so its bytes can go to the client as they came; a test
    keeps this in step with `chunk()`. Fields are read as `response_as_is` reads them: a missing one
    (KeyError) or a value of the wrong kind (TypeError: not an object, unhashable; AttributeError: a
    delta with no items) means the long way."""
    if keep_usage:
        if body.get("usage", 0) is not None:  # the usage chunk takes the long way
            return None
    elif "usage" in body:
        return None
    try:
        choices = _kept_choices(body, "chat.completion.chunk")
        if choices is None:
            return None
        finished = False
        for ch in choices:
            index, delta, finish = _CHUNK_CHOICE_FIELDS(ch)
            if type(index) is not int or ch.get("logprobs") is not None:
                return None
            if finish is not None:
                if finish not in FINISH_REASONS:  # (strings only: an unhashable value raises TypeError)
                    return None
                finished = True
            for k, v in delta.items():
                if k == "content":
                    if type(v) is not str and v is not None:
                        return None
                elif k == "role":
                    if v not in DELTA_ROLES:  # (strings only: None is not in it, a list raises TypeError)
                        return None
                elif v is None:
                    if k != "refusal":  # chunk() drops other null fields
                        return None
                elif k == "tool_calls" and not _tool_call_deltas_as_is(v):
                    return None
        return finished
    except (KeyError, TypeError, AttributeError):
        return None


def _tool_call_deltas_as_is(calls) -> bool:
    if type(calls) is not list or not calls:
        return False
    for c in calls:
        if type(c) is not dict or type(c.get("index")) is not int or not c.keys() <= _TOOL_CALL_KEYS:
            return False
        if "id" in c and type(c["id"]) is not str or "type" in c and c["type"] != "function":
            return False
        fn = c.get("function", {})
        if type(fn) is not dict or any(type(v) is not str for v in fn.values()):
            return False
    return True


# Bytes looked for with `in` as their values: bytes.__contains__ tries its operand as an integer first, and
# the TypeError a bytes operand raises there (formatted, then cleared) costs ten times the search itself.
_CR, _LF, _BACKSLASH = b"\r\n\\"
# One JSON string body, exactly: unescaped printable ASCII, the escapes JSON allows but a \\u surrogate
# (a lone one would not decode; a pair takes the long way, which checks it), and well-formed UTF-8.
STRING_BODY = re.compile(
    rb'(?:[\x20\x21\x23-\x5b\x5d-\x7f]+|\\(?:["\\/bfnrt]|u(?![dD][89a-fA-F])[0-9a-fA-F]{4})'
    rb'|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}'
    rb'|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}'
    rb'|\xf4[\x80-\x8f][\x80-\xbf]{2})+')
# The common case of one, plain ASCII (no control character, quote or backslash): one class run checks it
# for less than the grammar above costs. Neither matches an empty body.
PLAIN_TEXT = re.compile(rb'[\x20\x21\x23-\x5b\x5d-\x7f]+')
# A JSON string after a key's colon: blanks, then its body, up to the first quote no backslash escapes.
_STRING_AFTER_KEY = re.compile(rb'[ \t]*"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_PLAIN_DELTA_KEYS = frozenset({"content", "role"})


def plain_text(body: dict) -> str | None:
    """The text of a stream event that is one choice's plain content delta (no finish, tool call,
    reasoning, usage or error in it), else None: the event `ContentShape` can learn from."""
    if "error" in body or "usage" in body and type(body["usage"]) is dict:
        return None
    try:  # a field missing (KeyError), of the wrong kind (TypeError), or not one choice (ValueError)
        (ch,) = body["choices"]
        delta = ch["delta"]
        text = delta["content"]
        if ch.get("finish_reason") is not None or ch.get("logprobs") is not None \
                or not delta.keys() <= _PLAIN_DELTA_KEYS:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return text if type(text) is str and text else None


class ContentShape:
    """The bytes around the text of a stream's plain content deltas, in the upstream's event and in what
    the client got for it, learnt from one event that went the long way (parsed, normalised or
    translated). A stream's later plain deltas are the same bytes around other text (one server, one
    stream: same id, model, key order), so `text(data)` recognises one by its two ends and a check that
    the middle is one JSON string body, without parsing the event, and `convert(data, out)` gives the
    client's bytes for it: the learnt output with the new text spliced in. The long way is a pure
    function of everything but the text here; a translator whose state moves on (a new block) calls
    `forget()`. Anything unlike the learnt event (the role chunk, tool calls, the finish) does not match
    and takes the long way.

    `parts` holds what `text()` and `convert()` read, in one tuple a hot loop can unpack into locals
    (OpenAIRelay does, around its own copy of `convert`): (head, tail, cut_head, cut_tail, out_head,
    out_tail), the text being data[cut_head:cut_tail]. Its head is () while nothing is learnt, which no
    bytes equal, so nothing matches without a test of its own."""

    __slots__ = ("head", "tail", "parts")

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self.head: bytes | None = None
        self.tail = b""
        self.parts: tuple = ((), b"", 0, 0, b"", b"")

    def learn(self, data: bytes, text: str, out: bytes | None = None, key: bytes = b"") -> None:
        """Learn from `data`, an event whose plain content delta is `text` (see `plain_text`), and `out`,
        the client bytes made from it, in which `text` appears once as the value of `key` (None: a
        translator that only needs `text()` and renders its own bytes)."""
        span = _string_at(data, b'"content":', text)
        if span is None:
            return
        start, end = span
        if out is None:
            self._learnt(data, start, end, b"", b"")
        elif out[6:-2] == data and out[:6] == b"data: ":  # the event went out as it came
            self._learnt(data, start, end, b"data: " + data[:start], data[end:] + out[-2:])
        else:  # the text as the upstream wrote it or as orjson did, compact or spaced
            for body in (data[start:end], dumps(text)[1:-1]):
                for needle in (key + b'"' + body + b'"', key + b' "' + body + b'"'):
                    if out.count(needle) == 1:
                        at = out.index(needle) + len(needle) - len(body) - 1
                        self._learnt(data, start, end, out[:at], out[at + len(body):])
                        return

    def _learnt(self, data: bytes, start: int, end: int, out_head: bytes, out_tail: bytes) -> None:
        self.head, self.tail = data[:start], data[end:]
        self.parts = (self.head, self.tail, start, end - len(data), out_head, out_tail)

    def text(self, data: bytes) -> bytes | None:
        """The raw JSON string body of `data`'s text when `data` has the learnt shape, else None. Plain
        ASCII text is checked with one class run, only other text with the JSON-string grammar."""
        head, tail, cut_head, cut_tail, _, _ = self.parts
        if data[:cut_head] != head or data[cut_tail:] != tail:  # (see SSEParser.feed: slices cost less)
            return None
        middle = data[cut_head:cut_tail]  # empty when the ends overlap: neither regex takes it
        if PLAIN_TEXT.fullmatch(middle) is None and STRING_BODY.fullmatch(middle) is None:
            return None
        return middle

    def convert(self, data: bytes, out: list) -> bool:
        """Append the client bytes for `data` to `out` (the learnt output's three pieces around its text,
        joined later with the rest); False when `data` does not have the learnt shape."""
        middle = self.text(data)
        if middle is None:
            return False
        parts = self.parts
        out += (parts[4], middle, parts[5])
        return True

    @staticmethod
    def decode(middle: bytes) -> str:
        """The text of a middle `text()` returned."""
        return middle.decode("ascii") if middle.isascii() and _BACKSLASH not in middle else loads(b'"' + middle + b'"')


def _string_at(data: bytes, key: bytes, text: str) -> tuple[int, int] | None:
    """(start, end) of the JSON string body that is the value of the last `key` in `data`, when it
    decodes to `text`."""
    at = data.rfind(key)
    if at < 0:
        return None
    if text.isascii():  # plain ASCII text is its own JSON string body: right after the key, no decoding
        body = text.encode()
        start = at + len(key) + 1
        end = start + len(body)
        if data[start - 1:end + 1] == b'"' + body + b'"' and PLAIN_TEXT.fullmatch(body) is not None:
            return start, end
    m = _STRING_AFTER_KEY.match(data, at + len(key))
    if m is None:
        return None
    start, end = m.span(1)
    try:
        return (start, end) if loads(data[start - 1:end + 1]) == text else None
    except DecodeError:
        return None


def completion_chunks(body: dict) -> list[dict]:
    """A whole chat completion re-cut as stream chunks (for servers that ignore `stream: true` and answer
    with one JSON body): per choice a delta with the message, then its finish, then a usage chunk."""
    base = {k: body[k] for k in ("id", "created", "model", "system_fingerprint") if k in body}
    base["object"] = "chat.completion.chunk"
    out = []
    for i, ch in enumerate(_list(body.get("choices"))):
        if not isinstance(ch, dict):
            continue
        index = ch["index"] if isinstance(ch.get("index"), int) else i
        msg = ch.get("message") if isinstance(ch.get("message"), dict) else {}
        delta: dict = {"role": "assistant", "content": msg.get("content") if isinstance(msg.get("content"), str) else ""}
        calls = _tool_calls(msg.get("tool_calls"))
        if calls:
            delta["tool_calls"] = [{**c, "index": j} for j, c in enumerate(calls)]
        out.append({**base, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        out.append({**base, "choices": [{"index": index, "delta": {},
                                         "finish_reason": _finish_reason(ch.get("finish_reason"), bool(calls))}]})
    if isinstance(body.get("usage"), dict):
        out.append({**base, "choices": [], "usage": body["usage"]})
    return out


def models_list(entries: list[tuple[str, str]], created: int = 0) -> dict:
    """A ListModelsResponse from (model id, owner) pairs."""
    return {"object": "list",
            "data": [{"id": mid, "object": "model", "created": created, "owned_by": owner} for mid, owner in entries]}


# --- errors -------------------------------------------------------------------------------------


def error_type(status: int) -> str:
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(message: str, status: int = 400, type: str | None = None, param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": type or error_type(status), "param": param,
                      "code": None if code is None else str(code)}}


def upstream_error(status: int, raw: bytes, provider: str) -> dict:
    """The error body for an upstream HTTP error: the upstream's own message, type, param and code when it
    sent an OpenAI-shaped error, else its text (trimmed), so the client learns what the backend said."""
    try:
        data = loads(raw) if raw else None
    except DecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("message"):
        param, code = err.get("param"), err.get("code")
        return error_body(str(err["message"]), status, type=err.get("type") if isinstance(err.get("type"), str) else None,
                          param=param if isinstance(param, str) else None,
                          code=None if code is None else str(code))
    if isinstance(err, str) and err:
        message = err
    elif isinstance(data, dict) and isinstance(data.get("message") or data.get("detail"), str):
        message = data.get("message") or data.get("detail")
    else:
        message = raw.decode("utf-8", "replace").strip()[:2000] or f"HTTP {status}"
    return error_body(f"provider '{provider}' answered {status}: {message}", status)


# --- server-sent events -------------------------------------------------------------------------


def sse(obj: dict) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def sse_error(message: str, type: str = "api_error", code: str | None = None) -> bytes:
    """The event that ends a stream which failed after its first byte (no [DONE] follows it)."""
    return sse(error_body(message, 500, type=type, code=code))


class SSEParser:
    """Incremental parser of a text/event-stream body: feed it byte chunks as they arrive, get back the
    `data` payloads of the events they complete. Handles \\n, \\r\\n and \\r line ends, multi-line data
    and comments, so a chunk boundary anywhere is harmless.

    Events end at a blank line, so the buffer is cut at each "\\n\\n": a run of events that are each
    one `data: ` line is split in one go, other events are read line by line. The buffer holds what
    follows the last complete event, and a chunk that completes none costs one search of its own bytes."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        held = self._buf
        # A model's stream usually brings one whole one-line event per read: its first newline ends it.
        # (Only memchr-speed scans here and below: a counting pass costs about 5 instructions a byte. Ends
        # are compared as slices: startswith() and endswith() parse their arguments for more than that.)
        if not held and chunk[-2:] == b"\n\n" and chunk[:6] == b"data: " \
                and chunk.find(b"\n") == len(chunk) - 2 and _CR not in chunk:
            return [chunk[6:-2]]
        buf = held + chunk if held else chunk
        # Only the held bytes' last one can start a "\n\n" not searched before (the rest had none)...
        start = len(held) - 1 if held else 0
        if _CR in chunk or held[-1:] == b"\r":
            if buf[-1:] == b"\r":  # a \r\n may be split across chunks: wait for the next byte
                self._buf = buf
                return []
            if held[-1:] == b"\r":  # ...but bytes held as they came (this wait) shrink when converted
                start = 0
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buf.rfind(b"\n\n", start)  # the last event's end, searched for in the new bytes only
        if end < 0:
            self._buf = buf
            return []
        done, self._buf = buf[:end], buf[end + 2:]
        # The common stream, only `data: ` lines each ending an event: every newline is in a separator.
        if done[:6] == b"data: ":
            events = done[6:].split(b"\n\ndata: ")
            if _LF not in b"".join(events):
                return events
        events = []
        for part in done.split(b"\n\n"):
            if part[:6] == b"data: " and _LF not in part:
                events.append(part[6:])
                continue
            data = [line[6:] if line.startswith(b"data: ") else line[5:]
                    for line in part.split(b"\n") if line.startswith(b"data:")]
            # other fields (event:, id:, retry:) and comments (":") carry nothing the gateway needs
            if data:
                events.append(b"\n".join(data))
        return events

    def close(self) -> list[bytes]:
        """Events left when the stream ends without a final blank line."""
        events = self.feed(b"\n\n") if self._buf else []
        self._buf = b""
        return events
