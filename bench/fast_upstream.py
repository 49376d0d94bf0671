"""An OpenAI-compatible upstream that answers instantly, for the benchmark.

A raw asyncio Protocol (uvloop when installed) with pre-rendered responses: HTTP/1.1 keep-alive, no
framework, so it is never what limits a measurement. tests/upstream.py (aiohttp, scriptable, recording
every request) is the right server for tests but costs ~10x more CPU per request.

    python bench/fast_upstream.py --port 0     # prints "PORT <n>" on stdout once listening

Endpoints: GET /health, GET /v1/models, POST /v1/chat/completions (non-streaming JSON, or an SSE stream
of role / 3 content chunks / finish / usage chunk / [DONE] when the body has "stream": true). Bodies are
conformant with OpenAI's schema (same shapes as tests/upstream.py's defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

CREATED = int(time.time())

_COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED, "model": "bench-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the bench upstream.",
                                          "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14},
}, separators=(",", ":")).encode()


def _chunk(delta: dict, finish: str | None = None, usage: bool = False) -> bytes:
    obj: dict = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED, "model": "bench-model"}
    if usage:
        obj["choices"] = []
        obj["usage"] = {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14}
    else:
        obj["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


_EVENTS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Hello "}),
    _chunk({"content": "from the "}),
    _chunk({"content": "bench upstream."}),
    _chunk({}, "stop"),
]
_USAGE_EVENT = _chunk({}, usage=True)
_DONE = b"data: [DONE]\n\n"


def _chunked(parts: list[bytes]) -> bytes:
    out = b""
    for p in parts:
        out += b"%x\r\n%s\r\n" % (len(p), p)
    return out + b"0\r\n\r\n"


def _response(status: str, ctype: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


_SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
RESP_CHAT = _response("200 OK", b"application/json", _COMPLETION)
RESP_STREAM = _SSE_HEAD + _chunked(_EVENTS + [_DONE])
RESP_STREAM_USAGE = _SSE_HEAD + _chunked(_EVENTS + [_USAGE_EVENT, _DONE])
RESP_HEALTH = _response("200 OK", b"application/json", b'{"status":"ok"}')
RESP_MODELS = _response("200 OK", b"application/json", json.dumps({
    "object": "list", "data": [{"id": "bench-model", "object": "model", "created": CREATED, "owned_by": "bench"}]}).encode())
RESP_404 = _response("404 Not Found", b"application/json",
                     b'{"error":{"message":"not found","type":"invalid_request_error","param":null,"code":null}}')

_CL = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_USAGE = re.compile(rb'"include_usage"\s*:\s*true')


class Http(asyncio.Protocol):
    __slots__ = ("transport", "buf")

    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        out = []
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
                    out.append(RESP_STREAM_USAGE if _USAGE.search(body) else RESP_STREAM)
                else:
                    out.append(RESP_CHAT)
            elif head.startswith(b"GET /health"):
                out.append(RESP_HEALTH)
            elif head.startswith(b"GET /v1/models"):
                out.append(RESP_MODELS)
            else:
                out.append(RESP_404)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))


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
    args = ap.parse_args()
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
