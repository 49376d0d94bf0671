"""Responses <-> Anthropic Messages (reference section 8).

Request (`to_anthropic_request`): the Responses body is first translated to chat completions
(`chat.to_chat_request`, so both wires share one reading of the conversation), then through the
gateway's existing chat -> Messages translation (`anthropic.from_openai_request`). What that gives:
- `instructions` and the leading system/developer messages -> `system`; later ones -> user text
  "[developer] ..." (the chat step's rule);
- an assistant message and its function_call items -> one assistant turn: text, then `tool_use
  {id: call_id, name, input}` (arguments parsed; empty or broken JSON -> {}); consecutive
  function_call_outputs -> one user turn of `tool_result` blocks;
- images: data URLs -> base64 `image` blocks (jpeg/png/gif/webp), http URLs -> `url` sources;
- `max_tokens` is required by Anthropic: `max_output_tokens`, else `default_max_tokens`
  (4096, the gateway's default for every translated Messages call);
- `reasoning.effort` -> `thinking {type: enabled, budget_tokens}` (low 1024, medium 4096, high 16384;
  xhigh/max clamp to high; none/minimal: off), max_tokens raised above the budget; not when a tool is
  forced or the history replays tool calls: reasoning items are dropped on translation (their
  encrypted_content included), and Anthropic refuses a tool loop whose earlier thinking blocks are missing;
- temperature clamped to 1, top_p only without temperature, `text.format` json_schema ->
  `output_config.format`, `safety_identifier`/`user` -> `metadata.user_id` (never an e-mail or phone).

Response (`from_anthropic_response`): blocks become items in order: `thinking` -> a reasoning item
(`reasoning_text`; `redacted_thinking` is dropped: it carries nothing readable), consecutive `text`
blocks -> one message with a part each, `tool_use` -> function_call (`call_id` = the tool_use id,
arguments = JSON of its input; namespaced/custom tools split back). stop_reason `max_tokens` and
`model_context_window_exceeded` -> incomplete/max_output_tokens, `refusal` -> incomplete/content_filter,
anything else -> completed. Usage: Anthropic's input_tokens exclude the cache, ours include it.
"""

from __future__ import annotations

from mlxgw.dialects.anthropic.from_openai import from_openai_request
from mlxgw.dialects.anthropic.requests import DEFAULT_MAX_TOKENS
from mlxgw.dialects.jsonfast import dumps
from mlxgw.dialects.responses import objects as ob
from mlxgw.dialects.responses.chat import to_chat_request
from mlxgw.dialects.responses.tools import ToolMap

INCOMPLETE = {"max_tokens": "max_output_tokens", "model_context_window_exceeded": "max_output_tokens",
              "refusal": "content_filter"}


def to_anthropic_request(body: dict, backend_model: str, history: list[dict] | None = None, *,
                         default_max_tokens: int = DEFAULT_MAX_TOKENS) -> dict:
    """The Messages body for a Responses request (see the module docstring)."""
    chat = to_chat_request(body, backend_model, history, forward_user=True)
    return from_openai_request(chat, backend_model, default_max_tokens)


def anthropic_status(stop_reason) -> tuple[str, str | None]:
    reason = INCOMPLETE.get(stop_reason)
    return ("incomplete", reason) if reason else ("completed", None)


def from_anthropic_response(msg: dict, req: dict, response_id: str, created_at: int,
                            completed_at: int | None = None) -> dict:
    """The Response for an Anthropic Message answering request `req`."""
    tools = ToolMap.from_request(req)
    output: list[dict] = []
    message: dict | None = None  # the message consecutive text blocks go into
    for block in msg.get("content") or []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking" and block.get("thinking"):
            output.append(ob.reasoning_item(ob.item_id(response_id, "reasoning", len(output)), block["thinking"]))
            message = None
        elif kind == "text":
            if message is None:
                message = ob.message_item(ob.item_id(response_id, "message", len(output)), [])
                output.append(message)
            message["content"].append(ob.text_part(block.get("text") or ""))
        elif kind == "tool_use":
            args = dumps(block.get("input") if isinstance(block.get("input"), dict) else {}).decode()
            output.append(tools.output_item(str(block.get("name") or ""), str(block.get("id") or ""), args,
                                            ob.item_id(response_id, "function_call", len(output))))
            message = None
    if not any(it["type"] in ("message", "function_call", "custom_tool_call") for it in output):
        output.append(ob.message_item(ob.item_id(response_id, "message", len(output)), [ob.text_part("")]))
    status, reason = anthropic_status(msg.get("stop_reason"))
    if status != "completed":
        ob.mark_incomplete(output)
    return ob.response_object(req, response_id, created_at, status, output, usage=ob.usage_from_anthropic(msg.get("usage")),
                              incomplete=reason, completed_at=completed_at if completed_at is not None else created_at)
