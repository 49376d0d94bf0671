"""Streams translated both ways, one chunk at a time (reference 3.3 and 3.4).

`OpenAIToAnthropicStream` (A->O): fed the decoded OpenAI chunks as they arrive, returns the Anthropic SSE
bytes each one produces: message_start (with usage.input_tokens and the cache fields), a ping, then per
content block content_block_start -> deltas -> content_block_stop (thinking, text and tool_use with
input_json_delta fragments), and at the end one message_delta (stop_reason, cumulative usage) and
message_stop. Block indexes are 0, 1, 2... in start order; every delta and stop targets a started block.

Tool calls: a tool block starts as soon as its name is known and its argument fragments are streamed
live to its own index. While one tool block is open, a new tool call waits (pending) until its next
fragment shows the pattern: sequential (the usual case: the open block closes, the new one starts and
gets what was buffered) or interleaved (fragments go back to the open tool: from then on every other
tool is buffered and emitted whole, start -> one delta -> stop, when the stream finishes). So no delta
ever lands outside its block's start/stop, whatever order a server sends fragments in.

`AnthropicToOpenAIStream` (O->A): fed Anthropic events (the decoded `data` of each SSE event; the JSON
`type` equals the event name), returns OpenAI `data:` chunk bytes, ending with `data: [DONE]`.
"""

from __future__ import annotations

import time

from mlxgw.dialects.anthropic.errors import openai_error_from_anthropic, stream_error_event
from mlxgw.dialects.anthropic.requests import ToolNames, anthropic_tool_id
from mlxgw.dialects.anthropic.responses import finish_reason, openai_usage, stop_reason, usage_from_openai
from mlxgw.dialects.jsonfast import dumps

_EVENT = {name: b"event: " + name.encode() + b"\ndata: " for name in (
    "message_start", "message_delta", "message_stop", "content_block_start", "content_block_delta",
    "content_block_stop", "ping", "error")}
PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def event(obj: dict) -> bytes:
    """One Anthropic SSE event: `event: <type>` then `data: <json>` (the SDK dispatches on the name)."""
    name = obj["type"]
    prefix = _EVENT.get(name) or (b"event: " + name.encode() + b"\ndata: ")
    return prefix + dumps(obj) + b"\n\n"


class _Tool:
    __slots__ = ("id", "name", "args", "block", "stopped")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.args: list[str] = []
        self.block: int | None = None
        self.stopped = False


