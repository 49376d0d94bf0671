"""The small resources: model list, health, root, and the sink for unknown paths. Each gets the shared
Gateway passed in."""

from __future__ import annotations

import time

import falcon

from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import dumps
from mlxgw.server.errors import serialize
from mlxgw.server.gateway import Gateway
from mlxgw.server.record import AuditRecord
from mlxgw.text import clip


class Models:
    """GET /v1/models: the names a client can ask for, in OpenAI's list shape, or in Anthropic's
    (`{"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more", "first_id", "last_id"}`)
    when the request carries `anthropic-version` (Anthropic SDKs, Claude Code's model discovery). Built
    from the current snapshot; cached per revision so a busy client listing models costs one dict lookup."""

    def __init__(self, gateway: Gateway):
        self.gw = gateway
        self._cache: tuple[object, bytes, bytes] | None = None

    async def on_get(self, req, resp) -> None:
        rt = self.gw.runtime
        cached = self._cache
        if cached is None or cached[0] is not rt:
            models = list(rt.snapshot.models())
            ids = [mid for mid, _ in models]
            anthropic = {"data": [{"type": "model", "id": mid, "display_name": mid,
                                   "created_at": "1970-01-01T00:00:00Z"} for mid in ids],
                         "has_more": False, "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None}
            self._cache = cached = (rt, dumps(oa.models_list(models)), dumps(anthropic))
        resp.content_type = falcon.MEDIA_JSON
        resp.data = cached[2] if req.get_header("anthropic-version") else cached[1]


class Health:
    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def on_get(self, req, resp) -> None:
        rt = self.gw.runtime
        resp.content_type = falcon.MEDIA_JSON
        resp.data = dumps({"status": "ok", "revision": rt.revision if rt else None})


class Root:
    async def on_get(self, req, resp) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = b'{"name":"mlxgw","status":"ok"}'

    async def on_head(self, req, resp) -> None:
        resp.content_type = falcon.MEDIA_JSON


class UnknownPath:
    """Every path no route serves: a 404 in the path's dialect, and an audit row (client API `unknown`,
    the path kept) so `mlxgw logs` shows an operator that a client is calling what does not exist."""

    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def __call__(self, req, resp, **kwargs) -> None:
        t0 = time.perf_counter()
        path = clip(req.path, 300)
        serialize(req, resp, 404, oa.error_body(f"Unknown request URL: {clip(req.method, 16)} {path}.", 404,
                                                code="unknown_url"))
        if self.gw.audit is not None:
            rec = AuditRecord(req.context.request_id, "unknown", status=404, error="unknown path",
                              duration_ms=(time.perf_counter() - t0) * 1000, path=path)
            self.gw.audit.record(rec.row())
