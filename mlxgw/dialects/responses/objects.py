"""The Response object and its output items (reference section 5), shared by the non-streamed
translations and the stream event writer, so both give the same object.

Item ids are derived from the response id and the output index (`msg_<hex>_0`, `fc_<hex>_1`...), so the
streamed and the non-streamed path name the same items alike, and an id says which response made it.
The Response echoes the client's request (its own tools, not the flattened backend ones) with OpenAI's
defaults filled in; `user` and `usage` are omitted rather than null (the schema does not allow null).
"""

from __future__ import annotations

ITEM_PREFIX = {"message": "msg", "function_call": "fc", "custom_tool_call": "ctc", "reasoning": "rs"}
ERROR_CODES = frozenset({
    "server_error", "rate_limit_exceeded", "invalid_prompt", "vector_store_timeout", "invalid_image",
    "invalid_image_format", "invalid_base64_image", "invalid_image_url", "image_too_large", "image_too_small",
    "image_parse_error", "image_content_policy_violation", "invalid_image_mode", "image_file_too_large",
    "unsupported_image_media_type", "empty_image_file", "failed_to_download_image", "image_file_not_found"})  # fmt: skip


def item_id(response_id: str, kind: str, index: int) -> str:
    base = response_id[5:] if response_id.startswith("resp_") else response_id
    return f"{ITEM_PREFIX.get(kind, 'item')}_{base}_{index}"


def message_item(item_id: str, parts: list[dict], status: str = "completed") -> dict:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": parts}


def text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(text: str) -> dict:
    return {"type": "refusal", "refusal": text}


def reasoning_item(item_id: str, text: str, status: str = "completed", encrypted: str | None = None) -> dict:
    """A reasoning item carrying the backend's raw reasoning as `reasoning_text` (summary stays empty: no
    backend here writes summaries)."""
    item = {"type": "reasoning", "id": item_id, "status": status, "summary": [],
            "content": [{"type": "reasoning_text", "text": text}] if text else []}
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def logprobs_from_chat(lp) -> list[dict]:
    """Output-text logprobs (LogProb) from a chat choice's `logprobs` (its `content` entries)."""
    out = []
    for e in (lp.get("content") if isinstance(lp, dict) else None) or []:
        if not isinstance(e, dict) or not isinstance(e.get("token"), str):
            continue
        top = [{"token": t["token"], "logprob": t.get("logprob", 0.0), "bytes": t.get("bytes") or list(t["token"].encode())}
               for t in e.get("top_logprobs") or [] if isinstance(t, dict) and isinstance(t.get("token"), str)]
        out.append({"token": e["token"], "logprob": e.get("logprob", 0.0),
                    "bytes": e.get("bytes") or list(e["token"].encode()), "top_logprobs": top})
    return out


def delta_logprobs(logprobs: list[dict]) -> list[dict]:
    """The same logprobs as a text delta event carries them (ResponseLogProb: no bytes)."""
    return [{"token": e["token"], "logprob": e["logprob"],
             "top_logprobs": [{"token": t["token"], "logprob": t["logprob"]} for t in e["top_logprobs"]]}
            for e in logprobs]


def usage(input_tokens: int, output_tokens: int, cached: int = 0, cache_write: int = 0, reasoning: int = 0) -> dict:
    return {"input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_write},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + output_tokens}


def _int(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def usage_from_chat(u) -> dict | None:
    """ResponseUsage from a chat-completions usage object (None: the backend sent none; omit `usage`)."""
    if not isinstance(u, dict):
        return None
    pd = u.get("prompt_tokens_details") if isinstance(u.get("prompt_tokens_details"), dict) else {}
    cd = u.get("completion_tokens_details") if isinstance(u.get("completion_tokens_details"), dict) else {}
    return usage(_int(u.get("prompt_tokens")), _int(u.get("completion_tokens")), _int(pd.get("cached_tokens")),
                 0, _int(cd.get("reasoning_tokens")))


def usage_from_anthropic(u) -> dict | None:
    """ResponseUsage from Anthropic usage: its input_tokens exclude the cache, ours include it."""
    if not isinstance(u, dict) or not u:
        return None
    read, write = _int(u.get("cache_read_input_tokens")), _int(u.get("cache_creation_input_tokens"))
    return usage(_int(u.get("input_tokens")) + read + write, _int(u.get("output_tokens")), read, write, 0)


def audit_tokens(u) -> tuple[int | None, int | None, int | None]:
    """(input, output, cached) of a ResponseUsage, for the audit row."""
    if not isinstance(u, dict):
        return None, None, None
    return u.get("input_tokens"), u.get("output_tokens"), u["input_tokens_details"].get("cached_tokens")


def response_object(req: dict, response_id: str, created_at: int, status: str, output: list[dict], *,
                    usage: dict | None = None, error: dict | None = None, incomplete: str | None = None,
                    completed_at: int | None = None) -> dict:
    """A schema-valid Response echoing the request `req` (as parse_request returned it)."""
    reasoning = req.get("reasoning") if isinstance(req.get("reasoning"), dict) else {}
    text = req.get("text") if isinstance(req.get("text"), dict) else {}
    out = {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "completed_at": completed_at if status == "completed" else None,
        "error": error, "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": req.get("instructions"), "max_output_tokens": req.get("max_output_tokens"),
        "model": req.get("model"), "output": output,
        "parallel_tool_calls": req.get("parallel_tool_calls") is not False,
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": req.get("store") is not False,
        "temperature": req.get("temperature") if req.get("temperature") is not None else 1.0,
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "tool_choice": req.get("tool_choice") if req.get("tool_choice") is not None else "auto",
        "tools": req.get("tools") or [],
        "top_p": req.get("top_p") if req.get("top_p") is not None else 1.0,
        "truncation": req.get("truncation") or "disabled",
        "metadata": req.get("metadata") or {},
    }
    for key in ("user", "safety_identifier", "prompt_cache_key", "top_logprobs"):
        if req.get(key) is not None:
            out[key] = req[key]
    if usage is not None:
        out["usage"] = usage
    return out


def mark_incomplete(output: list[dict]) -> None:
    """Item statuses of an incomplete response, as the stream leaves them: every tool call, and a message
    no tool call follows (the items still open when the backend stopped), are `incomplete`."""
    last_call = max((i for i, it in enumerate(output) if it["type"] in ("function_call", "custom_tool_call")),
                    default=-1)
    for i, it in enumerate(output):
        if it["type"] in ("function_call", "custom_tool_call") or (it["type"] == "message" and i > last_call):
            it["status"] = "incomplete"


def failure(message: str, code: str = "server_error") -> dict:
    """A Response `error`: the code must be one of the spec's ResponseErrorCode values."""
    return {"code": code if code in ERROR_CODES else "server_error", "message": message}
