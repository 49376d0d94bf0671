"""Backend streams -> Responses stream events, one upstream read at a time.

`ChatToResponsesStream` reads a chat-completions SSE stream, `AnthropicToResponsesStream` a Messages
SSE stream; both write through a `ResponsesEventWriter`. They have the shape of the relay's `Translator`
(mlxgw.server.attempts) without importing it (dialects never import server/):

    feed(chunk: bytes) -> bytes       raw upstream bytes in, client SSE bytes out (a cut anywhere is fine)
    end() -> bytes                    the upstream ended (EOF)
    failed(error, code) -> bytes      a mid-stream failure (a message, or an UpstreamError): response.failed
    finished                          True once nothing more is wanted from the upstream
    error                             why the stream failed, for the audit row (None: it did not)
    tokens()                          (input, output, cached) for the audit row
    response                          the terminal Response (to store), once finished

An upstream that ends without finishing (EOF before a finish_reason / message_stop) gets
`response.failed` (server_error), not `response.incomplete`: the output is cut at an arbitrary point, not
at a limit the client set, and Codex retries a failed stream but ends the turn on an incomplete one.
An upstream error event becomes `response.failed` too (rate_limit_exceeded for rate limits, else
server_error); no bare `error` event is sent (Codex ignores those).
"""

from __future__ import annotations

import abc

from mlxgw.dialects.jsonfast import DecodeError, loads
from mlxgw.dialects.openai import ContentShape, SSEParser, plain_text
from mlxgw.dialects.responses import objects as ob
from mlxgw.dialects.responses.anthropic import anthropic_status
from mlxgw.dialects.responses.chat import chat_status, reasoning_text
from mlxgw.dialects.responses.events import ResponsesEventWriter

CUT = "the provider closed the stream before it finished"


def _decode(data: bytes):
    try:
        obj = loads(data)
    except DecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def _error_code(err) -> str:
    text = str(err.get("type") or err.get("code") or "") if isinstance(err, dict) else ""
    return "rate_limit_exceeded" if "rate_limit" in text else "server_error"


def _error_message(err) -> str:
    return str(err.get("message") if isinstance(err, dict) else err) or "upstream error"


class _Base(abc.ABC):
    def __init__(self, writer: ResponsesEventWriter):
        self.writer = writer
        self.parser = SSEParser()
        self.finished = False
        self.error: str | None = None
        self.usage: dict | None = None  # ResponseUsage, once known

    @property
    def response(self) -> dict | None:
        return self.writer.response

    def feed(self, chunk: bytes) -> bytes:
        return self._events(self.parser.feed(chunk))

    def failed(self, error, code: str = "server_error") -> bytes:
        """response.failed for a mid-stream failure: `error` is a message, or an exception such as the
        backends' UpstreamError (its `message`; a 429 `status` gives rate_limit_exceeded)."""
        if self.finished:
            return b""
        message = error if isinstance(error, str) else str(getattr(error, "message", None) or error)
        if getattr(error, "status", None) == 429:
            code = "rate_limit_exceeded"
        self.finished = True
        self.error = message
        return self.writer.failed(message, code, self.usage)

    def tokens(self) -> tuple:
        return ob.audit_tokens(self.usage)

    def _events(self, events) -> bytes:
        out = []
        for data in events:
            if self.finished:
                break
            out.append(self._event(data))
        return b"".join(out)

    @abc.abstractmethod
    def _event(self, data: bytes) -> bytes:
        """One upstream event's data in, client bytes out."""


