"""Requests: the Anthropic body check, and request translation both ways.

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

from mlxgw.dialects.jsonfast import BodyError, DecodeError, dumps, loads, parse_body
from mlxgw.dialects.openai import COMPATIBLE, ChatTarget
from mlxgw.dialects.shapes import ShapeError, check_anthropic
from mlxgw.text import MAX_MODEL_NAME

DEFAULT_MAX_TOKENS = 4096
OPENAI_ID_MAX = 40
_ANTHROPIC_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
_OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BAD_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"^data:([^;,]+)(?:;[^,]*)?;base64,(.*)$", re.S)
_EMAIL_OR_PHONE = re.compile(r"@|^\+?[\d\s().-]{7,}$")
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
EFFORT_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
NOOP_TOOL = {"name": "noop", "description": "Placeholder: this conversation used tools that are not offered now.",
             "input_schema": {"type": "object", "properties": {}}}  # fmt: skip


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


# --- A->O ---------------------------------------------------------------------------------------------



def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _image_part(block: dict) -> dict | None:
    src = block.get("source")
    if not isinstance(src, dict):
        return None
    if src.get("type") == "base64" and isinstance(src.get("data"), str):
        return {"type": "image_url", "image_url": {"url": f"data:{src.get('media_type') or 'image/png'};base64,{src['data']}"}}
    if src.get("type") == "url" and isinstance(src.get("url"), str):
        return {"type": "image_url", "image_url": {"url": src["url"]}}
    return None


def _document_part(block: dict) -> dict | None:
    src = block.get("source")
    if not isinstance(src, dict):
        return None
    if src.get("type") == "text" and isinstance(src.get("data"), str):
        return {"type": "text", "text": src["data"]}
    if src.get("type") == "base64" and isinstance(src.get("data"), str):
        return {"type": "file", "file": {"filename": block.get("title") or "document.pdf",
                                         "file_data": f"data:{src.get('media_type') or 'application/pdf'};base64,{src['data']}"}}
    return None


def _parts_message(role: str, parts: list[dict]) -> dict:
    """A user/system message: a plain string when it is text only (the most portable form)."""
    if all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "\n".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _tool_result_messages(block: dict) -> tuple[dict, list[dict]]:
    """One tool_result -> (the `tool` message, image parts that must follow in a user message)."""
    content = block.get("content")
    texts, images = [], []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for b in content:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text" and isinstance(b.get("text"), str):
                texts.append(b["text"])
            elif b.get("type") == "image":
                part = _image_part(b)
                if part:
                    images.append(part)
            elif b.get("type") == "document":
                part = _document_part(b)
                if part and part["type"] == "text":
                    texts.append(part["text"])
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    tid = openai_tool_id(str(block.get("tool_use_id") or ""))
    return {"role": "tool", "tool_call_id": tid, "content": text}, images


def _user_messages(content, role: str = "user") -> list[dict]:
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    tools: list[dict] = []
    parts: list[dict] = []
    tool_images: list[dict] = []
    for b in content:
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        if kind == "text":
            if isinstance(b.get("text"), str) and b["text"]:
                parts.append({"type": "text", "text": b["text"]})
        elif kind == "image":
            part = _image_part(b)
            if part:
                parts.append(part)
        elif kind == "document":
            part = _document_part(b)
            if part:
                parts.append(part)
        elif kind == "tool_result":
            msg, images = _tool_result_messages(b)
            tools.append(msg)
            tool_images.extend(images)
        # thinking, server-tool results, tool_reference, ...: nothing an OpenAI backend can read
    out = tools
    if tool_images or parts:
        out.append(_parts_message(role, tool_images + parts))
    return out


def _assistant_message(content, names: dict[str, str]) -> dict | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts, calls = [], []
    for b in content:
        if not isinstance(b, dict):
            continue
        if b.get("type") == "text" and isinstance(b.get("text"), str):
            texts.append(b["text"])
        elif b.get("type") in ("tool_use", "server_tool_use"):
            name = str(b.get("name") or "")
            calls.append({"id": openai_tool_id(str(b.get("id") or "")), "type": "function",
                          "function": {"name": names.get(name) or short_tool_name(name or "tool"),
                                       "arguments": dumps(b.get("input") if b.get("input") is not None else {}).decode()}})
    msg: dict = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    elif not texts:
        return None  # only thinking: nothing to replay
    return msg


def _tools_to_openai(tools, names: ToolNames) -> tuple[list[dict], dict[str, str]]:
    out, short_of = [], {}
    for t in tools if isinstance(tools, list) else []:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            continue
        ttype = t.get("type")
        if ttype not in (None, "custom") and "input_schema" not in t:
            continue  # a server tool (web_search_*, bash_*, ...): no OpenAI function equivalent
        name = t["name"]
        short = short_tool_name(name)
        if short != name:
            names.original[short] = name
        short_of[name] = short
        fn: dict = {"name": short, "parameters": t.get("input_schema") or {"type": "object", "properties": {}}}
        if isinstance(t.get("description"), str):
            fn["description"] = t["description"]
        out.append({"type": "function", "function": fn})
    return out, short_of


def _tool_choice_to_openai(choice, short_of: dict[str, str], out: dict) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function",
                              "function": {"name": short_of.get(choice["name"], short_tool_name(choice["name"]))}}
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False


def to_openai_request(body: dict, backend_model: str, target: ChatTarget = COMPATIBLE,
                      names: ToolNames | None = None) -> dict:
    """A->O: the OpenAI chat-completions body for an Anthropic Messages body. `names` (filled here)
    remembers shortened tool names so the response can restore them."""
    names = names if names is not None else ToolNames()
    tools, short_of = _tools_to_openai(body.get("tools"), names)
    messages: list[dict] = []
    system = body.get("system")
    if system:
        text = _text_of(system)
        if text:
            messages.append({"role": "system", "content": text})
    for m in body.get("messages") or []:
        role, content = m.get("role"), m.get("content")
        if role == "assistant":
            msg = _assistant_message(content, short_of)
            if msg is not None:
                messages.append(msg)
        elif role == "system":  # mid-conversation system message (Claude Code)
            text = _text_of(content)
            if text:
                messages.append({"role": "system", "content": text})
        else:
            messages.extend(_user_messages(content))
    out: dict = {"model": backend_model, "messages": messages}
    mt = body.get("max_tokens")
    if isinstance(mt, int) and mt > 0:
        out[target.max_tokens_field] = mt
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stops = [s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s]
    if stops:
        out["stop"] = stops[: target.max_stop] if target.max_stop else stops
    if tools:
        out["tools"] = tools
        _tool_choice_to_openai(body.get("tool_choice"), short_of, out)
    meta = body.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str) and meta["user_id"]:
        out["user"] = meta["user_id"][:64]
    fmt = (body.get("output_config") or {}).get("format") if isinstance(body.get("output_config"), dict) else None
    fmt = fmt or body.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        out["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": "structured_output", "schema": fmt["schema"]}}
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


# --- O->A ---------------------------------------------------------------------------------------------


def tool_arguments(args) -> dict:
    """OpenAI's tool-call `arguments` (a JSON string, maybe empty or broken) as Anthropic's `input` object."""
    if isinstance(args, dict):
        return args
    if not isinstance(args, str) or not args.strip():
        return {}
    try:
        value = loads(args)
    except DecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def _image_block(url: str) -> dict:
    m = _DATA_URL.match(url)
    if m:
        media = m.group(1).lower()
        if media not in IMAGE_TYPES:
            raise RequestError(f"image type {media} is not supported: use jpeg, png, gif or webp", "messages")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": m.group(2)}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks_from_openai(content, where: str) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out = []
    for p in content if isinstance(content, list) else []:
        if not isinstance(p, dict):
            continue
        kind = p.get("type")
        if kind == "text" and isinstance(p.get("text"), str) and p["text"]:
            block = {"type": "text", "text": p["text"]}
            if isinstance(p.get("cache_control"), dict):
                block["cache_control"] = p["cache_control"]
            out.append(block)
        elif kind == "image_url":
            iu = p.get("image_url")
            url = iu.get("url") if isinstance(iu, dict) else iu
            if isinstance(url, str) and url:
                out.append(_image_block(url))
        elif kind == "file" and isinstance(p.get("file"), dict):
            data = p["file"].get("file_data")
            m = _DATA_URL.match(data) if isinstance(data, str) else None
            if m:
                out.append({"type": "document", "source": {"type": "base64", "media_type": m.group(1),
                                                           "data": m.group(2)}})
        elif kind == "refusal" and isinstance(p.get("refusal"), str) and p["refusal"]:
            out.append({"type": "text", "text": p["refusal"]})
    return out


def _tool_result_content(content):
    if isinstance(content, str) or content is None:
        return content or ""
    blocks = [b for b in _blocks_from_openai(content, "tool") if b["type"] == "text"]
    return blocks or ""


def from_openai_request(body: dict, backend_model: str, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    """O->A: the Anthropic Messages body for an OpenAI chat-completions body. RequestError for what
    Anthropic cannot do (n > 1)."""
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise RequestError("n > 1 is not supported by this model's provider (Anthropic): send n = 1", "n")
    system: list[dict] = []
    turns: list[dict] = []  # {"role", "content": [blocks]}
    has_tool_blocks = False
    ids: dict[str, str] = {}

    def tid(raw) -> str:
        key = raw if isinstance(raw, str) else repr(raw)
        if key not in ids:
            ids[key] = anthropic_tool_id(raw)
        return ids[key]

    def add(role: str, blocks: list[dict]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            # tool results must open a user turn: merge text after them, never before
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": list(blocks)})

    for i, m in enumerate(body.get("messages") or []):
        role = m.get("role")
        if role in ("system", "developer"):
            system.extend(b for b in _blocks_from_openai(m.get("content"), f"messages[{i}]") if b["type"] == "text")
        elif role == "user":
            add("user", _blocks_from_openai(m.get("content"), f"messages[{i}]"))
        elif role == "assistant":
            blocks = _blocks_from_openai(m.get("content"), f"messages[{i}]")
            if isinstance(m.get("refusal"), str) and m["refusal"]:
                blocks.append({"type": "text", "text": m["refusal"]})
            calls = list(m.get("tool_calls") or [])
            if isinstance(m.get("function_call"), dict):
                calls.append({"id": f"call_{i}", "function": m["function_call"]})
            for c in calls:
                fn = c.get("function") if isinstance(c, dict) and isinstance(c.get("function"), dict) else {}
                blocks.append({"type": "tool_use", "id": tid(c.get("id")), "name": str(fn.get("name") or ""),
                               "input": tool_arguments(fn.get("arguments"))})
                has_tool_blocks = True
            add("assistant", blocks)
        elif role in ("tool", "function"):
            call_id = m.get("tool_call_id") if role == "tool" else f"call_{i}"
            block = {"type": "tool_result", "tool_use_id": tid(call_id),
                     "content": _tool_result_content(m.get("content"))}
            has_tool_blocks = True
            if turns and turns[-1]["role"] == "user" and turns[-1]["content"] and \
                    all(b["type"] == "tool_result" for b in turns[-1]["content"]):
                turns[-1]["content"].append(block)
            else:
                turns.append({"role": "user", "content": [block]})
    if turns and turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": "(continue)"}]})
    messages = [{"role": t["role"], "content": t["content"]} for t in turns]
    mt = body.get("max_completion_tokens") or body.get("max_tokens")
    out: dict = {"model": backend_model, "max_tokens": mt if isinstance(mt, int) and mt > 0 else default_max_tokens,
                 "messages": messages}
    if system:
        out["system"] = system
    temperature, top_p = body.get("temperature"), body.get("top_p")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        out["temperature"] = min(float(temperature), 1.0) if temperature > 1 else temperature
    if isinstance(top_p, (int, float)) and not isinstance(top_p, bool) and "temperature" not in out:
        out["top_p"] = top_p  # newer Claude models refuse temperature and top_p together
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else (stop if isinstance(stop, list) else [])
    stops = [s for s in stops if isinstance(s, str) and s.strip()]
    if stops:
        out["stop_sequences"] = stops
    tools_in = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        keep = {(t.get("function") or {}).get("name") for t in allowed.get("tools") or [] if isinstance(t, dict)}
        tools_in = [t for t in tools_in if (t.get("function") or {}).get("name") in keep]
        choice = "required" if allowed.get("mode") == "required" else "auto"
    tools = []
    for t in tools_in:
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        if not isinstance(fn.get("name"), str):
            continue
        tool = {"name": fn["name"], "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
        if isinstance(fn.get("description"), str):
            tool["description"] = fn["description"]
        tools.append(tool)
    if tools:
        out["tools"] = tools
        tc: dict | None = None
        if choice == "auto":
            tc = {"type": "auto"}
        elif choice == "required":
            tc = {"type": "any"}
        elif choice == "none":
            tc = {"type": "none"}
        elif isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str):
            tc = {"type": "tool", "name": choice["function"]["name"]}
        if body.get("parallel_tool_calls") is False:
            tc = tc or {"type": "auto"}
            if tc["type"] != "none":
                tc["disable_parallel_tool_use"] = True
        if tc is not None:
            out["tool_choice"] = tc
    elif has_tool_blocks:
        out["tools"] = [NOOP_TOOL]
        out["tool_choice"] = {"type": "none"}
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user and not _EMAIL_OR_PHONE.search(user):
        out["metadata"] = {"user_id": user}
    effort = body.get("reasoning_effort")
    budget = EFFORT_BUDGETS.get(effort) if isinstance(effort, str) else None
    forced = out.get("tool_choice", {}).get("type") in ("any", "tool")
    replays_tools = any(t["role"] == "assistant" and any(b["type"] == "tool_use" for b in t["content"]) for t in turns)
    if budget and not forced and not replays_tools:
        # Thinking cannot be replayed by an OpenAI client (no signatures), so a tool loop runs without it.
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if out["max_tokens"] <= budget:
            out["max_tokens"] = budget + out["max_tokens"]
        out.pop("temperature", None)
        out.pop("top_p", None)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if body.get("stream"):
        out["stream"] = True
    return out

