"""`ResponsesEventWriter`: the Responses stream events (reference section 6), built from what a backend
stream says, whatever its wire; the converters in `streams` feed it.

Order, as OpenAI sends it: response.created, response.in_progress, then per output item
output_item.added -> (content_part.added -> deltas -> text.done -> content_part.done)* or
function_call_arguments.delta* -> .done -> output_item.done, then exactly one terminal event:
response.completed, response.incomplete or response.failed, carrying the whole Response. Every event
has `sequence_number` 0, 1, 2... and is framed `event: <type>\\ndata: <json>\\n\\n` (no [DONE]).

Item rules, shared with the non-streamed translations so the terminal Response equals theirs:
- reasoning is one item with one `reasoning_text` part; it closes when anything else starts;
- text opens a message (one `output_text` part; a new part per Anthropic text block); a tool call closes
  the open message; text after a tool call opens a new message;
- tool calls get their output_index at first sight (once their name is known) and stay open until the
  stream finishes (chat backends may interleave parallel calls); freeform (custom) calls send their
  unwrapped input in one delta at the end;
- at the finish, items still open close with status `incomplete` when the response is incomplete, and a
  response with neither a message nor a call gets one empty message (never invented text).
"""

from __future__ import annotations

import time

from mlxgw.dialects.jsonfast import dumps
from mlxgw.dialects.responses import objects as ob
from mlxgw.dialects.responses.tools import ToolMap, unwrap_custom


def sse(obj: dict) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + dumps(obj) + b"\n\n"


def _append(d: dict, key: str, text: str) -> None:
    """d[key] += text in place: with the dict's reference dropped first the string is extended where it
    lies, where `d[key] += text` copies it whole each time (quadratic over a long answer's deltas)."""
    value = d[key]
    d[key] = None
    value += text
    d[key] = value


class _Call:
    __slots__ = ("index", "call_id", "name", "args", "item")

    def __init__(self) -> None:
        self.index: int | None = None
        self.call_id: str | None = None
        self.name: str | None = None
        self.args: list[str] = []
        self.item: dict | None = None


