"""The OpenAI Responses API dialect (/v1/responses), translated onto chat-completions and Anthropic
Messages backends. Pure functions and small state machines over dicts and bytes; the server does the I/O
and the store keeps the conversations (mlxgw.store.responses).

    requests   parse_request (the CreateResponse check, RequestError naming the field), input_items
               (the normalised, id-carrying input to store), item_reference helpers
    tools      ToolMap: function/custom/namespace tools flattened for the backends and split back
    objects    the Response object (request echo, item ids, usage, statuses) both paths build
    chat       Responses -> chat completions request; chat completion -> Response
    anthropic  Responses -> Messages request; Message -> Response
    events     ResponsesEventWriter: the stream events, sequence numbers, terminal Response
    streams    chat chunks / Anthropic events -> events (the relay's Translator shape)
    passthrough  OpenAI's own Responses API: the gateway keeps the state (store/previous_response_id)

Reference: ../shared/reference/responses-api.md; every Response and event validates against
../shared/conformance/openai-responses.schema.json (tests/test_dialect_responses.py).
"""

from mlxgw.dialects.responses.anthropic import from_anthropic_response, to_anthropic_request
from mlxgw.dialects.responses.chat import from_chat_response, to_chat_request
from mlxgw.dialects.responses.events import ResponsesEventWriter, sse
from mlxgw.dialects.responses import passthrough
from mlxgw.dialects.responses.objects import audit_tokens, failure, response_object
from mlxgw.dialects.responses.requests import (
    BUILTIN_TOOL_TYPES, RequestError, deleted, input_items, item_references, new_id, parse_request,
    previous_response_not_found, resolve_references, response_not_found,
)  # fmt: skip
from mlxgw.dialects.responses.streams import AnthropicToResponsesStream, ChatToResponsesStream
from mlxgw.dialects.responses.tools import ToolMap

__all__ = [
    "AnthropicToResponsesStream", "BUILTIN_TOOL_TYPES", "ChatToResponsesStream", "RequestError", "deleted",
    "previous_response_not_found", "response_not_found",
    "ResponsesEventWriter", "ToolMap", "audit_tokens", "failure", "from_anthropic_response",
    "from_chat_response", "input_items", "passthrough", "item_references", "new_id", "parse_request", "resolve_references",
    "response_object", "sse", "to_anthropic_request", "to_chat_request",
]
