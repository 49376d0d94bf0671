"""O->A: an OpenAI chat-completions body becomes an Anthropic Messages body (`from_openai_request`).
The choices it makes are listed in `requests.py`'s docstring.
"""

from __future__ import annotations

import re

from mlxgw.dialects.anthropic.requests import DEFAULT_MAX_TOKENS, RequestError, anthropic_tool_id
from mlxgw.dialects.jsonfast import DecodeError, loads

DATA_URL = re.compile(r"^data:([^;,]+)(?:;[^,]*)?;base64,(.*)$", re.S)
EMAIL_OR_PHONE = re.compile(r"@|^\+?[\d\s().-]{7,}$")
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
EFFORT_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
NOOP_TOOL = {"name": "noop", "description": "Placeholder: this conversation used tools that are not offered now.",
             "input_schema": {"type": "object", "properties": {}}}  # fmt: skip


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
    m = DATA_URL.match(url)
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
            m = DATA_URL.match(data) if isinstance(data, str) else None
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
    if isinstance(user, str) and user and not EMAIL_OR_PHONE.search(user):
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
