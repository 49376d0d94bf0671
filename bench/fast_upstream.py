"""An OpenAI-compatible upstream that answers instantly, for the benchmark.

A raw asyncio Protocol (uvloop when installed) with pre-rendered responses: HTTP/1.1 keep-alive, no
framework, so it is never what limits a measurement. tests/upstream.py (aiohttp, scriptable, recording
every request) is the right server for tests but costs ~10x more CPU per request.

    python bench/fast_upstream.py --port 0     # prints "PORT <n>" on stdout once listening

Endpoints: GET /health, GET /v1/models, POST /v1/chat/completions (non-streaming JSON, or an SSE stream
of role / N content chunks (--chunks, default 20) / finish / usage chunk / [DONE] when the body has
"stream": true). Bodies are conformant with OpenAI's schema (same shapes as tests/upstream.py's
defaults), and all of them are rendered once at start-up, so answering costs one write.

`--trickle-ms MS` sends a stream as a real model does instead: one event per write, MS milliseconds apart,
so the gateway reads (and relays) each event on its own. Throughput is then bounded by the delays, not the
gateway; compare CPU per request (bench/run.py reports it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import sys
import time

CREATED = int(time.time())

DEFAULT_CHUNKS = 20  # issue 15's setup: a stream of 20 content chunks
TRICKLE = 0.0  # seconds between a stream's events (--trickle-ms); 0: a whole answer in one write


def _usage(tokens: int) -> dict:
    return {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": 8 + tokens}


def _completion(text: str, tokens: int) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(tokens),
    }, separators=(",", ":")).encode()


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    obj: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": "bench-model"}
    if usage:
        obj["choices"] = []
        obj["usage"] = usage
    else:
        obj["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _stream(events: list[bytes]) -> list[bytes]:
    """An SSE answer as pieces: the head with the first event's HTTP chunk, one chunk per event, the
    chunked terminator with the last."""
    parts = [b"%x\r\n%s\r\n" % (len(p), p) for p in events]
    parts[0] = _SSE_HEAD + parts[0]
    parts[-1] += b"0\r\n\r\n"
    return parts


def _response(status: str, ctype: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


_SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
RESP_HEALTH = _response("200 OK", b"application/json", b'{"status":"ok"}')
RESP_MODELS = _response("200 OK", b"application/json", json.dumps({
    "object": "list", "data": [{"id": "bench-model", "object": "model", "created": CREATED, "owned_by": "bench"}]}).encode())
RESP_404 = _response("404 Not Found", b"application/json",
                     b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}')


def render(chunks: int = DEFAULT_CHUNKS) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(JSON answer, stream, stream with a usage chunk) as whole HTTP responses in pieces (one piece for
    the JSON answer, one per event for a stream); the JSON answer's content is the stream's content
    joined, and one chunk counts as one token."""
    pieces = [f"word{i} " for i in range(chunks)]
    events = [_chunk({"role": "assistant", "content": ""}), *(_chunk({"content": p}) for p in pieces),
              _chunk({}, "stop")]
    done = b"data: [DONE]\n\n"
    return ([_response("200 OK", b"application/json", _completion("".join(pieces), chunks))],
            _stream(events + [done]), _stream(events + [_chunk({}, usage=_usage(chunks)), done]))


RESP_CHAT, RESP_STREAM, RESP_STREAM_USAGE = render()

_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_USAGE = re.compile(rb'"include_usage"\s*:\s*true')


class Http(asyncio.Protocol):
    __slots__ = ("transport", "buf", "queue", "dripping")

    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport
        self.buf = b""
        self.queue: collections.deque = collections.deque()  # pieces still to send (--trickle-ms)
        self.dripping = False

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out: list[bytes] = []
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            m = _CL.search(head)
            length = int(m.group(1)) if m else 0
            total = end + 4 + length
            if len(buf) < total:
                break
            body = buf[end + 4:total]
            buf = buf[total:]
            if head.startswith(b"POST /v1/chat/completions"):
                if _STREAM.search(body):
                    out += RESP_STREAM_USAGE if _USAGE.search(body) else RESP_STREAM
                else:
                    out += RESP_CHAT
            elif head.startswith(b"GET /health"):
                out.append(RESP_HEALTH)
            elif head.startswith(b"GET /v1/models"):
                out.append(RESP_MODELS)
            else:
                out.append(RESP_404)
        self.buf = buf
        if not out:
            return
        if not TRICKLE:
            self.transport.write(b"".join(out))
            return
        self.queue.extend(out)
        if not self.dripping:
            self.dripping = True
            self._drip()

    def _drip(self) -> None:
        if self.transport.is_closing():
            self.queue.clear()
        if not self.queue:
            self.dripping = False
            return
        self.transport.write(self.queue.popleft())
        asyncio.get_running_loop().call_later(TRICKLE, self._drip)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, host, port, reuse_address=True, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=DEFAULT_CHUNKS, help="content chunks per stream (default 20)")
    ap.add_argument("--trickle-ms", type=float, default=0.0,
                    help="send a stream one event per write, this many ms apart (default 0: one write)")
    args = ap.parse_args()
    global RESP_CHAT, RESP_STREAM, RESP_STREAM_USAGE, TRICKLE
    RESP_CHAT, RESP_STREAM, RESP_STREAM_USAGE = render(max(1, args.chunks))
    TRICKLE = max(0.0, args.trickle_ms) / 1000
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
