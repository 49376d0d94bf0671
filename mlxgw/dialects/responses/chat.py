"""Responses <-> chat completions (reference section 7).

Request (`to_chat_request`): the backend body is built from scratch.
- The conversation is the stored history (oldest first: input and output items of the previous
  responses, rebuilt by the caller from `previous_response_id`) followed by this request's input.
- `instructions` becomes the first system message (they are never inherited through the chain).
- `developer` becomes `system` (most local engines' chat templates know no developer role); leading
  system/developer messages are merged into one, and later ones become user messages prefixed
  "[developer]" / "[system]" (templates such as Qwen's refuse a system message after the first turn).
- An assistant message and the function_call items after it become one assistant message with
  `tool_calls` (split assistant turns break some templates); function_call_output -> role `tool`;
  custom tool calls travel as `{"input": ...}` function calls. A function_call_output whose call is
  nowhere in the conversation is a 400 (param `input`), never a fabricated call.
- Reasoning items (their encrypted_content included) are dropped: chat backends take no reasoning back.
  Built-in tool traffic (web_search_call...) and additional_tools items are dropped too (their tools are
  merged into `tools`).
- `include: ["message.output_text.logprobs"]` or `top_logprobs` -> `logprobs: true` (+ `top_logprobs`),
  and the chat logprobs come back on the output_text parts and text deltas;
- `text.format` json_schema/json_object -> `response_format`; `reasoning.effort` -> `reasoning_effort`
  (none: omitted; xhigh/max/unknown: high); `max_output_tokens` -> `max_tokens` (or
  `max_completion_tokens` for OpenAI's own models); a stream always asks `include_usage`.
  `metadata`, `store`, `user`, `prompt_cache_key`, `include`, `truncation` are not forwarded (local engines
  reject unknown fields; `user` only with `forward_user`).

Response (`from_chat_response`): reasoning (from `reasoning_content`/`reasoning`) -> a reasoning item,
content/refusal -> one message, each tool call -> a function_call (or custom_tool_call). finish_reason
`length` -> status incomplete, reason max_output_tokens (also when a server says `stop` although the
completion used exactly max_output_tokens); `content_filter` -> incomplete, content_filter.
"""

from __future__ import annotations

from mlxgw.dialects.jsonfast import dumps
from mlxgw.dialects.responses import objects as ob
from mlxgw.dialects.responses.requests import DROPPED_ITEM_TYPES, RequestError, input_items
from mlxgw.dialects.responses.tools import ToolMap, wrap_custom

LOGPROBS = "message.output_text.logprobs"
EFFORTS = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high"}


def conversation(body: dict, history: list[dict] | None) -> tuple[list[tuple[str, dict]], list[dict]]:
    """(where, item) pairs of history + this input, the items a backend can use, with `where` the field a
    RequestError names; and the request's own normalised input items. Checks that every tool output has
    its call somewhere before it."""
    own = input_items(body)
    pairs = [("previous_response_id", it) for it in history or []]
    pairs += [(f"input[{i}]", it) for i, it in enumerate(own)] if isinstance(body.get("input"), list) \
        else [("input", it) for it in own]
    calls: set[str] = set()
    out = []
    for where, it in pairs:
        kind = it.get("type", "message")
        if kind in DROPPED_ITEM_TYPES or kind == "additional_tools":
            continue
        if kind == "item_reference":
            raise RequestError(f"Item with id '{it.get('id')}' not found.", "input", None, status=404)
        if kind in ("function_call", "custom_tool_call"):
            calls.add(it["call_id"])
        elif kind in ("function_call_output", "custom_tool_call_output") and it["call_id"] not in calls:
            raise RequestError(f"No tool call found for function call output with call_id {it['call_id']}.",
                               "input", "invalid_value")
        out.append((where, it))
    return out, own


def output_text(output) -> str:
    """A tool output (string or parts) as text."""
    if isinstance(output, str):
        return output
    return "\n".join(p["text"] for p in output if isinstance(p, dict) and isinstance(p.get("text"), str))


def _chat_part(p: dict, where: str) -> dict:
    kind = p.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": p["text"]}
    if kind == "refusal":
        return {"type": "text", "text": p["refusal"]}
    if kind == "input_image":
        if not p.get("image_url"):
            raise RequestError("input_image by file_id is not supported by this gateway: send image_url",
                               f"{where}.file_id", "unsupported_parameter")
        image = {"url": p["image_url"]}
        detail = p.get("detail")
        if detail in ("low", "high", "auto", "original"):
            image["detail"] = "high" if detail == "original" else detail
        return {"type": "image_url", "image_url": image}
    if isinstance(p.get("file_data"), str):
        file = {"file_data": p["file_data"]}
        if isinstance(p.get("filename"), str):
            file["filename"] = p["filename"]
        return {"type": "file", "file": file}
    raise RequestError("input_file is supported only with file_data", f"{where}.file_data", "unsupported_parameter")


def _content(content, where: str):
    """Chat content: a string when every part is text, else parts."""
    if isinstance(content, str):
        return content
    parts = [_chat_part(p, f"{where}.content[{j}]") for j, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict))


