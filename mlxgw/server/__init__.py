"""The HTTP server: Falcon ASGI app factory, resources, middleware, lifespan."""

from mlxgw.server.app import create_app
from mlxgw.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