class ChatToResponsesStream(_Base):
    """Chat-completions chunks -> Responses events (reference 7.4)."""

    def __init__(self, writer: ResponsesEventWriter):
        super().__init__(writer)
        self.finish_reason: str | None = None
        self.shape = ContentShape()

    def _event(self, data: bytes) -> bytes:
        middle = self.shape.text(data)
        if middle is not None:  # more plain text (see ContentShape): its delta event without parsing
            out = self.writer.more_text(ContentShape.decode(middle), middle)
            if out is not None:
                return out
        if data == b"[DONE]":
            return self._close()
        obj = _decode(data)
        if obj is None:
            return b""
        if "error" in obj:
            return self.failed(_error_message(obj["error"]), _error_code(obj["error"]))
        w = self.writer
        out = [w.start()]
        if isinstance(obj.get("usage"), dict):
            self.usage = ob.usage_from_chat(obj["usage"])
        choices = obj.get("choices")
        ch = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if ch is None:
            return out[0]
        delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
        r = reasoning_text(delta) if "reasoning_content" in delta or "reasoning" in delta else None
        if r:
            out.append(w.reasoning(r))
        if isinstance(delta.get("content"), str) and delta["content"]:
            lp = ch.get("logprobs")  # per delta: only decoded when the backend sent some
            out.append(w.text(delta["content"], ob.logprobs_from_chat(lp) if lp else None))
        if isinstance(delta.get("refusal"), str) and delta["refusal"]:
            out.append(w.refusal(delta["refusal"]))
        for pos, tc in enumerate(delta.get("tool_calls") or []):
            if not isinstance(tc, dict):
                continue
            fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
            args = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
            out.append(w.call(tc.get("index", pos), tc.get("id") if isinstance(tc.get("id"), str) else None,
                              fn.get("name") if isinstance(fn.get("name"), str) else None, args))
        if ch.get("finish_reason") is not None and self.finish_reason is None:
            self.finish_reason = ch["finish_reason"]  # the usage chunk comes after it: keep reading
        if self.shape.head is None:
            text = plain_text(obj)
            if text is not None:
                self.shape.learn(data, text)
        return b"".join(out)

    def _close(self) -> bytes:
        if self.finish_reason is None:
            return self.failed(CUT)
        self.finished = True
        status, reason = chat_status(self.finish_reason, self.usage, self.writer.req)
        return self.writer.finish(status, reason, self.usage)

    def end(self) -> bytes:
        out = self._events(self.parser.close())
        if self.finished:
            return out
        return out + self._close()  # EOF without [DONE] is fine after a finish_reason


class AnthropicToResponsesStream(_Base):
    """Messages events -> Responses events (reference 8.4)."""

    def __init__(self, writer: ResponsesEventWriter):
        super().__init__(writer)
        self._anthropic_usage: dict = {}
        self._blocks: dict[object, str] = {}  # block index -> type
        self.stop_reason: str | None = None

    def _usage(self, u) -> None:
        if isinstance(u, dict):
            self._anthropic_usage.update({k: v for k, v in u.items() if v is not None})
            self.usage = ob.usage_from_anthropic(self._anthropic_usage)

    def _event(self, data: bytes) -> bytes:
        ev = _decode(data)
        if ev is None:
            return b""
        kind = ev.get("type")
        if kind == "error":
            return self.failed(_error_message(ev.get("error")), _error_code(ev.get("error")))
        w = self.writer
        head = w.start()
        index = ev.get("index")
        if kind == "message_start":
            msg = ev.get("message") if isinstance(ev.get("message"), dict) else {}
            self._usage(msg.get("usage"))
        elif kind == "content_block_start":
            block = ev.get("content_block") if isinstance(ev.get("content_block"), dict) else {}
            self._blocks[index] = block.get("type")
            if block.get("type") == "tool_use":
                return head + w.call(("tool", index), str(block.get("id") or "") or None, str(block.get("name") or ""))
            if block.get("type") == "text" and block.get("text"):
                return head + w.text(block["text"])
        elif kind == "content_block_delta":
            delta = ev.get("delta") if isinstance(ev.get("delta"), dict) else {}
            dkind = delta.get("type")
            if dkind == "text_delta":
                return head + w.text(delta.get("text") or "")
            if dkind == "thinking_delta":
                return head + w.reasoning(delta.get("thinking") or "")
            if dkind == "input_json_delta" and self._blocks.get(index) == "tool_use":
                return head + w.call(("tool", index), fragment=delta.get("partial_json") or "")
        elif kind == "content_block_stop":
            if self._blocks.get(index) == "text":
                return head + w.end_part()  # the message stays open for a following text block
        elif kind == "message_delta":
            self._usage(ev.get("usage"))
            delta = ev.get("delta") if isinstance(ev.get("delta"), dict) else {}
            if delta.get("stop_reason"):
                self.stop_reason = delta["stop_reason"]
        elif kind == "message_stop":
            self.finished = True
            status, reason = anthropic_status(self.stop_reason)
            return head + w.finish(status, reason, self.usage, empty_args="{}")
        return head

    def end(self) -> bytes:
        out = self._events(self.parser.close())
        if self.finished:
            return out
        return out + self.failed(CUT)
