"""The one inference endpoint: POST /v1/chat/completions, /v1/messages... are each this resource with
its client dialect (`server/dialect.py`).

The request path, the same for every dialect: read the body (bounded), let the dialect parse and check
it, pick the route from the current Runtime, run the attempt loop (`attempts.run`) over the route's
ordered targets, then relay the stream through the pair's translator or write the pair's response body.
The HTTP status is decided only once a backend answered (or, for the last target left on a local
engine that is prefilling, once the stream is committed with keep-alives: see `server/attempts.py`); a
failure before that is answered in the dialect's error shape. Exactly one audit record per request, however it ends:
completed when the answer is (a stream completes it when the relay ends), or when an error or a bug
escapes.
"""

from __future__ import annotations

import contextlib
import time

import falcon

from mlxgw.dialects.jsonfast import dumps
from mlxgw.server import attempts
from mlxgw.server.dialect import Dialect
from mlxgw.server.errors import ApiError, with_summary
from mlxgw.server.gateway import Gateway
from mlxgw.server.record import AuditRecord
from mlxgw.server.streaming import relay

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def read_body(req, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes with 413 (before reading it when the length
    is declared, while reading it when the body is chunked)."""
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    if length is not None:
        data = await req.stream.read()
        if len(data) < length:  # the read deadline cut a body that stopped arriving
            raise ApiError.of(408, "The request body was not received in time.", code="request_timeout")
        return data
    parts, size = [], 0
    async for part in req.stream:
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    return b"".join(parts)


def _too_large(limit: int) -> ApiError:
    return ApiError.of(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


def _hook(dialect: Dialect, name: str):
    """The dialect's hook `name`, or None when its class leaves it as Dialect's, which does nothing: the
    request path then skips the call (about 450 instructions each)."""
    return None if getattr(type(dialect), name) is getattr(Dialect, name) else getattr(dialect, name)


class Inference:
    def __init__(self, gateway: Gateway, dialect: Dialect):
        self.gw = gateway
        self.dialect = dialect
        self._start, self._prepare = _hook(dialect, "start"), _hook(dialect, "prepare")
        self._answered, self._completed = _hook(dialect, "answered"), _hook(dialect, "completed")

    async def on_post(self, req, resp) -> None:
        # One coroutine for the whole request, not a helper awaited inside a try: every suspension of
        # the upstream call resumes each frame above it, so each level costs on every wait.
        t0 = time.perf_counter()
        dialect = self.dialect
        rec = AuditRecord(req.context.request_id, dialect.wire, req.path)
        if self._start is not None:
            self._start(req, resp)
        try:
            raw = await read_body(req, self.gw.config.max_body_bytes)
            ex = dialect.parse(req, raw, rec.id)
            rec.requested_model, rec.stream = ex.model, ex.stream
            if self._prepare is not None:
                waiting = self._prepare(ex)
                if waiting is not None:
                    await waiting
            rt = self.gw.runtime
            route = rt.snapshot.route(ex.model)
            if route is None:
                raise dialect.not_found(ex.model)
            rec.route = route.key
            try:
                ans = await attempts.run(rt, route, ex, rec, t0, dialect, self.gw.config.keepalive_interval)
            except attempts.Failed as f:
                raise with_summary(dialect.failure(f.error, f.pair), f.summary) from None
            if ex.stream:
                resp.content_type = "text/event-stream"
                resp.set_headers(SSE_HEADERS)
                if self._answered is not None:
                    self._answered(resp, {"request-id": ans.chunks.request_id} if ans.chunks.request_id else None)
                resp.stream = relay(ans.first, ans.chunks, ans.translator, rec,
                                    lambda status, err: self._finish(rec, t0, status, err),
                                    req.scope.get("mlxgw.receive"), ended=ans.ended, pending=ans.pending,
                                    keepalive=ans.keepalive)
                return
            if self._answered is not None:
                self._answered(resp, ans.result.headers)
            out, tokens = ans.leg.pair.response(ex, ans.leg, ans.result)
            rec.set_tokens(tokens)
            resp.content_type = falcon.MEDIA_JSON
            resp.data = ans.result.raw if out is ans.result.body and ans.result.raw else dumps(out)
            if self._completed is not None:
                self._completed(ex, out)
        except ApiError as exc:
            self._finish(rec, t0, exc.status, exc.message)
            raise
        except Exception as exc:  # a bug: answered as a plain 500 by the error handler, audited here
            self._finish(rec, t0, 500, f"internal error: {type(exc).__name__}")
            raise
        finish(self.gw, rec, t0, 200)

    def _finish(self, rec: AuditRecord, t0: float, status: int, error: str | None = None) -> None:
        finish(self.gw, rec, t0, status, error)


def finish(gw: Gateway, rec: AuditRecord, t0: float, status: int, error: str | None = None) -> None:
    """Complete an audit record and queue its row."""
    rec.status = status
    rec.error = error
    rec.duration_ms = (time.perf_counter() - t0) * 1000
    gw.audit.record(rec.row())


@contextlib.asynccontextmanager
async def audited(gw: Gateway, req, client_api: str):
    """One audit row for a request the inference endpoint does not serve (count_tokens, stored
    responses): the record to fill, completed with the answer's status or the error that escaped."""
    t0 = time.perf_counter()
    rec = AuditRecord(req.context.request_id, client_api, req.path)
    try:
        yield rec
    except ApiError as exc:
        finish(gw, rec, t0, exc.status, exc.message)
        raise
    except falcon.HTTPError as exc:
        finish(gw, rec, t0, exc.status_code, exc.title)
        raise
    except Exception as exc:
        finish(gw, rec, t0, 500, f"internal error: {type(exc).__name__}")
        raise
    finish(gw, rec, t0, 200)
