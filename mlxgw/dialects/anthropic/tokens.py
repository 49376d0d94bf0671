"""`count_tokens` for backends without a count endpoint: a documented approximation.

The estimate is ceil(characters / 4) over everything the model reads: the system prompt, every text,
tool_use input (as JSON), tool_result and thinking text of every message, and every tool definition (name,
description and input_schema as JSON), plus 3 tokens per message and 8 per tool for the chat template's
framing, and a flat 1,600 tokens per image or document (Anthropic's own figure for a ~1.15 megapixel
image). English text averages about 4 characters per token with the common BPE tokenizers, so the figure
is within roughly 15% for prose and code; it exists so clients (Claude Code's context meter, the VS Code
extension at start-up) get a number that counts system and tools too, not an exact bill.
"""

from __future__ import annotations

from mlxgw.dialects.jsonfast import dumps

PER_MESSAGE = 3
PER_TOOL = 8
PER_IMAGE = 1600


def _chars(content) -> tuple[int, int]:
    """(characters, images) of a message content or system value."""
    if isinstance(content, str):
        return len(content), 0
    chars = images = 0
    for b in content if isinstance(content, list) else []:
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        if kind in ("image", "document"):
            images += 1
        elif kind == "text":
            chars += len(b.get("text") or "")
        elif kind == "thinking":
            chars += len(b.get("thinking") or "")
        elif kind in ("tool_use", "server_tool_use"):
            chars += len(b.get("name") or "") + len(dumps(b.get("input") or {}))
        elif kind == "tool_result":
            c, i = _chars(b.get("content"))
            chars, images = chars + c, images + i
    return chars, images


def count_tokens(body: dict) -> int:
    """The approximate input tokens of a Messages request (see the module docstring)."""
    chars, images = _chars(body.get("system"))
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    for m in messages:
        if isinstance(m, dict):
            c, i = _chars(m.get("content"))
            chars, images = chars + c, images + i
    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    for t in tools:
        if isinstance(t, dict):
            chars += len(t.get("name") or "") + len(t.get("description") or "") + len(dumps(t.get("input_schema") or {}))
    return -(-chars // 4) + PER_MESSAGE * len(messages) + PER_TOOL * len(tools) + PER_IMAGE * images