class OpenAIToAnthropicStream:
    """A->O stream state for one response. `start()`, then `feed(chunk)` per decoded OpenAI chunk, then
    `end(done)` when the upstream stream ends ([DONE] seen or not), or `fail(error)` on an in-stream
    error. Each returns bytes to send (possibly empty). `usage` holds the last usage seen."""

    __slots__ = ("id", "model", "input_estimate", "names", "stop_sequences", "_out", "_next", "_open",
                 "_tools", "_pending", "_interleaved", "_finish", "_refused", "_matched", "_tool_emitted",
                 "started", "closed", "usage")

    def __init__(self, message_id: str, model: str, input_tokens: int = 0, names: ToolNames | None = None,
                 stop_sequences: list | None = None):
        self.id = message_id
        self.model = model
        self.input_estimate = input_tokens
        self.names = names or ToolNames()
        self.stop_sequences = stop_sequences or []
        self._out: list[bytes] = []
        self._next = 0
        self._open: tuple[str, int, object] | None = None  # (kind, block index, tool key)
        self._tools: dict[object, _Tool] = {}
        self._pending: list = []
        self._interleaved = False
        self._finish: str | None = None
        self._refused = False
        self._matched: str | None = None
        self._tool_emitted = False
        self.started = False
        self.closed = False
        self.usage: dict | None = None

    @property
    def finish_reason(self) -> str | None:
        """The upstream's OpenAI finish_reason once a chunk carried one; None while the answer is open
        (an end without it, and without [DONE], is a cut stream)."""
        return self._finish

    # -- framing --

    def start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        usage = {"input_tokens": self.input_estimate, "output_tokens": 0, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        return event({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": usage}}) + PING

    def _emit(self, obj: dict) -> None:
        self._out.append(event(obj))

    def _take(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    # -- blocks --

    def _close(self) -> None:
        if self._open is not None:
            kind, index, key = self._open
            self._emit({"type": "content_block_stop", "index": index})
            if kind == "tool":
                self._tools[key].stopped = True
            self._open = None

    def _open_block(self, kind: str, block: dict, key=None) -> int:
        self._close()
        index = self._next
        self._next += 1
        self._emit({"type": "content_block_start", "index": index, "content_block": block})
        self._open = (kind, index, key)
        return index

    def _delta(self, index: int, delta: dict) -> None:
        self._emit({"type": "content_block_delta", "index": index, "delta": delta})

    def _text(self, text: str) -> None:
        self._flush_pending()
        if self._open is None or self._open[0] != "text":
            self._open_block("text", {"type": "text", "text": ""})
        self._delta(self._open[1], {"type": "text_delta", "text": text})

    def _thinking(self, text: str) -> None:
        self._flush_pending()
        if self._open is None or self._open[0] != "thinking":
            self._open_block("thinking", {"type": "thinking", "thinking": "", "signature": ""})
        self._delta(self._open[1], {"type": "thinking_delta", "thinking": text})

    def _start_tool(self, key, whole: bool = False) -> None:
        t = self._tools[key]
        if key in self._pending:
            self._pending.remove(key)
        t.id = anthropic_tool_id(t.id) if t.id else f"toolu_{self.id[-12:]}_{len(self._tools)}"
        t.block = self._open_block("tool", {"type": "tool_use", "id": t.id, "name": self.names.restore(t.name),
                                            "input": {}}, key)
        self._tool_emitted = True
        args = "".join(t.args)
        t.args = [args] if args else []
        if args:
            self._delta(t.block, {"type": "input_json_delta", "partial_json": args})
        if whole:
            self._close()

    def _flush_pending(self) -> None:
        for key in list(self._pending):
            if self._tools[key].name is not None:
                self._start_tool(key, whole=self._interleaved)
            else:
                self._pending.remove(key)  # a call that never got a name cannot become a tool_use block

    def _tool_fragment(self, position: int, entry: dict) -> None:
        key = entry.get("index", position)
        fn = entry.get("function") if isinstance(entry.get("function"), dict) else {}
        t = self._tools.get(key)
        new = t is None
        if new:
            t = self._tools[key] = _Tool()
        if t.id is None and isinstance(entry.get("id"), str) and entry["id"]:
            t.id = entry["id"]
        if t.name is None and isinstance(fn.get("name"), str) and fn["name"]:
            t.name = fn["name"]
        frag = fn.get("arguments") if isinstance(fn.get("arguments"), str) else ""
        open_tool = self._open[2] if self._open is not None and self._open[0] == "tool" else None
        if t.block is not None:
            if not t.stopped:
                if self._pending:
                    self._interleaved = True  # back to the open tool while another one waits
                if frag:
                    t.args.append(frag)
                    self._delta(t.block, {"type": "input_json_delta", "partial_json": frag})
            elif frag:
                t.args.append(frag)  # too late for its closed block: kept for the log only
            return
        if frag:
            t.args.append(frag)
        if key not in self._pending:
            self._pending.append(key)
        if t.name is None or self._interleaved:
            return
        if open_tool is not None and (new or self._pending[0] != key):
            return  # wait: sequential or interleaved shows with the next fragment
        self._pending.remove(key)
        for other in list(self._pending):  # calls that came before it go first
            if self._tools[other].name is not None:
                self._start_tool(other, whole=True)
        self._start_tool(key)

    # -- input --

    def feed(self, chunk: dict) -> bytes:
        """Translate one decoded OpenAI chunk."""
        if self.closed:
            return b""
        if not self.started and isinstance(chunk.get("model"), str) and chunk["model"]:
            self.model = chunk["model"]  # the model that answered, as the backend names it (README)
        head = self.start()
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        ch = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if ch is None:
            return head + self._take()
        delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, dict):
            reasoning = reasoning.get("text") or reasoning.get("content")
        if isinstance(reasoning, str) and reasoning:
            self._thinking(reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._text(content)
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            self._text(refusal)
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and calls:
            for i, entry in enumerate(calls):
                if isinstance(entry, dict):
                    self._tool_fragment(i, entry)
        fr = ch.get("finish_reason")
        if fr is not None and self._finish is None:
            self._finish = fr
            matched = ch.get("stop_reason")
            if isinstance(matched, str) and matched in self.stop_sequences:
                self._matched = matched
            self._close_all()
        return head + self._take()

    def _close_all(self) -> None:
        self._close()
        self._interleaved = True
        self._flush_pending()
        self._close()

    def end(self, done: bool = True) -> bytes:
        """The upstream ended. Without a finish_reason and without [DONE] the stream was cut: an error
        event, never a made-up end_turn."""
        if self.closed:
            return b""
        head = self.start()
        if self._finish is None and not done:
            return head + self.fail({"message": "the provider closed the stream before it finished",
                                     "type": "api_error"})
        self._close_all()
        self.closed = True
        reason = stop_reason(self._finish, self._tool_emitted, self._refused, self._matched)
        usage = usage_from_openai(self.usage)
        if self.usage is None:
            usage["input_tokens"] = self.input_estimate
        self._emit({"type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": self._matched if reason == "stop_sequence" else None},
                    "usage": {"output_tokens": usage["output_tokens"], "input_tokens": usage["input_tokens"],
                              "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
                              "cache_read_input_tokens": usage["cache_read_input_tokens"]}})
        self._emit({"type": "message_stop"})
        return head + self._take()

    def fail(self, error, status: int | None = None) -> bytes:
        """An `error` event (no message_stop follows) for an OpenAI in-stream error object."""
        if self.closed:
            return b""
        self.closed = True
        head = self.start()
        self._out.clear()
        return head + event(stream_error_event(error, status))


class AnthropicToOpenAIStream:
    """O->A stream state for one response: `feed(event)` per decoded Anthropic event, `end()` when the
    upstream stream ends. Returns OpenAI SSE bytes. `usage` is the Anthropic usage seen so far."""

    __slots__ = ("id", "model", "created", "include_usage", "_ordinal", "_blocks", "_has_args", "_tools",
                 "usage", "stop_reason", "closed", "error")

    def __init__(self, chunk_id: str, model: str, include_usage: bool = False, created: int | None = None):
        self.id = chunk_id
        self.model = model
        self.created = created or int(time.time())
        self.include_usage = include_usage
        self._ordinal = -1
        self._blocks: dict[int, int | None] = {}  # block index -> tool ordinal (None: not a tool)
        self._has_args: dict[int, bool] = {}
        self._tools = False
        self.usage: dict = {}
        self.stop_reason: str | None = None
        self.closed = False
        self.error: str | None = None

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        out = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            out["usage"] = None
        return b"data: " + dumps(out) + b"\n\n"

    def feed(self, ev: dict) -> bytes:
        if self.closed:
            return b""
        kind = ev.get("type")
        if kind == "content_block_delta":
            delta = ev.get("delta") if isinstance(ev.get("delta"), dict) else {}
            dkind = delta.get("type")
            if dkind == "text_delta" and delta.get("text"):
                return self._chunk({"content": delta["text"]})
            if dkind == "input_json_delta" and delta.get("partial_json"):
                ordinal = self._blocks.get(ev.get("index"))
                if ordinal is None:
                    return b""
                self._has_args[ordinal] = True
                return self._chunk({"tool_calls": [{"index": ordinal, "function": {"arguments": delta["partial_json"]}}]})
            if dkind == "thinking_delta" and delta.get("thinking"):
                return self._chunk({"reasoning_content": delta["thinking"]})
            return b""
        if kind == "content_block_start":
            block = ev.get("content_block") if isinstance(ev.get("content_block"), dict) else {}
            index = ev.get("index")
            if block.get("type") == "tool_use":
                self._ordinal += 1
                self._tools = True
                self._blocks[index] = self._ordinal
                self._has_args[self._ordinal] = False
                call = {"index": self._ordinal, "id": str(block.get("id") or ""), "type": "function",
                        "function": {"name": str(block.get("name") or ""), "arguments": ""}}
                return self._chunk({"tool_calls": [call]})
            self._blocks[index] = None
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return b""
        if kind == "content_block_stop":
            ordinal = self._blocks.get(ev.get("index"))
            if ordinal is not None and not self._has_args.get(ordinal):
                self._has_args[ordinal] = True
                return self._chunk({"tool_calls": [{"index": ordinal, "function": {"arguments": "{}"}}]})
            return b""
        if kind == "message_start":
            msg = ev.get("message") if isinstance(ev.get("message"), dict) else {}
            if isinstance(msg.get("usage"), dict):
                self.usage.update(msg["usage"])
            if isinstance(msg.get("model"), str) and msg["model"]:
                self.model = msg["model"]
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "message_delta":
            if isinstance(ev.get("usage"), dict):
                self.usage.update({k: v for k, v in ev["usage"].items() if v is not None})
            delta = ev.get("delta") if isinstance(ev.get("delta"), dict) else {}
            self.stop_reason = delta.get("stop_reason")
            return self._chunk({}, finish_reason(self.stop_reason, self._tools))
        if kind == "message_stop":
            self.closed = True
            out = b""
            if self.include_usage:
                out = b"data: " + dumps({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                         "model": self.model, "choices": [],
                                         "usage": openai_usage(self.usage)}) + b"\n\n"
            return out + b"data: [DONE]\n\n"
        if kind == "error":
            return self.fail(ev.get("error"))
        return b""  # ping and anything newer

    def fail(self, error) -> bytes:
        """The OpenAI in-stream error event (the SDK raises APIError on it); nothing follows it."""
        if self.closed:
            return b""
        self.closed = True
        err = error if isinstance(error, dict) else {"message": str(error), "type": "api_error"}
        status = {"overloaded_error": 529, "rate_limit_error": 429, "timeout_error": 504,
                  "invalid_request_error": 400}.get(err.get("type"), 500)
        _, body = openai_error_from_anthropic(status, dumps({"type": "error", "error": err}), "upstream")
        body["error"]["message"] = str(err.get("message") or "upstream error")
        self.error = body["error"]["message"]
        return b"data: " + dumps(body) + b"\n\n"

    def end(self) -> bytes:
        """The upstream ended: an error event when it never said message_stop."""
        if self.closed:
            return b""
        return self.fail({"type": "api_error", "message": "the provider closed the stream before it finished"})
