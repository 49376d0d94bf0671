"""Stream translators for `streaming.relay`, one per (client dialect, backend wire) pair:

    OpenAIRelay               OpenAI client, OpenAI backend: chunks normalised, usage kept only if asked
    OpenAIToAnthropicRelay    Anthropic client, OpenAI backend: chunks -> Anthropic events
    AnthropicToOpenAIRelay    OpenAI client, Anthropic backend: events -> OpenAI chunks
    AnthropicRelay            Anthropic client, Anthropic-native backend: bytes passed through untouched,
                              only read for usage and the end of the stream

All parse server-sent events incrementally (a chunk boundary anywhere is harmless) and keep no more than
the current event in memory.
"""

from __future__ import annotations

import abc
import operator

from mlxgw.backends.base import UpstreamError, UpstreamTimeout
from mlxgw.dialects import anthropic as an
from mlxgw.dialects import openai as oa
from mlxgw.dialects.anthropic.streams import AnthropicToOpenAIStream, OpenAIToAnthropicStream
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads
from mlxgw.server.streaming import Translator

# (`ContentShape.text`'s check that the middle of a learnt shape is one JSON string body, for OpenAIRelay)
_plain_text, _string_body = oa.PLAIN_TEXT.fullmatch, oa.STRING_BODY.fullmatch
INCOMPLETE = "the provider closed the stream before it finished"
PING = b'event: ping\ndata: {"type": "ping"}\n\n'  # Anthropic's keep-alive event


def _decode(data: bytes):
    try:
        obj = loads(data)
    except DecodeError:
        return None  # keep-alive noise or a broken line: nothing a client can use
    return obj if isinstance(obj, dict) else None


def _err_message(err) -> str:
    return str(err.get("message") if isinstance(err, dict) else err) or "upstream error"


class SSETranslator(Translator):
    """A translator that reads the upstream as server-sent events: `_events(datas)` turns each event's
    data into client bytes; `_cut()` gives the closing bytes when the upstream ended before finishing."""

    def __init__(self):
        self.parser = oa.SSEParser()

    @abc.abstractmethod
    def _events(self, events) -> bytes:
        """The client bytes for a batch of upstream events' data."""

    def _cut(self) -> bytes:
        return b""

    def feed(self, chunk: bytes) -> bytes:
        return self._events(self.parser.feed(chunk))

    def end(self) -> bytes:
        out = self._events(self.parser.close())
        return out if self.finished else out + self._cut()


