"""Errors each way (reference section 4): Anthropic's body shape and types, the status mapping between
the two dialects, and the stream events that end a stream which failed after its first byte.

Anthropic: {"type": "error", "error": {"type", "message"}, "request_id"?}.
OpenAI:    {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

from mlxgw.dialects.jsonfast import DecodeError, loads

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
          403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
          500: "api_error", 504: "timeout_error", 529: "overloaded_error"}  # fmt: skip
# Anthropic error type -> the status an OpenAI client gets (529 is unknown to plain HTTP tooling).
_OPENAI_STATUS = {529: 503}
_OPENAI_CODES = {"authentication_error": "invalid_api_key", "not_found_error": "model_not_found",
                 "rate_limit_error": "rate_limit_exceeded", "overloaded_error": "server_is_overloaded",
                 "billing_error": "insufficient_quota", "timeout_error": "timeout"}  # fmt: skip
_OPENAI_TYPES = {"authentication_error": "invalid_request_error", "permission_error": "invalid_request_error",
                 "not_found_error": "invalid_request_error", "request_too_large": "invalid_request_error",
                 "rate_limit_error": "rate_limit_error", "billing_error": "insufficient_quota",
                 "api_error": "server_error", "overloaded_error": "server_error",
                 "timeout_error": "timeout_error"}  # fmt: skip


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status (other 4xx: invalid_request_error; other 5xx: api_error)."""
    t = _TYPES.get(status)
    if t:
        return t
    if status == 503:
        return "overloaded_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(message: str, status: int = 400, type: str | None = None, request_id: str | None = None) -> dict:
    body: dict = {"type": "error", "error": {"type": type or error_type(status), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return body


def _json(raw: bytes):
    try:
        return loads(raw) if raw else None
    except DecodeError:
        return None


def from_openai_error(status: int, raw: bytes, provider: str) -> tuple[int, dict]:
    """(status, Anthropic body) for an OpenAI-dialect upstream error (4.3): quota exhaustion becomes 402
    billing_error (no pointless retries), 503 becomes 529 overloaded_error, context-length errors keep
    Anthropic's "prompt is too long" wording that clients match on."""
    data = _json(raw)
    err = data.get("error") if isinstance(data, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    etype = err.get("type") if isinstance(err, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]:
        message = err["message"]
    elif isinstance(err, str) and err:
        message = err
    elif isinstance(data, dict) and isinstance(data.get("message") or data.get("detail"), str):
        message = data.get("message") or data.get("detail")
    else:
        message = raw.decode("utf-8", "replace").strip()[:2000] or f"HTTP {status}"
    if code == "insufficient_quota" or etype == "insufficient_quota":
        return 402, error_body(f"provider '{provider}': {message}", 402)
    if status == 503:
        return 529, error_body(f"provider '{provider}' is overloaded: {message}", 529)
    if code == "context_length_exceeded":
        return 400, error_body(f"prompt is too long: {message}", 400)
    out = status if 400 <= status < 600 else 502
    return out, error_body(f"provider '{provider}' answered {status}: {message}", out)


def openai_error_from_anthropic(status: int, raw: bytes, provider: str) -> tuple[int, dict]:
    """(status, OpenAI body) for an Anthropic upstream error: 529 overloaded becomes 503; the type and a
    fitting code follow OpenAI's conventions; the upstream's message is kept."""
    data = _json(raw)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        atype, message = str(err.get("type") or error_type(status)), err["message"]
    else:
        atype, message = error_type(status), raw.decode("utf-8", "replace").strip()[:2000] or f"HTTP {status}"
    out = _OPENAI_STATUS.get(status, status if 400 <= status < 600 else 502)
    code = _OPENAI_CODES.get(atype)
    if atype == "invalid_request_error" and "prompt is too long" in message:
        code = "context_length_exceeded"
    return out, {"error": {"message": f"provider '{provider}' answered {status}: {message}",
                           "type": _OPENAI_TYPES.get(atype, "invalid_request_error" if out < 500 else "server_error"),
                           "param": None, "code": code}}


def stream_error_event(error, status: int | None = None) -> dict:
    """The Anthropic `error` event for an OpenAI in-stream error object (its type from status/code)."""
    err = error if isinstance(error, dict) else {"message": str(error)}
    code, etype = str(err.get("code") or ""), str(err.get("type") or "")
    text = f"{code} {etype}".lower()
    if "overload" in text or "unavailable" in text or status in (503, 529):
        t = "overloaded_error"
    elif "rate" in text or status == 429:
        t = "rate_limit_error"
    elif "timeout" in text or status == 504:
        t = "timeout_error"
    else:
        t = "api_error"
    return {"type": "error", "error": {"type": t, "message": str(err.get("message") or "upstream error")}}
