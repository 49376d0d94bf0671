"""The Anthropic Messages dialect, and its translation to and from OpenAI chat completions.

One job per module, all pure functions over dicts and bytes (the server and the backends do the I/O):

    requests   Anthropic request check; Anthropic request -> OpenAI request (A->O); OpenAI request ->
               Anthropic request (O->A); tool-name shortening and tool-id sanitising both ways
    responses  OpenAI chat.completion -> Anthropic Message; Anthropic Message -> OpenAI chat.completion;
               stop reasons and usage (cached tokens included)
    streams    OpenAI chunk stream -> Anthropic SSE events; Anthropic event stream -> OpenAI chunks;
               Anthropic SSE framing
    errors     error bodies and status mapping each way, mid-stream error events
    tokens     the count_tokens approximation for backends without such an endpoint

Direction names follow ../shared/reference/anthropic-openai-translation.md: "A->O" is an Anthropic client
on an OpenAI-compatible backend, "O->A" an OpenAI client on an Anthropic backend.
"""

from mlxgw.dialects.anthropic.errors import (
    error_body, error_type, from_openai_error, openai_error_from_anthropic, stream_error_event,
)  # fmt: skip
from mlxgw.dialects.anthropic.from_openai import from_openai_request
from mlxgw.dialects.anthropic.requests import RequestError, ToolNames, parse_request
from mlxgw.dialects.anthropic.to_openai import to_openai_request
from mlxgw.dialects.anthropic.responses import (
    audit_tokens, from_openai_response, openai_usage, to_openai_response, usage_from_openai,
)  # fmt: skip
from mlxgw.dialects.anthropic.streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream, event
from mlxgw.dialects.anthropic.tokens import count_tokens

__all__ = [
    "AnthropicToOpenAIStream", "OpenAIToAnthropicStream", "RequestError", "ToolNames",
    "count_tokens", "error_body", "error_type", "event", "from_openai_error", "from_openai_request",
    "from_openai_response", "openai_error_from_anthropic", "openai_usage", "parse_request",
    "stream_error_event", "to_openai_request", "to_openai_response", "audit_tokens", "usage_from_openai",
]