class OpenAIRelay(SSETranslator):
    finish_seen = False  # (class defaults: one translator per streamed request, its set-up counts)
    usage = None
    parts: tuple = ((), b"", 0, 0, False, b"", b"")  # the learnt shape's parts for `_events` (see `_parts`)

    def __init__(self, provider: str, backend_model: str, stream_id: str, created: int, keep_usage: bool):
        self.parser = oa.SSEParser()  # (SSETranslator.__init__, inlined)
        self.provider = provider
        self.model = backend_model
        self.stream_id = stream_id
        self.created = created
        self.keep_usage = keep_usage
        self.shape = oa.ContentShape()

    def _events(self, events) -> bytes:
        # Every event this relay sends is one `data: ` line: `datas` collects their data, framed in one join
        # at the end, so a content delta that goes out as it came is one item, the event's own bytes.
        datas = []
        # `shape.convert`, inlined with the learnt shape in locals: this runs for every token (its ends
        # compared as slices: startswith() and endswith() parse their arguments for more than that costs)
        head, tail, cut_head, cut_tail, as_is, out_head, out_tail = self.parts
        taken = 0  # events taken the long way: until a shape is learnt, all so far (see `_run` below)
        for data in events:
            if data[:cut_head] == head and data[cut_tail:] == tail:
                middle = data[cut_head:cut_tail]
                if _plain_text(middle) is not None or _string_body(middle) is not None:
                    # a plain content delta like one seen, unparsed
                    datas.append(data if as_is else out_head + middle + out_tail)
                    continue
            taken += 1
            if data == b"[DONE]":
                self.finished = True
                datas.append(data)
                break
            try:  # (`_decode`, inlined)
                obj = loads(data)
            except DecodeError:
                continue  # keep-alive noise or a broken line: nothing a client can use
            if type(obj) is not dict:
                continue
            if "error" in obj:
                self.error = _err_message(obj["error"])
                self.finished = True
                datas.append(oa.sse_error(f"provider '{self.provider}' failed mid-stream: {self.error}")[6:-2])
                break
            out = self._slow(data, obj)
            if out is not None:
                datas.append(out)
                if self.parts[0] == () and self.shape.head is not None:  # learnt from this event
                    head, tail, cut_head, cut_tail, as_is, out_head, out_tail = self.parts = self._parts()
                    if len(events) - taken > 2:  # (a whole stream in one read) the rest may start with a run
                        rest = self._run(events[taken:], datas)
                        return b"".join((b"data: ", b"\n\ndata: ".join(datas), b"\n\n", self._events(rest)))
        return b"".join((b"data: ", b"\n\ndata: ".join(datas), b"\n\n")) if datas else b""

    def _run(self, events: list, datas: list) -> list:
        """The events after the run of plain content deltas of the learnt shape that `events` starts with,
        the run's client data put in `datas` as one item: the checks of `_events`' loop, made on all of the
        run's events at once (a whole stream can come in one read, from a fast local server).

        The run is at most the events up to the last that ends with the learnt tail (after it, such a read
        brings the finish, the usage and [DONE]). No event holds a CR (SSEParser turns every line end
        into LF), nor do the head, tail and middles cut from events: so the run's events joined with CR
        equal its middles joined with `tail CR head`, between the head and the tail, only when each
        event is head + middle + tail. Then a middle passing the loop's check (plain text or one JSON
        string body; neither takes an empty one) makes its event one the loop takes unparsed, and the
        run ends at the first that does not."""
        head, tail, cut_head, cut_tail, as_is, out_head, out_tail = self.parts
        n = len(events)
        while n and events[n - 1][cut_tail:] != tail:
            n -= 1
        if n < 2:
            return events
        run = events[:n]
        middles = list(map(operator.itemgetter(slice(cut_head, cut_tail)), run))
        if b"\r".join(run) != head + (tail + b"\r" + head).join(middles) + tail:
            return events
        # All plain ASCII, the common run: one class run over the middles joined checks each, none empty
        if _plain_text(b"".join(middles)) is None or b"" in middles:
            for i, middle in enumerate(middles):
                if _plain_text(middle) is None and _string_body(middle) is None:
                    if not i:
                        return events
                    middles = middles[:i]
                    break
        datas.append(out_head + (out_tail + b"\n\ndata: " + out_head).join(middles) + out_tail)
        return events[len(middles):]

    def _slow(self, data: bytes, obj: dict) -> bytes | None:
        """The client data for an event parsed the long way (None: nothing for the client), learning the
        stream's content deltas' shape from the first plain one."""
        # An event whose data came on several `data:` lines holds a line feed: sent as it came, in one
        # `data: ` line, its second line would be a field of its own to the client. It is re-serialised.
        finished = oa.chunk_as_is(obj, self.keep_usage) if 10 not in data else None
        if finished is not None:  # already conformant: its bytes go out as they came
            if finished:  # (a finish is no plain content delta: nothing to learn from it)
                self.finish_seen = True
                return data
            out = data
        else:
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
                if not obj.get("choices") and not self.keep_usage:
                    return None  # the usage chunk the gateway asked for on its own behalf
            c = oa.chunk(obj, self.model, self.stream_id, self.created, self.keep_usage)
            for ch in c["choices"]:
                if ch["finish_reason"]:
                    self.finish_seen = True
            out = dumps(c)
        if self.shape.head is None:
            text = oa.plain_text(obj)
            if text is not None:
                self.shape.learn(data, text, b"data: " + out + b"\n\n", b'"content":')
        return out

    def _parts(self) -> tuple:
        """`shape.parts` for `_events`: the client's side without the `data: ` line's framing, and whether
        the event goes out as it came (then its bytes are the client's, nothing spliced)."""
        head, tail, cut_head, cut_tail, out_head, out_tail = self.shape.parts
        out_head, out_tail = out_head[6:], out_tail[:-2]
        return head, tail, cut_head, cut_tail, out_head == head and out_tail == tail, out_head, out_tail

    def _cut(self) -> bytes:
        if not self.finish_seen:
            self.error = INCOMPLETE
            return oa.sse_error(INCOMPLETE, code="upstream_incomplete")
        return oa.DONE

    def failed(self, exc: UpstreamError) -> bytes:
        timeout = isinstance(exc, UpstreamTimeout)
        return oa.sse_error(exc.message, type="timeout_error" if timeout else "api_error",
                            code="timeout" if timeout else "upstream_failed")

    def tokens(self) -> tuple:
        return oa.tokens(self.usage)


