"""Per-request middleware: the request id every response carries, the Host/Origin checks and CORS
(`mlxgw.server.origins`), and gateway-key checks.

The request id is generated here (never taken from the client) so it is unique and equals the id of the
request's audit row. Keys are required when the server listens beyond loopback or runs with
`--require-keys` (a loopback bind behind a reverse proxy); `/` and `/health` stay open so liveness probes
need no key. A key's scope decides whether it reaches `/admin/*`: only "admin" keys do.
"""

from __future__ import annotations

import hashlib
import itertools
import os

from mlxgw.server.errors import ApiError
from mlxgw.server.gateway import Gateway
from mlxgw.server.keys import presented_token
from mlxgw.server.origins import ALLOW_METHODS, EXPOSE_HEADERS, host_refusal, origin_refusal

OPEN_PATHS = frozenset({"/", "/health"})


# Request ids: a random prefix drawn once per process, then a counter. Unique across restarts and
# replicas (48 random bits per process) without a system call per request, which os.urandom was.
_ID_PREFIX = "req_" + os.urandom(6).hex()
# The counter's 12 hex digits are those after hex()'s "0x1": a 49th bit set keeps them zero-padded without
# a format spec (which took twice as long), for the 2**48 - 2**32 ids before it could carry further.
_ids = itertools.count((1 << 48) | int.from_bytes(os.urandom(4), "big"))


def new_request_id() -> str:
    return _ID_PREFIX + hex(next(_ids))[3:]


def forbidden(message: str, code: str) -> ApiError:
    return ApiError.of(403, message, code=code, type="permission_error")


class RequestContext:
    def __init__(self, gateway: Gateway):
        self.gw = gateway

    async def process_request(self, req, resp) -> None:
        self.check(req, resp)

    def check(self, req, resp) -> None:
        """The checks themselves, synchronous: the inference routes' lane (server/lane.py) calls them
        without making a coroutine of them."""
        rid = new_request_id()
        req.context.request_id = rid
        resp.set_header("x-request-id", rid)
        access = self.gw.access
        # GatewayApp.__call__ made the headers a dict already: two lookups in it, not two get_header calls.
        headers = req.scope["mlxgw.headers"]
        host = headers.get(b"host")
        if host is not None:
            host = host.decode("latin1")  # as Falcon's get_header decodes
        if not access.host_ok(host):
            raise forbidden(host_refusal(host), "host_not_allowed")
        if b"origin" in headers:
            # Falcon's value, as before: repeated Origin headers come joined with commas.
            origin = req.get_header("origin")
            if not access.origin_ok(origin, host):
                raise forbidden(origin_refusal(origin), "origin_not_allowed")
            if not access.same_origin(origin.lower(), host):
                # An allowed cross-origin caller may read the answer, an error included: set here, before
                # the responder or an error handler runs (they keep headers already set), so the request
                # needs no response-phase middleware.
                resp.set_header("access-control-allow-origin", origin)
                resp.set_header("access-control-expose-headers", EXPOSE_HEADERS)
                resp.set_header("vary", "Origin")
            if req.method == "OPTIONS" and req.get_header("access-control-request-method"):
                self._preflight(req, resp, origin)
                return
        if self.gw.keys_required and req.path not in OPEN_PATHS:
            token = presented_token(req.get_header("authorization"), req.get_header("x-api-key"))
            if token is None:
                raise ApiError.of(401, "Missing gateway key: send `Authorization: Bearer <key>` or `x-api-key`.",
                                  code="missing_api_key", type="authentication_error")
            scope = self.gw.key_hashes.get(hashlib.sha256(token.encode()).hexdigest())
            if scope is None:
                raise ApiError.of(401, "Invalid gateway key.", code="invalid_api_key", type="authentication_error")
            if req.path.startswith("/admin") and scope != "admin":
                raise forbidden("This gateway key may not use the admin API: create an admin key with "
                                "`mlxgw tokens create NAME --admin`.", "admin_key_required")

    @staticmethod
    def _preflight(req, resp, origin: str) -> None:
        resp.status = 204
        resp.set_header("access-control-allow-origin", origin)
        resp.set_header("access-control-allow-methods", ALLOW_METHODS)
        asked = req.get_header("access-control-request-headers")
        if asked:
            resp.set_header("access-control-allow-headers", asked[:1000])
        resp.set_header("access-control-max-age", "600")
        resp.set_header("vary", "Origin")
        resp.complete = True
