"""`create_app(config)`: the Falcon ASGI application, wired from plain objects.

Dependencies flow one way: the app owns one Gateway (runtime, audit writer, key hashes); resources and
middleware receive it in their constructors; the Lifespan middleware fills it at start-up.
"""

from __future__ import annotations

import falcon.asgi

from mlxgw.dialects import anthropic as an
from mlxgw.dialects import openai as oa
from mlxgw.dialects.jsonfast import dumps
from mlxgw.server import errors
from mlxgw.server.admin import add_routes as add_admin_routes
from mlxgw.server.chat import ChatCompletions
from mlxgw.server.config import ServerConfig
from mlxgw.server.gateway import Gateway
from mlxgw.server.inference import Inference
from mlxgw.server.lane import Lane
from mlxgw.server.lifespan import Lifespan
from mlxgw.server.messages import CountTokens, Messages
from mlxgw.server.middleware import RequestContext, new_request_id
from mlxgw.server.resources import Health, Models, Root, UnknownPath
from mlxgw.server.responses import InputItems, Responses, StoredResponse
from mlxgw.server.ui import add_routes as add_ui_routes


class GatewayApp(falcon.asgi.App):
    """Falcon's App plus handles on the live state, for the CLI and tests."""

    __slots__ = ("gateway", "lifespan", "lanes")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await _falcon_call(self, scope, receive, send)
        raw = scope["headers"]
        if type(raw) is not list:  # ASGI allows any iterable (falcon.testing's is one-shot): Falcon reads it too
            raw = scope["headers"] = list(raw)
        # The headers as a dict in one C call, not a Python loop over them: this runs for every request.
        # RequestContext reads Host and Origin from it too. (A dict keeps a repeated header's last value,
        # as Falcon does for Host; the HTTP parser refuses a repeated Content-Length.)
        headers = scope["mlxgw.headers"] = dict(raw)
        gw = self.gateway
        length = headers.get(b"content-length")
        if length is not None:  # checked inline, not by a call: every POST has one
            limit = gw.config.max_body_bytes
            try:
                over = int(length) > limit
            except ValueError:
                over = False  # the HTTP parser already refuses a malformed length
            if over:
                return await too_large(scope, limit)(send)
        # Streams need the raw ASGI `receive` to notice a client that went away (uvicorn silently drops
        # writes to a closed connection); the scope is the public way to hand it to the resource. It is
        # taken out again at the end: uvicorn's `receive` is a method of the object that holds the scope,
        # and the cycle left would make every request's objects garbage that only a collection frees.
        scope["mlxgw.receive"] = receive
        gw.in_flight += 1  # requests in flight for /metrics: here, so a stream counts until its last byte
        try:
            # An inference POST takes its lane (server/lane.py) unless a header is repeated, whose values
            # Falcon would join where the dict kept the last.
            lane = self.lanes.get(scope["path"])
            if lane is not None and scope["method"] == "POST" and len(headers) == len(raw):
                return await lane(scope, receive, send, headers)
            # Falcon's own __call__ named, not found through super(): one object less per request.
            return await _falcon_call(self, scope, receive, send)
        finally:
            gw.in_flight -= 1
            del scope["mlxgw.receive"]


_falcon_call = falcon.asgi.App.__call__


def too_large(scope, limit: int):
    """The 413 answer to a declared body over `limit` (in the path's dialect), sent before one byte of it
    is read, with `connection: close` so the client cannot keep streaming it."""
    message = f"Request body too large: the limit is {limit} bytes."
    if errors.anthropic_path(scope["path"]):
        body = an.error_body(message, 413, an.error_type(413))
    else:
        body = oa.error_body(message, 413, code="request_too_large")
    data = dumps(body)
    rid = new_request_id().encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
               (b"connection", b"close"), (b"x-request-id", rid)]
    if errors.anthropic_path(scope["path"]):
        headers.append((b"request-id", rid))

    async def answer(send):
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": data})
    return answer


def create_app(config: ServerConfig | None = None, *, store=None,
               loaded: tuple[int, dict, dict] | None = None) -> GatewayApp:
    """The app for `config`. `store` is an already open Database (mlxgw.store.sql) or Store and `loaded`
    what `mlxgw.store.live.load_runtime(store)` returned, when the caller (the CLI) checked them up front."""
    config = config or ServerConfig()
    gateway = Gateway(config)
    lifespan = Lifespan(gateway, store, loaded)
    context = RequestContext(gateway)
    app = GatewayApp(middleware=[lifespan, context], cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)
    app.lanes = {}
    for path, resource in (("/v1/chat/completions", Inference(gateway, ChatCompletions())),
                           ("/v1/messages", Inference(gateway, Messages())),
                           ("/v1/responses", Inference(gateway, Responses(gateway)))):
        app.add_route(path, resource)  # Falcon's route stays: other methods, repeated headers, a trailing /
        app.lanes[path] = Lane(resource, context.check)
    app.add_route("/v1/responses/{response_id}", StoredResponse(gateway))
    app.add_route("/v1/responses/{response_id}/input_items", InputItems(gateway))
    app.add_route("/v1/messages/count_tokens", CountTokens(gateway))
    app.add_route("/v1/models", Models(gateway))
    app.add_route("/health", Health(gateway))
    app.add_route("/", Root())
    app.add_sink(UnknownPath(gateway), "/")  # routes take precedence: this answers only unknown paths
    add_admin_routes(app, gateway)
    add_ui_routes(app, gateway, lifespan)
    app.gateway = gateway
    app.lifespan = lifespan
    return app