class OpenAIToAnthropicRelay(SSETranslator):
    keepalive = PING

    def __init__(self, conv: OpenAIToAnthropicStream):
        super().__init__()
        self.conv = conv
        self.shape = oa.ContentShape()

    def _events(self, events) -> bytes:
        out = []
        shape = self.shape
        for data in events:
            if shape.convert(data, out):  # a plain content delta like one seen: its client bytes, unparsed
                continue
            shape.forget()  # the converter's state may move on (a new block): learn again after it
            if data == b"[DONE]":
                self.finished = True
                out.append(self.conv.end(True))
                break
            obj = _decode(data)
            if obj is None:
                continue
            if "error" in obj:
                self.error = _err_message(obj["error"])
                self.finished = True
                out.append(self.conv.fail(obj["error"]))
                break
            piece = self.conv.feed(obj)
            out.append(piece)
            text = oa.plain_text(obj)
            if text is not None and piece.count(b"\nevent: ") == 0 and piece.startswith(b"event: content_block_delta\n"):
                shape.learn(data, text, piece, b'"text":')  # the piece is the one text_delta event
        return b"".join(out)

    def _cut(self) -> bytes:
        # EOF without [DONE]: fine after a finish_reason, an error event otherwise
        if self.conv.finish_reason is None:
            self.error = INCOMPLETE
        return self.conv.end(False)

    def failed(self, exc: UpstreamError) -> bytes:
        status = 504 if isinstance(exc, UpstreamTimeout) else 500
        return self.conv.fail({"message": exc.message, "type": "timeout_error" if status == 504 else "api_error"},
                              status)

    def tokens(self) -> tuple:
        return oa.tokens(self.conv.usage)


class AnthropicToOpenAIRelay(SSETranslator):
    def __init__(self, conv: AnthropicToOpenAIStream):
        super().__init__()
        self.conv = conv

    def _events(self, events) -> bytes:
        out = []
        for data in events:
            obj = _decode(data)
            if obj is None:
                continue
            out.append(self.conv.feed(obj))
            if self.conv.closed:
                self.finished = True
                self.error = self.conv.error
                break
        return b"".join(out)

    def _cut(self) -> bytes:
        out = self.conv.end()
        self.error = self.conv.error
        return out

    def failed(self, exc: UpstreamError) -> bytes:
        timeout = isinstance(exc, UpstreamTimeout)
        return self.conv.fail({"type": "timeout_error" if timeout else "api_error", "message": exc.message})

    def tokens(self) -> tuple:
        return an.audit_tokens(self.conv.usage) if self.conv.usage else (None, None, None)


class AnthropicRelay(Translator):
    """Pass-through: the upstream's bytes go out as they came (once its first message_* event arrived, so
    a stream that is junk or an error from the start can still fail over); events are read only for the
    audit row (usage) and to know whether the stream finished (message_stop) or failed (error)."""

    keepalive = PING

    def __init__(self):
        self.parser = oa.SSEParser()
        self.usage: dict = {}
        self.started = False  # a message_* event was seen: from then on bytes go out as they come
        self._held: list[bytes] = []  # the bytes before it (a stream that is junk from the start fails over)

    def _read(self, events) -> None:
        for data in events:
            # (find, not `in`: bytes.__contains__ first tries a bytes operand as an integer, and the
            # TypeError that raises costs more than the search)
            if data.find(b'"message_') < 0 and data.find(b'"error"') < 0:
                continue  # content deltas: nothing the gateway needs
            obj = _decode(data)
            if obj is None:
                continue
            kind = obj.get("type")
            if isinstance(kind, str) and kind.startswith("message_"):
                self.started = True
            if kind == "message_start" and isinstance(obj.get("message"), dict):
                u = obj["message"].get("usage")
                if isinstance(u, dict):
                    self.usage.update(u)
            elif kind == "message_delta" and isinstance(obj.get("usage"), dict):
                self.usage.update({k: v for k, v in obj["usage"].items() if v is not None})
            elif kind == "message_stop":
                self.finished = True
            elif kind == "error":
                self.error = _err_message(obj.get("error"))
                self.finished = True

    def feed(self, chunk: bytes) -> bytes:
        self._read(self.parser.feed(chunk))
        if self._held is None:
            return chunk
        self._held.append(chunk)
        if not (self.started or self.error):
            return b""
        out, self._held = b"".join(self._held), None
        return out

    def end(self) -> bytes:
        self._read(self.parser.close())
        if self.finished:
            return b"".join(self._held or ())
        self.error = INCOMPLETE
        return an.event({"type": "error", "error": {"type": "api_error", "message": INCOMPLETE}})

    def failed(self, exc: UpstreamError) -> bytes:
        kind = "timeout_error" if isinstance(exc, UpstreamTimeout) else "api_error"
        return an.event({"type": "error", "error": {"type": kind, "message": exc.message}})

    def tokens(self) -> tuple:
        return an.audit_tokens(self.usage) if self.usage else (None, None, None)