class ResponsesEventWriter:
    """Events for one response. Methods return the SSE bytes they produce (possibly b"")."""

    def __init__(self, req: dict, response_id: str, created_at: int | None = None, tools: ToolMap | None = None):
        self.req = req
        self.id = response_id
        self.created_at = created_at if created_at is not None else int(time.time())
        self.tools = tools if tools is not None else ToolMap.from_request(req)
        self.seq = 0
        self.output: list[dict] = []
        self.started = False
        self.closed = False
        self.response: dict | None = None  # the terminal Response once closed
        self._out: list[bytes] = []
        self._reasoning: int | None = None
        self._encrypted: str | None = None
        self._message: int | None = None
        self._part: int | None = None  # open content part of the open message
        self._calls: dict[object, _Call] = {}
        self._call_order: list[object] = []
        self._delta_key: tuple | None = None  # (message, part) whose output_text.delta head is cached
        self._delta_head = b""

    # -- framing --

    def _emit(self, obj: dict) -> None:
        obj["sequence_number"] = self.seq
        self.seq += 1
        self._out.append(sse(obj))

    def _take(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def snapshot(self, status: str = "in_progress", **kw) -> dict:
        return ob.response_object(self.req, self.id, self.created_at, status, [dict(i) for i in self.output], **kw)

    def start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        snapshot = self.snapshot()  # the same Response twice: each event is encoded as it is emitted
        self._emit({"type": "response.created", "response": snapshot})
        self._emit({"type": "response.in_progress", "response": snapshot})
        return self._take()

    def _add(self, item: dict) -> int:
        index = len(self.output)
        self.output.append(item)
        added = {**item}
        if item["type"] == "message" or item["type"] == "reasoning":
            added["content"] = []
        self._emit({"type": "response.output_item.added", "output_index": index, "item": added})
        return index

    def _done(self, index: int, status: str = "completed") -> None:
        item = self.output[index]
        item["status"] = status
        self._emit({"type": "response.output_item.done", "output_index": index, "item": item})

    # -- reasoning --

    def reasoning(self, text: str) -> bytes:
        head = self.start()
        if not text or self.closed:
            return head
        if self._reasoning is None:
            self._close_message()
            item = ob.reasoning_item(ob.item_id(self.id, "reasoning", len(self.output)), "", "in_progress")
            self._reasoning = self._add(item)
            item["content"] = [{"type": "reasoning_text", "text": ""}]
            self._emit({"type": "response.content_part.added", "item_id": item["id"], "output_index": self._reasoning,
                        "content_index": 0, "part": {"type": "reasoning_text", "text": ""}})
        item = self.output[self._reasoning]
        _append(item["content"][0], "text", text)
        self._emit({"type": "response.reasoning_text.delta", "item_id": item["id"], "output_index": self._reasoning,
                    "content_index": 0, "delta": text})
        return head + self._take()

    def reasoning_carrier(self, encrypted: str) -> None:
        """The opaque `encrypted_content` for the open (or next closed) reasoning item."""
        self._encrypted = encrypted

    def _close_reasoning(self) -> None:
        if self._reasoning is None:
            return
        index, self._reasoning = self._reasoning, None
        item = self.output[index]
        part = item["content"][0]
        self._emit({"type": "response.reasoning_text.done", "item_id": item["id"], "output_index": index,
                    "content_index": 0, "text": part["text"]})
        self._emit({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                    "content_index": 0, "part": dict(part)})
        if self._encrypted is not None:
            item["encrypted_content"], self._encrypted = self._encrypted, None
        self._done(index)

    # -- text --

    def _open_part(self, part: dict) -> None:
        if self._message is None:
            self._close_reasoning()
            self._message = self._add(ob.message_item(ob.item_id(self.id, "message", len(self.output)), [],
                                                      "in_progress"))
        item = self.output[self._message]
        item["content"].append(part)
        self._part = len(item["content"]) - 1
        self._emit({"type": "response.content_part.added", "item_id": item["id"], "output_index": self._message,
                    "content_index": self._part, "part": dict(part)})

    def text(self, text: str, logprobs: list[dict] | None = None) -> bytes:
        """A text delta; `logprobs` (LogProb entries, see objects.logprobs_from_chat) when the backend gave them."""
        return self._content("output_text", "text", text, logprobs)

    def more_text(self, text: str, raw: bytes) -> bytes | None:
        """What `text(text)` gives when an output_text part is already open, built from `raw`, the text
        as a JSON string body (the upstream's bytes), instead of encoding the event again; None when no
        such part is open (call `text()`)."""
        if self.closed or self._part is None:
            return None
        key = (self._message, self._part)
        if self._delta_key != key:
            item = self.output[self._message]
            if item["content"][self._part]["type"] != "output_text":
                return None
            empty = sse({"type": "response.output_text.delta", "item_id": item["id"], "output_index": self._message,
                         "content_index": self._part, "delta": ""})
            self._delta_head, self._delta_key = empty[:-len(b'"}\n\n')], key
        _append(self.output[self._message]["content"][self._part], "text", text)
        seq, self.seq = self.seq, self.seq + 1
        return b"".join((self._delta_head, raw, b'","logprobs":[],"sequence_number":', str(seq).encode(), b"}\n\n"))

    def refusal(self, text: str) -> bytes:
        return self._content("refusal", "refusal", text)

    def _content(self, kind: str, field: str, text: str, logprobs: list[dict] | None = None) -> bytes:
        """A text or refusal delta into the open part of that kind (opened, with its message, if needed)."""
        head = self.start()
        if not text or self.closed:
            return head
        item = self.output[self._message] if self._message is not None else None
        if item is None or self._part is None or item["content"][self._part]["type"] != kind:
            self._end_part()
            self._open_part(ob.text_part("") if kind == "output_text" else ob.refusal_part(""))
            item = self.output[self._message]
        part = item["content"][self._part]
        _append(part, field, text)
        if logprobs:
            part["logprobs"] = part["logprobs"] + logprobs
        event = {"type": "response.output_text.delta" if kind == "output_text" else "response.refusal.delta",
                 "item_id": item["id"], "output_index": self._message, "content_index": self._part, "delta": text}
        if kind == "output_text":
            event["logprobs"] = ob.delta_logprobs(logprobs) if logprobs else []
        self._emit(event)
        return head + self._take()

    def end_part(self) -> bytes:
        """Close the open content part (an Anthropic text block ended); the message stays open."""
        self._end_part()
        return self._take()

    def _end_part(self) -> None:
        if self._part is None:
            return
        item, index, k = self.output[self._message], self._message, self._part
        self._part = None
        part = item["content"][k]
        if part["type"] == "output_text":
            self._emit({"type": "response.output_text.done", "item_id": item["id"], "output_index": index,
                        "content_index": k, "text": part["text"],
                        "logprobs": ob.delta_logprobs(part["logprobs"]) if part["logprobs"] else []})
        else:
            self._emit({"type": "response.refusal.done", "item_id": item["id"], "output_index": index,
                        "content_index": k, "refusal": part["refusal"]})
        self._emit({"type": "response.content_part.done", "item_id": item["id"], "output_index": index,
                    "content_index": k, "part": dict(part)})

    def _close_message(self, status: str = "completed") -> None:
        if self._message is None:
            return
        self._end_part()
        index, self._message = self._message, None
        self._done(index, status)

    # -- tool calls --

    def call(self, key, call_id: str | None = None, name: str | None = None, fragment: str = "") -> bytes:
        """A tool call's start and/or argument fragment; `key` identifies the call (chat's index, Anthropic's
        block). The item is added once the name is known; fragments before that are kept."""
        head = self.start()
        if self.closed:
            return head
        c = self._calls.get(key)
        if c is None:
            c = self._calls[key] = _Call()
            self._call_order.append(key)
        if c.call_id is None and call_id:
            c.call_id = call_id
        if c.name is None and name:
            c.name = name
        if fragment:
            c.args.append(fragment)
        if c.index is None and c.name is not None:
            self._close_reasoning()
            self._close_message()
            index = len(self.output)
            cid = c.call_id or f"call_{self.id[5:]}_{len(self._call_order) - 1}"
            c.item = self.tools.output_item(c.name, cid, "", ob.item_id(self.id, "function_call", index), "in_progress")
            c.index = self._add(c.item)
            if c.args and c.item["type"] == "function_call":
                self._arg_delta(c, "".join(c.args))
        elif c.index is not None and fragment and c.item["type"] == "function_call":
            self._arg_delta(c, fragment)
        return head + self._take()

    def _arg_delta(self, c: _Call, text: str) -> None:
        _append(c.item, "arguments", text)
        self._emit({"type": "response.function_call_arguments.delta", "item_id": c.item["id"],
                    "output_index": c.index, "delta": text})

    def close_call(self, key, status: str = "completed", empty: str = "") -> bytes:
        """Finish one call (`empty`: the arguments to use when none came, e.g. "{}" for Anthropic)."""
        self._close_call(key, status, empty)
        return self._take()

    def _close_call(self, key, status: str, empty: str) -> None:
        c = self._calls.get(key)
        if c is None or c.index is None or c.item.get("status") != "in_progress":
            return
        item = c.item
        if item["type"] == "function_call":
            if not item["arguments"] and empty:
                self._arg_delta(c, empty)
            self._emit({"type": "response.function_call_arguments.done", "item_id": item["id"],
                        "output_index": c.index, "name": item["name"], "arguments": item["arguments"]})
        else:
            raw = unwrap_custom("".join(c.args) or empty)
            item["input"] = raw
            if raw:
                self._emit({"type": "response.custom_tool_call_input.delta", "item_id": item["id"],
                            "output_index": c.index, "delta": raw})
            self._emit({"type": "response.custom_tool_call_input.done", "item_id": item["id"],
                        "output_index": c.index, "input": raw})
        self._done(c.index, status)

    # -- the end --

    def finish(self, status: str = "completed", reason: str | None = None, usage: dict | None = None,
               empty_args: str = "", completed_at: int | None = None) -> bytes:
        """Close every open item and send the terminal event: response.completed, or response.incomplete
        with `reason` (max_output_tokens, content_filter)."""
        head = self.start()
        if self.closed:
            return head
        item_status = "completed" if status == "completed" else "incomplete"
        self._close_reasoning()
        has_calls = any(self._calls[k].index is not None for k in self._call_order)
        has_message = any(i["type"] == "message" for i in self.output)
        if not has_calls and not has_message:
            self._open_part(ob.text_part(""))
        self._close_message(item_status)
        for key in sorted(self._call_order, key=lambda k: self._calls[k].index if self._calls[k].index is not None else 1 << 30):
            self._close_call(key, item_status, empty_args)
        self.closed = True
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self.response = self.snapshot(status, usage=usage, incomplete=reason,
                                      completed_at=completed_at or int(time.time()))
        self._emit({"type": kind, "response": self.response})
        return head + self._take()

    def failed(self, message: str, code: str = "server_error", usage: dict | None = None) -> bytes:
        """A mid-stream failure: open items close as incomplete, then response.failed with the error (Codex
        ignores a bare `error` event, so none is sent). Nothing follows it."""
        head = self.start()
        if self.closed:
            return head
        self._close_reasoning()
        self._close_message("incomplete")
        for key in self._call_order:
            self._close_call(key, "incomplete", "")
        self.closed = True
        self.response = self.snapshot("failed", usage=usage, error=ob.failure(message, code))
        self._emit({"type": "response.failed", "response": self.response})
        return head + self._take()