def chat_messages(body: dict, history: list[dict] | None, tools: ToolMap) -> list[dict]:
    pairs, _ = conversation(body, history)
    messages: list[dict] = []
    system: list[str] = [body["instructions"]] if body.get("instructions") else []
    leading = True
    assistant: dict | None = None  # the open assistant message tool calls attach to
    for where, it in pairs:
        kind = it.get("type", "message")
        if kind == "message":
            role = it["role"]
            if role in ("system", "developer"):
                if leading:
                    system.append(_text(it["content"]))
                else:
                    messages.append({"role": "user", "content": f"[{role}] {_text(it['content'])}"})
                assistant = None
                continue
            leading = False
            if role == "assistant":
                assistant = {"role": "assistant", "content": _text(it["content"])}
                messages.append(assistant)
            else:
                messages.append({"role": "user", "content": _content(it["content"], where)})
                assistant = None
        elif kind in ("function_call", "custom_tool_call"):
            leading = False
            if assistant is None:
                assistant = {"role": "assistant", "content": None}
                messages.append(assistant)
            args = it["arguments"] if kind == "function_call" else wrap_custom(it["input"])
            assistant.setdefault("tool_calls", []).append(
                {"id": it["call_id"], "type": "function", "function": {"name": tools.call_name(it), "arguments": args}})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            messages.append({"role": "tool", "tool_call_id": it["call_id"], "content": output_text(it["output"])})
            assistant = None
        # reasoning: dropped (see the module docstring)
    if system:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system)})
    return messages


def response_format(body: dict) -> dict | None:
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {"name": fmt["name"], "schema": fmt["schema"]}
    for key in ("strict", "description"):
        if fmt.get(key) is not None:
            schema[key] = fmt[key]
    return {"type": "json_schema", "json_schema": schema}


def effort(body: dict) -> str | None:
    e = (body.get("reasoning") or {}).get("effort")
    if not isinstance(e, str) or e == "none":
        return None
    return EFFORTS.get(e, "high")


def to_chat_request(body: dict, backend_model: str, history: list[dict] | None = None, *,
                    max_tokens_field: str = "max_tokens", forward_user: bool = False) -> dict:
    """The chat-completions body for a Responses request (see the module docstring)."""
    tools = ToolMap.from_request(body)
    out: dict = {"model": backend_model, "messages": chat_messages(body, history, tools)}
    if tools:
        choice, keep = tools.chat_choice(body.get("tool_choice"))
        out["tools"] = [t for t in tools.chat_tools() if keep is None or t["function"]["name"] in keep]
        if choice is not None:
            out["tool_choice"] = choice
        if body.get("parallel_tool_calls") is not None:
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    elif isinstance(body.get("tool_choice"), dict) and body["tool_choice"].get("type") in ("function", "custom"):
        tools.chat_choice(body["tool_choice"])  # names a tool the request does not have: 400
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("max_output_tokens") is not None:
        out[max_tokens_field] = body["max_output_tokens"]
    rf = response_format(body)
    if rf is not None:
        out["response_format"] = rf
    e = effort(body)
    if e is not None:
        out["reasoning_effort"] = e
    if body.get("top_logprobs") or LOGPROBS in (body.get("include") or []):
        out["logprobs"] = True
        if body.get("top_logprobs"):
            out["top_logprobs"] = body["top_logprobs"]
    user = body.get("safety_identifier") or body.get("user")
    if forward_user and isinstance(user, str):
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def chat_status(finish, usage: dict | None, req: dict) -> tuple[str, str | None]:
    """(status, incomplete reason) for a chat finish_reason."""
    if finish == "length":
        return "incomplete", "max_output_tokens"
    if finish == "content_filter":
        return "incomplete", "content_filter"
    cap = req.get("max_output_tokens")
    if cap is not None and usage is not None and usage["output_tokens"] >= cap and finish == "stop":
        return "incomplete", "max_output_tokens"
    return "completed", None


def reasoning_text(msg: dict) -> str | None:
    r = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(r, dict):
        r = r.get("text") or r.get("content")
    return r if isinstance(r, str) and r else None


def from_chat_response(chat: dict, req: dict, response_id: str, created_at: int, completed_at: int | None = None) -> dict:
    """The Response for a (normalised or raw) chat completion answering request `req`."""
    choices = chat.get("choices") if isinstance(chat.get("choices"), list) else []
    ch = choices[0] if choices and isinstance(choices[0], dict) else {}
    msg = ch.get("message") if isinstance(ch.get("message"), dict) else {}
    usage = ob.usage_from_chat(chat.get("usage"))
    status, reason = chat_status(ch.get("finish_reason"), usage, req)
    tools = ToolMap.from_request(req)
    output: list[dict] = []
    r = reasoning_text(msg)
    if r:
        output.append(ob.reasoning_item(ob.item_id(response_id, "reasoning", 0), r))
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    calls = [c for c in msg.get("tool_calls") or [] if isinstance(c, dict)]
    parts = []
    if isinstance(content, str) and (content or not calls):
        parts.append({**ob.text_part(content), "logprobs": ob.logprobs_from_chat(ch.get("logprobs"))})  # an empty answer is one empty part, never invented text
    if isinstance(msg.get("refusal"), str) and msg["refusal"]:
        parts.append(ob.refusal_part(msg["refusal"]))
    if parts or not calls:
        output.append(ob.message_item(ob.item_id(response_id, "message", len(output)), parts or [ob.text_part("")]))
    for k, c in enumerate(calls):
        fn = c.get("function") if isinstance(c.get("function"), dict) else {}
        args = fn.get("arguments")
        args = args if isinstance(args, str) else dumps(args or {}).decode()
        call_id = c.get("id") if isinstance(c.get("id"), str) and c["id"] else f"call_{response_id[5:]}_{k}"
        index = len(output)
        output.append(tools.output_item(str(fn.get("name") or ""), call_id, args,
                                        ob.item_id(response_id, "function_call", index)))
    if status != "completed":
        ob.mark_incomplete(output)
    return ob.response_object(req, response_id, created_at, status, output, usage=usage, incomplete=reason,
                              completed_at=completed_at if completed_at is not None else created_at)
