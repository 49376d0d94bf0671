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
from mlxgw.server.lifespan import Lifespan
from mlxgw.server.messages import CountTokens, Messages
from mlxgw.server.middleware import RequestContext, new_request_id
from mlxgw.server.resources import Health, Models, Root, UnknownPath
from mlxgw.server.responses import InputItems, Responses, StoredResponse
from mlxgw.server.ui import add_routes as add_ui_routes


class GatewayApp(falcon.asgi.App):
    """Falcon's App plus handles on the live state, for the CLI and tests."""

    __slots__ = ("gateway", "lifespan")

    async def __call__(self, scope, receive, send):
        # Streams need the raw ASGI `receive` to notice a client that went away (uvicorn silently drops
        # writes to a closed connection); the scope is the public way to hand it to the resource.
        scope["mlxgw.receive"] = receive
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        refusal = too_large(scope, self.gateway.config.max_body_bytes)
        if refusal is not None:
            return await refusal(send)
        gw = self.gateway  # requests in flight for /metrics: here, so a stream counts until its last byte
        gw.in_flight += 1
        try:
            return await super().__call__(scope, receive, send)
        finally:
            gw.in_flight -= 1


def too_large(scope, limit: int):
    """A declared body over `limit`, answered 413 (in the path's dialect) before one byte of it is read,
    with `connection: close` so the client cannot keep streaming it; None when the length is fine."""
    # The headers as a dict in one C call, not a Python loop over them: this runs for every request. (The
    # HTTP parser refuses a repeated Content-Length, so which one a dict keeps does not matter.)
    value = dict(scope["headers"]).get(b"content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None  # the HTTP parser already refuses a malformed length
    if length <= limit:
        return None
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
    app = GatewayApp(middleware=[lifespan, RequestContext(gateway)], cors_enable=False)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)
    app.add_route("/v1/chat/completions", Inference(gateway, ChatCompletions()))
    app.add_route("/v1/messages", Inference(gateway, Messages()))
    app.add_route("/v1/responses", Inference(gateway, Responses(gateway)))
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
