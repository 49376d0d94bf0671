"""The failures an upstream call reports, whoever made it: a backend adapter or the supervisor of local
engines. A leaf module (it imports nothing from mlxgw), so the failover policy, the backends and the
supervisor all classify failures by type without importing one another.

    UpstreamError                 base; `provider` names the backend
    ├── UpstreamConnectError      could not connect, or the connection dropped before any response
    │   └── EngineError           a local model could not be served (start failed, timed out, no room)
    ├── UpstreamTimeout           `kind` is connect | first_token | idle | total
    ├── UpstreamStatusError       the upstream answered an HTTP error: `status`, raw `body`, `retry_after`,
    │                             `request_id` (the upstream's, when it sent one)
    ├── UpstreamProtocolError     the upstream answered 2xx with a body that cannot be used
    └── ContextExceeded           a local model's context cannot hold the prompt (counted before any
                                  call, so no engine was started): `prompt_tokens`, `context_length`
"""

from __future__ import annotations


class UpstreamError(Exception):
    def __init__(self, provider: str, message: str):
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.summary = message  # one line for the attempt list (an engine's failure without its log tail)


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    def __init__(self, provider: str, kind: str, seconds: float):
        super().__init__(provider, f"provider '{provider}' timed out ({kind} timeout of {seconds:g}s)")
        self.kind = kind
        self.seconds = seconds


class UpstreamStatusError(UpstreamError):
    def __init__(self, provider: str, status: int, body: bytes, retry_after: str | None = None,
                 request_id: str | None = None):
        super().__init__(provider, f"provider '{provider}' answered HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.request_id = request_id


class UpstreamProtocolError(UpstreamError):
    pass


class EngineError(UpstreamConnectError):
    """A local model could not be served (start failed, timed out, or does not fit). It is an
    UpstreamConnectError, so the server answers 502 `upstream_unavailable` and failover may take over.
    `log_tail` holds the engine's last log lines when there are any."""

    def __init__(self, provider: str, message: str, log_tail: str = ""):
        super().__init__(provider, message + (f"\n--- last lines of the engine log ---\n{log_tail}" if log_tail else ""))
        self.summary = message
        self.log_tail = log_tail


class ContextExceeded(UpstreamError):
    """The prompt alone does not fit a local model's context (or, with `on_overflow: fail`, the prompt
    plus the tokens the request may generate). The attempt loop moves on to the next target at once; with
    none left, the client gets its dialect's 400 naming both numbers."""

    def __init__(self, provider: str, model: str, prompt_tokens: int, context_length: int,
                 max_tokens: int | None = None):
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length
        self.max_tokens = max_tokens
        asked = f" + {max_tokens} max_tokens" if max_tokens else ""
        super().__init__(provider, f"prompt is too long: {prompt_tokens} tokens{asked} > {context_length} maximum "
                                   f"(the context of local model '{model}' of provider '{provider}')")
