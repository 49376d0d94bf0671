"""Responses passed through to OpenAI's own /v1/responses, with the gateway keeping the state.

Which side keeps the conversation: the gateway, always. A `store: true` response is stored by the
gateway whichever backend made it, and OpenAI is asked with `store: false` and the whole conversation
in `input` (the history the caller rebuilt from `previous_response_id`, then this request's input),
never with a `previous_response_id` OpenAI would not know. So a conversation can move between OpenAI and
any other backend at any turn (failover included), and deleting a response at the gateway deletes it.

What changes on the way up (`to_openai_request`):
- `model` is the backend's; `previous_response_id` is replaced by the expanded history; `store` is
  false; `include` gains `reasoning.encrypted_content`, so OpenAI's reasoning can be replayed statelessly;
- replayed reasoning items that did not come from OpenAI (no `encrypted_content`, e.g. a local model's
  reasoning_text) are dropped: OpenAI would answer "Item with id 'rs_...' not found";
- the gateway-minted `id`s of replayed messages and calls are removed (OpenAI looks up ids it does not
  know when store is false); reasoning items keep theirs (OpenAI pairs them with encrypted_content).
On the way back (`from_openai_response`): the Response echoes the client's `store` and
`previous_response_id` (OpenAI saw neither) and the client's model name.
"""

from __future__ import annotations

from mlxgw.dialects.responses.requests import input_items

ENCRYPTED = "reasoning.encrypted_content"


def _replayable(item: dict) -> dict | None:
    kind = item.get("type", "message")
    if kind == "reasoning":
        return item if item.get("encrypted_content") else None
    if kind == "item_reference":
        return item
    return {k: v for k, v in item.items() if k != "id"}


def to_openai_request(body: dict, backend_model: str, history: list[dict] | None = None) -> dict:
    """The body for OpenAI's /v1/responses (see the module docstring). The client's dict is untouched."""
    out = {k: v for k, v in body.items() if k not in ("previous_response_id", "client_metadata")}
    out["model"] = backend_model
    items = list(history or []) + input_items(body)
    out["input"] = [r for r in map(_replayable, items) if r is not None]
    out["store"] = False
    include = list(body.get("include") or [])
    if ENCRYPTED not in include:
        include.append(ENCRYPTED)
    out["include"] = include
    return out


def from_openai_response(resp: dict, req: dict) -> dict:
    """OpenAI's Response as the client's: its model name, `store` and `previous_response_id`."""
    return {**resp, "model": req.get("model"), "store": req.get("store") is not False,
            "previous_response_id": req.get("previous_response_id")}


def from_openai_event(event: dict, req: dict) -> dict:
    """A streamed event of OpenAI's with its Response (created, in_progress, completed...) as the client's."""
    if isinstance(event.get("response"), dict):
        return {**event, "response": from_openai_response(event["response"], req)}
    return event
