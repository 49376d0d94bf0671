"""The app's own error handling, without a running server: unexpected exceptions become a plain 500 in
OpenAI's shape, logged server-side with the request id, never a traceback for the client."""

from __future__ import annotations

import asyncio
import gc
import weakref

import falcon.testing

from mlxgw.server import ServerConfig, create_app
from tests import conformance


class Exploding:
    async def on_get(self, req, resp):
        raise RuntimeError("secret internal detail")


def test_unexpected_exception_is_a_plain_500(home, caplog):  # its own MLXGW_HOME, never the real one
    app = create_app(ServerConfig())
    app.add_route("/boom", Exploding())
    r = falcon.testing.TestClient(app).simulate_get("/boom", host="localhost")
    assert r.status_code == 500
    conformance.validate("ErrorResponse", r.json)
    rid = r.headers["x-request-id"]
    assert rid in r.json["error"]["message"]
    assert "secret internal detail" not in r.text and "Traceback" not in r.text
    assert any(rid in rec.getMessage() for rec in caplog.records)


class Cycle:
    """What uvicorn hands the app: an object that holds the request's scope and whose method is `receive`."""

    def __init__(self, path: str):
        self.scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                      "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                      "root_path": "", "headers": [(b"host", b"localhost")], "server": ("127.0.0.1", 8080),
                      "client": ("127.0.0.1", 50000)}

    async def receive(self):
        return {"type": "http.request", "body": b"", "more_body": False}


def test_a_request_leaves_no_reference_cycle_for_the_collector(home):
    # A cycle through the scope would make each request's objects garbage that only a collection frees:
    # a collection every few requests under load, and memory not reused while still warm.
    app = create_app(ServerConfig())
    sent = []

    async def send(message):
        sent.append(message)

    cycle = Cycle("/health")
    freed = weakref.ref(cycle)
    gc.disable()
    try:
        asyncio.run(app(cycle.scope, cycle.receive, send))
        del cycle
        assert freed() is None, "the request's objects are held in a reference cycle"
    finally:
        gc.enable()
    assert sent[0]["type"] == "http.response.start"
