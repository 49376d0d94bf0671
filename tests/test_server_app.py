"""The app's own error handling, without a running server: unexpected exceptions become a plain 500 in
OpenAI's shape, logged server-side with the request id, never a traceback for the client."""

from __future__ import annotations

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
