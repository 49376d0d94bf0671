"""The admin API of local models, for `mlxgw models ...` (loopback only, or with a gateway key):

    GET  /admin/models                     every configured local model: state, port, pid, memory, uptime,
                                           last use, memory estimate; plus the memory budget
    POST /admin/models/{name}/start        start it (or find it running) and answer once it is ready
    POST /admin/models/{name}/stop         stop it (requests in flight get time to finish)
    GET  /admin/models/{name}/logs         the engine's log: the last `lines` lines (default 100), or the
                                           bytes from `offset` on; `x-log-offset` says where to go on from
    GET  /admin/cooldowns                  the failover circuit breakers: providers skipped after repeated
                                           failures (open), or letting one probe through (half-open)
    GET  /metrics                          Prometheus text (mlxgw.metrics), under the same guard

/admin/models also carries `cooldowns` (the same list), so `mlxgw models list` shows them.

`{name}` is a model name or alias; `?provider=` picks one when several providers declare the name.
A failed start answers 502 with the engine's last log lines in `error.log_tail`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import falcon

from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import dumps
from mlxgw.metrics import CONTENT_TYPE
from mlxgw.server.config import is_loopback
from mlxgw.server.errors import ApiError
from mlxgw.server.gateway import Gateway
from mlxgw.server.keys import presented_token
from mlxgw.supervisor import EngineError
from mlxgw.supervisor.process import tail

MAX_LOG_CHUNK = 256 * 1024


def check_admin(gw: Gateway, req) -> None:
    """The caller may use the admin API (and /metrics): from loopback, or with an admin gateway key
    (checked by the middleware already when the server requires keys)."""
    if not is_loopback(req.remote_addr or ""):
        if not gw.keys_required:
            token = presented_token(req.get_header("authorization"), req.get_header("x-api-key"))
            if token is None or gw.key_hashes.get(hashlib.sha256(token.encode()).hexdigest()) != "admin":
                raise ApiError.of(403, "The admin API answers loopback clients, or clients with an admin "
                                  "gateway key (mlxgw tokens create NAME --admin).",
                                  code="forbidden", type="permission_error")


class _Admin:
    def __init__(self, gateway: Gateway):
        self.gw = gateway

    def _guard(self, req):
        """The supervisor, once the caller may use the admin API."""
        check_admin(self.gw, req)
        sup = self.gw.supervisor
        if sup is None:
            raise ApiError.of(503, "This gateway runs no local engines.", code="no_supervisor")
        return sup

    def _model(self, req, name: str):
        sup = self._guard(req)
        try:
            return sup, sup.find(name, req.get_param("provider"))
        except LookupError as exc:
            raise ApiError.of(404, str(exc), param="name", code="model_not_found") from None


def _json(resp, obj, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps(obj)


class AdminModels(_Admin):
    async def on_get(self, req, resp) -> None:
        sup = self._guard(req)
        data = await asyncio.to_thread(sup.describe_all)  # reads /proc for memory: off the event loop
        _json(resp, {"object": "list", "data": data, "budget": sup.budget,
                     "estimated_in_use": sum(d["estimate"]["total"] for d in data
                                             if d["state"] in ("starting", "ready", "stopping")),
                     "cooldowns": self.gw.breakers.describe()})


class AdminCooldowns(_Admin):
    async def on_get(self, req, resp) -> None:
        try:
            self._guard(req)
        except ApiError as exc:
            if exc.status != 503:  # a gateway without local engines still has cooldowns
                raise
        _json(resp, {"object": "list", "data": self.gw.breakers.describe()})


class MetricsEndpoint(_Admin):
    """GET /metrics: rendered in the event loop; the live collector only reads in-memory state."""

    async def on_get(self, req, resp) -> None:
        check_admin(self.gw, req)
        resp.content_type = CONTENT_TYPE
        resp.data = self.gw.metrics.render()


class AdminModelStart(_Admin):
    async def on_post(self, req, resp, name: str) -> None:
        sup, m = self._model(req, name)
        try:
            await sup.ensure_ready(m.provider, m.name, retry_failed=True)
        except EngineError as exc:
            body = oa.error_body(exc.summary, 502, type="api_error", code="engine_failed")
            body["error"]["log_tail"] = exc.log_tail
            raise ApiError(502, body) from None
        _json(resp, await asyncio.to_thread(sup.describe, m))


class AdminModelStop(_Admin):
    async def on_post(self, req, resp, name: str) -> None:
        sup, m = self._model(req, name)
        await sup.stop(m.provider, m.name)
        _json(resp, await asyncio.to_thread(sup.describe, m))


class AdminModelLogs(_Admin):
    async def on_get(self, req, resp, name: str) -> None:
        _, m = self._model(req, name)
        offset = req.get_param_as_int("offset", min_value=0)
        lines = req.get_param_as_int("lines", min_value=0, default=100)
        text, end = await asyncio.to_thread(_read_log, m.log_path, offset, lines)
        resp.content_type = "text/plain; charset=utf-8"
        resp.set_header("x-log-offset", str(end))
        resp.data = text.encode()


def _read_log(path, offset: int | None, lines: int) -> tuple[str, int]:
    try:
        size = os.path.getsize(path)
    except OSError:
        return "", 0
    if offset is None:
        text = tail(path, lines) if lines else ""
        return (text + "\n" if text else ""), size
    if offset > size:  # the file was replaced: start over
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(MAX_LOG_CHUNK)
    return data.decode("utf-8", "replace"), offset + len(data)


def add_routes(app, gateway: Gateway) -> None:
    app.add_route("/admin/models", AdminModels(gateway))
    app.add_route("/admin/cooldowns", AdminCooldowns(gateway))
    app.add_route("/metrics", MetricsEndpoint(gateway))
    app.add_route("/admin/models/{name}/start", AdminModelStart(gateway))
    app.add_route("/admin/models/{name}/stop", AdminModelStop(gateway))
    app.add_route("/admin/models/{name}/logs", AdminModelLogs(gateway))

