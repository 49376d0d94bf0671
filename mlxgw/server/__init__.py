"""The HTTP server: Falcon ASGI app factory, resources, middleware, lifespan.

`create_app` is imported lazily so that commands needing only `mlxgw.server.keys` (the `tokens` CLI) do
not load Falcon, uvicorn and aiohttp."""

from mlxgw.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from mlxgw.server.app import create_app

        return create_app
    raise AttributeError(f"module 'mlxgw.server' has no attribute {name!r}")
