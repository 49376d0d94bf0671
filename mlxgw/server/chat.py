"""POST /v1/chat/completions in the OpenAI dialect (GATE-01, GATE-02).

The request path: read the body (bounded), check it, pick the route from the current Runtime, then the
attempt loop over the route's ordered targets. A target that fails before any byte reached the client
(connection refused, connect timeout, 5xx, per `routing.policy`) hands over to the next one; the HTTP
status is decided only once a backend answered. After the first byte, a failure ends the stream with an
error event and no `[DONE]`. One audit row per request, queued when the answer is complete.
"""

from __future__ import annotations

import asyncio
import logging
import time

import falcon

from mlxgw.backends.base import (
    ChatResult, UpstreamConnectError, UpstreamError, UpstreamProtocolError, UpstreamTimeout,
)  # fmt: skip
from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import DecodeError, dumps, loads
from mlxgw.routing import Attempts
from mlxgw.server.errors import ApiError, from_upstream
from mlxgw.server.gateway import Gateway

log = logging.getLogger("mlxgw.server")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def read_body(req, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes with 413 (before reading it when the length
    is declared, while reading it when the body is chunked)."""
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    if length is not None:
        return await req.stream.read()
    parts, size = [], 0
    async for part in req.stream:
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(limit: int) -> ApiError:
    return ApiError.of(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


class ChatCompletions:
    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def on_post(self, req, resp) -> None:
        t0 = time.perf_counter()
        row = {"id": req.context.request_id, "ts": time.time(), "client_api": "openai", "backend_api": None,
               "requested_model": None, "route": None, "provider": None, "backend_model": None, "attempts": 0,
               "stream": False, "status": 0, "duration_ms": 0.0, "ttfb_ms": None, "input_tokens": None,
               "output_tokens": None, "cached_tokens": None, "error": None}
        try:
            await self._serve(req, resp, row, t0)
        except ApiError as exc:
            self._finish(row, t0, exc.status, exc.message)
            raise
        except Exception as exc:  # a bug: answered as a plain 500 by the error handler, audited here
            self._finish(row, t0, 500, f"internal error: {type(exc).__name__}")
            raise

    def _finish(self, row: dict, t0: float, status: int, error: str | None = None) -> None:
        row["status"] = status
        row["error"] = error
        row["duration_ms"] = (time.perf_counter() - t0) * 1000
        self.gw.audit.record(row)

    async def _serve(self, req, resp, row: dict, t0: float) -> None:
        raw = await read_body(req, self.gw.config.max_body_bytes)
        try:
            body = oa.parse_request(raw)
        except oa.RequestError as exc:
            raise ApiError.of(400, exc.message, param=exc.param, code=exc.code) from None
        model = body["model"]
        stream = bool(body.get("stream"))
        row["requested_model"], row["stream"] = model, stream
        rt = self.gw.runtime
        snap = rt.snapshot
        route = snap.route(model)
        if route is None:
            raise ApiError.of(404, f"The model `{model}` does not exist or no route of this gateway matches it.",
                              param="model", code="model_not_found")
        row["route"] = route.key
        attempts = Attempts(route.targets)
        error: UpstreamError | None = None
        for target in attempts:
            row["attempts"] = attempts.count
            backend = rt.backends.get(target.provider)
            backend_model = snap.backend_model(target, model)
            row["provider"], row["backend_model"] = target.provider, backend_model
            if backend is None:
                reason = rt.unavailable.get(target.provider) or f"provider '{target.provider}' is not configured"
                error = UpstreamConnectError(target.provider, reason)
                continue
            row["backend_api"] = backend.api
            upstream_body = oa.upstream_request(body, backend_model)
            try:
                if stream:
                    chunks = backend.stream(upstream_body, target.timeouts)
                    try:
                        first = await chunks.__anext__()
                    except StopAsyncIteration:
                        raise UpstreamProtocolError(target.provider,
                                                    f"provider '{target.provider}' sent an empty stream") from None
                else:
                    result = await backend.chat(upstream_body, target.timeouts)
            except UpstreamError as exc:
                error = exc
                if attempts.failed(exc):
                    continue
                break
            row["ttfb_ms"] = (time.perf_counter() - t0) * 1000
            if stream:
                resp.content_type = "text/event-stream"
                resp.set_headers(SSE_HEADERS)
                resp.stream = self._relay(first, chunks, row, t0, backend_model, oa.wants_usage(body),
                                          req.scope.get("mlxgw.receive"))
            else:
                self._respond(resp, result, row, t0, backend_model)
            return
        raise from_upstream(error) from None

    def _respond(self, resp, result: ChatResult, row: dict, t0: float, backend_model: str) -> None:
        out = oa.response(result.body, backend_model)
        row["input_tokens"], row["output_tokens"], row["cached_tokens"] = oa.tokens(out.get("usage"))
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps(out)
        self._finish(row, t0, 200)

    async def _relay(self, first: bytes, chunks, row: dict, t0: float, backend_model: str, keep_usage: bool,
                     receive=None):
        """Relay the upstream's events to the client as they arrive, normalised, one write per upstream
        read. Ends with [DONE], or with an error event when the stream breaks. When the client goes away
        the upstream request is closed at the next chunk, so a backend stops generating for nobody."""
        gone = asyncio.ensure_future(receive()) if receive is not None else None
        status = 200
        parser = oa.SSEParser()
        stream_id = "chatcmpl-" + row["id"][4:]
        created = int(time.time())
        done = finished = False
        error: str | None = None
        chunk = first
        try:
            while True:
                out = []
                events = parser.feed(chunk) if chunk is not None else parser.close()
                for data in events:
                    if data == b"[DONE]":
                        done = True
                        break
                    try:
                        obj = loads(data)
                    except DecodeError:
                        continue  # keep-alive noise or a broken line: nothing a client can use
                    if not isinstance(obj, dict):
                        continue
                    if "error" in obj:
                        err = obj["error"]
                        error = str(err.get("message") if isinstance(err, dict) else err) or "upstream error"
                        out.append(oa.sse_error(f"provider '{row['provider']}' failed mid-stream: {error}"))
                        break
                    usage = obj.get("usage")
                    if isinstance(usage, dict):
                        row["input_tokens"], row["output_tokens"], row["cached_tokens"] = oa.tokens(usage)
                        if not obj.get("choices") and not keep_usage:
                            continue  # the usage chunk the gateway asked for on its own behalf
                    c = oa.chunk(obj, backend_model, stream_id, created, keep_usage)
                    if any(ch["finish_reason"] for ch in c["choices"]):
                        finished = True
                    out.append(oa.sse(c))
                if out:
                    yield b"".join(out)
                if gone is not None and gone.done():
                    status, error = 499, "client disconnected"
                    return
                if done or error or chunk is None:
                    break
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    chunk = None  # flush what the parser holds, then end
            if not done and not error and not finished:
                error = "the provider closed the stream before it finished"
                yield oa.sse_error(error, code="upstream_incomplete")
            if not error:
                yield oa.DONE
        except UpstreamError as exc:
            error = exc.message
            timeout = isinstance(exc, UpstreamTimeout)
            yield oa.sse_error(exc.message, type="timeout_error" if timeout else "api_error",
                               code="timeout" if timeout else "upstream_failed")
        except BaseException as exc:  # client gone (cancelled) or a bug: record it, then let it propagate
            error = error or f"stream aborted: {type(exc).__name__}"
            raise
        finally:
            if gone is not None and not gone.done():
                gone.cancel()
            await chunks.aclose()
            self._finish(row, t0, status, error)
