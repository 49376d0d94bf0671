"""`create_app(config)`: the Falcon ASGI application, wired from plain objects.

Dependencies flow one way: the app owns one Gateway (runtime, audit writer, key hashes); resources and
middleware receive it in their constructors; the Lifespan middleware fills it at start-up.
"""

from __future__ import annotations

import falcon.asgi

from mlxgw.server import errors
from mlxgw.server.admin import add_routes as add_admin_routes
from mlxgw.server.chat import ChatCompletions
from mlxgw.server.config import ServerConfig
from mlxgw.server.gateway import Gateway
from mlxgw.server.inference import Inference
from mlxgw.server.lifespan import Lifespan
from mlxgw.server.messages import CountTokens, Messages
from mlxgw.server.middleware import RequestContext
from mlxgw.server.resources import Health, Models, Root
from mlxgw.server.responses import InputItems, Responses, StoredResponse
from mlxgw.server.ui import add_routes as add_ui_routes
from mlxgw.store.db import Store


class GatewayApp(falcon.asgi.App):
    """Falcon's App plus handles on the live state, for the CLI and tests."""

    __slots__ = ("gateway", "lifespan")

    async def __call__(self, scope, receive, send):
        # Streams need the raw ASGI `receive` to notice a client that went away (uvicorn silently drops
        # writes to a closed connection); the scope is the public way to hand it to the resource.
        scope["mlxgw.receive"] = receive
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        gw = self.gateway  # requests in flight for /metrics: here, so a stream counts until its last byte
        gw.in_flight += 1
        try:
            return await super().__call__(scope, receive, send)
        finally:
            gw.in_flight -= 1


def create_app(config: ServerConfig | None = None, *, store: Store | None = None,
               loaded: tuple[int, dict, dict] | None = None) -> GatewayApp:
    """The app for `config`. `store` is an already open Store and `loaded` what
    `mlxgw.store.state.load_runtime(store)` returned, when the caller (the CLI) checked them up front."""
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
    add_admin_routes(app, gateway)
    add_ui_routes(app, gateway, lifespan)
    app.gateway = gateway
    app.lifespan = lifespan
    return app
