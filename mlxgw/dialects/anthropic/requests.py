"""Requests: the Anthropic body check, tool names and ids; request translation both ways lives in
`to_openai.py` (A->O) and `from_openai.py` (O->A).

A->O (`to_openai_request`): an Anthropic Messages body becomes an OpenAI chat-completions body for an
OpenAI-compatible backend. O->A (`from_openai_request`): an OpenAI body becomes an Anthropic Messages body.
Both build the target body from scratch, so fields the other side has no use for (cache_control,
context_management, container, mcp_servers, logprobs, seed, penalties, ...) never leak across.

Choices made where the reference leaves one (section numbers are the reference's):
- system blocks are joined with "\\n" into one string (1.2; some compatible servers reject array content);
- a mid-conversation `role: system` message (Claude Code's beta) stays an OpenAI system message in place;
- tool results go first as `tool` messages, images inside them follow in a `user` message (1.4, case 4);
  `is_error` results are prefixed with "Error: " so the model sees the failure (case 3);
- thinking blocks in history are dropped for OpenAI backends; `thinking` itself is not forwarded (the
  OpenAI-side equivalents differ per server and reject each other);
- tool names over 64 characters are shortened deterministically and restored in responses (case 6);
- tool ids are sanitised deterministically, so a tool_use and its tool_result stay paired (case 12);
- O->A: system/developer messages anywhere are hoisted, in order, as text blocks (case 9); `n > 1` is a
  400 (case 13); whitespace-only stop sequences are dropped (case 14); a history with tool blocks but no
  `tools` gets a no-op tool with tool_choice none (Anthropic requires `tools` then).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from mlxgw.dialects.jsonfast import BodyError, parse_body
from mlxgw.dialects.shapes import ShapeError, check_anthropic
from mlxgw.text import MAX_MODEL_NAME

DEFAULT_MAX_TOKENS = 4096
OPENAI_ID_MAX = 40
_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
class RequestError(ValueError):
    """A request the gateway refuses with 400: `param` names the field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


# --- the Anthropic request check --------------------------------------------------------------------


def parse_request(raw: bytes, require_max_tokens: bool = True) -> dict:
    """The Messages body as a dict; RequestError when it is not JSON or misses what the gateway needs
    (model, max_tokens unless counting tokens, messages). The rest is the backend's business."""
    try:
        body = parse_body(raw)
    except BodyError as exc:
        raise RequestError(f"There was an issue with your request body: {exc.reason}.") from None
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise RequestError("model: Field required" if model is None else "model: must be a non-empty string", "model")
    if len(model) > MAX_MODEL_NAME:
        raise RequestError(f"model: must be at most {MAX_MODEL_NAME} characters", "model")
    mt = body.get("max_tokens")
    if mt is None and require_max_tokens:
        raise RequestError("max_tokens: Field required", "max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 0):
        raise RequestError("max_tokens: must be a non-negative integer", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise RequestError("messages: Field required" if messages is None else "messages: must be an array",
                           "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant", "system"):
            raise RequestError(f"messages.{i}.role: must be 'user' or 'assistant'", f"messages.{i}.role")
        content = m.get("content")
        if not isinstance(content, (str, list)):
            raise RequestError(f"messages.{i}.content: must be a string or an array of content blocks",
                               f"messages.{i}.content")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("stream: must be a boolean", "stream")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise RequestError("system: must be a string or an array of text blocks", "system")
    try:
        check_anthropic(body)
    except ShapeError as exc:
        raise RequestError(exc.message, exc.param) from None
    return body


# --- names and ids ----------------------------------------------------------------------------------


def _hash(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def short_tool_name(name: str) -> str:
    """An OpenAI-valid function name for an Anthropic tool name: unchanged when it fits, else a
    55-character prefix, '_' and 8 hex characters of its sha256 (deterministic, so requests and history
    agree)."""
    if _OPENAI_NAME.match(name):
        return name
    clean = _BAD_ID_CHARS.sub("_", name) or "tool"
    return f"{clean[:55]}_{_hash(name, 8)}"


def openai_tool_id(tool_id: str) -> str:
    """An id OpenAI accepts (<= 40 characters), the same for a tool_use and its tool_result."""
    if tool_id and len(tool_id) <= OPENAI_ID_MAX:
        return tool_id
    return f"call_{_hash(tool_id, 32)}"


def anthropic_tool_id(tool_id) -> str:
    """An id matching ^[a-zA-Z0-9_-]+$, the same wherever the same upstream id appears."""
    if isinstance(tool_id, str) and _ANTHROPIC_ID.match(tool_id):
        return tool_id
    text = tool_id if isinstance(tool_id, str) else ""
    if not text:
        return "toolu_" + _hash(repr(tool_id), 24)
    return f"{_BAD_ID_CHARS.sub('_', text)}_{_hash(text, 8)}"


@dataclass
class ToolNames:
    """Short (upstream) name -> the client's original tool name, for the names that had to change."""

    original: dict[str, str] = field(default_factory=dict)

    def restore(self, name) -> str:
        name = name if isinstance(name, str) else ""
        return self.original.get(name, name)
