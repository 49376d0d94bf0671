"""The small resources: model list, health, root. Each gets the shared Gateway passed in."""

from __future__ import annotations

import falcon

from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import dumps
from mlxgw.server.gateway import Gateway


class Models:
    """GET /v1/models: the names a client can ask for (OpenAI's list shape). Built from the current
    snapshot; cached per revision so a busy client listing models costs one dict lookup."""

    def __init__(self, gateway: Gateway):
        self.gw = gateway
        self._cache: tuple[object, bytes] | None = None

    async def on_get(self, req, resp) -> None:
        rt = self.gw.runtime
        cached = self._cache
        if cached is None or cached[0] is not rt:
            data = dumps(oa.models_list(list(rt.snapshot.models())))
            self._cache = cached = (rt, data)
        resp.content_type = falcon.MEDIA_JSON
        resp.data = cached[1]


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
