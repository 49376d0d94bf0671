"""Responses: a whole answer translated both ways, with stop reasons and usage (reference section 2).

`from_openai_response`: an OpenAI chat.completion -> an Anthropic Message (A->O direction).
`to_openai_response`: an Anthropic Message -> an OpenAI chat.completion (O->A direction).
"""

from __future__ import annotations

import time
import uuid

from mlxgw.dialects.anthropic.from_openai import tool_arguments
from mlxgw.dialects.anthropic.requests import ToolNames, anthropic_tool_id
from mlxgw.dialects.jsonfast import dumps

_TO_OPENAI_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
                     "pause_turn": "stop", "refusal": "content_filter", "model_context_window_exceeded": "length",
                     "compaction": "length"}  # fmt: skip


def _int(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def stop_reason(finish, has_tools: bool, refused: bool = False, matched_stop: str | None = None) -> str:
    """OpenAI finish_reason -> Anthropic stop_reason (2.3). `length` wins over tool calls; any tool call
    otherwise yields `tool_use`, even when the backend said `stop` (forced function calls do)."""
    if finish == "length":
        return "max_tokens"
    if has_tools:
        return "tool_use"
    if finish == "content_filter" or refused:
        return "refusal"
    if matched_stop is not None:
        return "stop_sequence"
    return "end_turn"


def finish_reason(reason, has_tools: bool) -> str:
    """Anthropic stop_reason -> OpenAI finish_reason."""
    if has_tools and reason in (None, "tool_use", "end_turn", "stop_sequence"):
        return "tool_calls"
    return _TO_OPENAI_FINISH.get(reason, "stop")


def usage_from_openai(u) -> dict:
    """OpenAI usage -> Anthropic usage (2.4): input_tokens excludes cached tokens. Never None."""
    u = u if isinstance(u, dict) else {}
    prompt, completion = _int(u.get("prompt_tokens")), _int(u.get("completion_tokens"))
    details = u.get("prompt_tokens_details") if isinstance(u.get("prompt_tokens_details"), dict) else {}
    cache_read = _int(details.get("cached_tokens"))
    cache_write = _int(details.get("cache_write_tokens") or u.get("cache_creation_input_tokens"))
    return {"input_tokens": max(prompt - cache_read - cache_write, 0), "output_tokens": completion,
            "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read}


def openai_usage(u) -> dict:
    """Anthropic usage -> OpenAI usage: prompt_tokens = input + cache writes + cache reads."""
    u = u if isinstance(u, dict) else {}
    cache_read = _int(u.get("cache_read_input_tokens"))
    prompt = _int(u.get("input_tokens")) + _int(u.get("cache_creation_input_tokens")) + cache_read
    completion = _int(u.get("output_tokens"))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cache_read}}


def audit_tokens(u) -> tuple[int | None, int | None, int | None]:
    """(input incl. cached, output, cached) of an Anthropic usage object, for the audit log."""
    if not isinstance(u, dict):
        return None, None, None
    cache_read = _int(u.get("cache_read_input_tokens"))
    total_in = _int(u.get("input_tokens")) + _int(u.get("cache_creation_input_tokens")) + cache_read
    return total_in, _int(u.get("output_tokens")), cache_read


def _message_id(upstream_id) -> str:
    if isinstance(upstream_id, str) and upstream_id.startswith("msg_"):
        return upstream_id
    return "msg_" + uuid.uuid4().hex


def _reasoning(msg: dict) -> str | None:
    for key in ("reasoning_content", "reasoning"):
        v = msg.get(key)
        if isinstance(v, str) and v:
            return v
        if isinstance(v, dict):
            text = v.get("text") or v.get("content")
            if isinstance(text, str) and text:
                return text
    return None


def from_openai_response(body: dict, model: str, names: ToolNames | None = None,
                         stop_sequences: list | None = None) -> dict:
    """A->O: an Anthropic Message for an OpenAI chat.completion. Blocks in Anthropic order: thinking,
    text, tool_use (2.2). `model` is the name the client asked for."""
    names = names or ToolNames()
    choices = body.get("choices") if isinstance(body.get("choices"), list) else []
    ch = choices[0] if choices and isinstance(choices[0], dict) else {}
    msg = ch.get("message") if isinstance(ch.get("message"), dict) else {}
    content: list[dict] = []
    reasoning = _reasoning(msg)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict) and isinstance(p.get("text"), str))
    refusal = msg.get("refusal") if isinstance(msg.get("refusal"), str) and msg.get("refusal") else None
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    if refusal:
        content.append({"type": "text", "text": refusal})
    calls = msg.get("tool_calls") if isinstance(msg.get("tool_calls"), list) else []
    if isinstance(msg.get("function_call"), dict):
        calls = [*calls, {"id": None, "function": msg["function_call"]}]
    for c in calls:
        if not isinstance(c, dict):
            continue
        fn = c.get("function") if isinstance(c.get("function"), dict) else {}
        content.append({"type": "tool_use", "id": anthropic_tool_id(c.get("id")) if c.get("id") else
                        "toolu_" + uuid.uuid4().hex[:24], "name": names.restore(fn.get("name")),
                        "input": tool_arguments(fn.get("arguments"))})
    matched = ch.get("stop_reason")  # vLLM reports the matched stop string here
    matched = matched if isinstance(matched, str) and stop_sequences and matched in stop_sequences else None
    reason = stop_reason(ch.get("finish_reason"), any(b["type"] == "tool_use" for b in content),
                         bool(refusal), matched)
    # The model that answered, as the backend names it; `model` only when the backend leaves it out.
    answered = body.get("model") if isinstance(body.get("model"), str) and body.get("model") else model
    return {"id": _message_id(body.get("id")), "type": "message", "role": "assistant", "model": answered,
            "content": content, "stop_reason": reason,
            "stop_sequence": matched if reason == "stop_sequence" else None,
            "usage": usage_from_openai(body.get("usage"))}


def to_openai_response(msg: dict, model: str) -> dict:
    """O->A: an OpenAI chat.completion for an Anthropic Message. Text blocks are concatenated, tool_use
    blocks become tool_calls in order; thinking text goes to the non-standard `reasoning_content` (as the
    stream's thinking deltas do), signatures and redacted thinking are dropped."""
    texts, calls, thinking = [], [], []
    for b in msg.get("content") if isinstance(msg.get("content"), list) else []:
        if not isinstance(b, dict):
            continue
        if b.get("type") == "text" and isinstance(b.get("text"), str):
            texts.append(b["text"])
        elif b.get("type") == "thinking" and isinstance(b.get("thinking"), str):
            thinking.append(b["thinking"])
        elif b.get("type") == "tool_use":
            calls.append({"id": str(b.get("id") or "call_" + uuid.uuid4().hex[:24]), "type": "function",
                          "function": {"name": str(b.get("name") or ""),
                                       "arguments": dumps(b.get("input") if b.get("input") is not None else {}).decode()}})
    message: dict = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    mid = msg.get("id")
    return {"id": f"chatcmpl-{mid[4:] if isinstance(mid, str) and mid.startswith('msg_') else uuid.uuid4().hex}",
            "object": "chat.completion", "created": int(time.time()),
            "model": msg.get("model") if isinstance(msg.get("model"), str) and msg.get("model") else model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason(msg.get("stop_reason"), bool(calls))}],
            "usage": openai_usage(msg.get("usage"))}
