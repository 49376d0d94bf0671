"""A->O: an Anthropic Messages body becomes an OpenAI chat-completions body for an OpenAI-compatible
backend (`to_openai_request`). The choices it makes are listed in `requests.py`'s docstring.
"""

from __future__ import annotations

from mlxgw.dialects.anthropic.requests import ToolNames, openai_tool_id, short_tool_name
from mlxgw.dialects.jsonfast import dumps
from mlxgw.dialects.openai import COMPATIBLE, ChatTarget


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
