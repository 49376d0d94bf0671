"""Per-request middleware: the request id every response carries, and gateway-key checks.

The request id is generated here (never taken from the client) so it is unique and equals the id of the
request's audit row. Key checks apply only when the server listens beyond loopback; `/` and `/health`
stay open so liveness probes need no key.
"""

from __future__ import annotations

import hashlib
import os

from mlxgw.server.errors import ApiError
from mlxgw.server.gateway import Gateway
from mlxgw.server.keys import presented_token

OPEN_PATHS = frozenset({"/", "/health"})


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


class RequestContext:
    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def process_request(self, req, resp) -> None:
        rid = new_request_id()
        req.context.request_id = rid
        resp.set_header("x-request-id", rid)
        if self.gw.keys_required and req.path not in OPEN_PATHS:
            token = presented_token(req.get_header("authorization"), req.get_header("x-api-key"))
            if token is None:
                raise ApiError.of(401, "Missing gateway key: send `Authorization: Bearer <key>` or `x-api-key`.",
                                  code="missing_api_key", type="authentication_error")
            if hashlib.sha256(token.encode()).hexdigest() not in self.gw.key_hashes:
                raise ApiError.of(401, "Invalid gateway key.", code="invalid_api_key", type="authentication_error")
