"""POST /admin/providers/{name}/key: store a provider's API key from the route view's form (CONF-03).

The same store operation as `mlxgw providers set-key` (mlxgw.declarative.set_key: encrypted, fingerprint
only, a new config revision), then an immediate reload, so the page the browser is sent back to
(`/ui?key_stored=NAME`) already shows the new fingerprint and requests already use the key.

Who may: a loopback client, or one presenting a gateway key (as the rest of the admin API). From where:
only the page's own origin. A browser reaches 127.0.0.1 from any site it visits, so the request must
carry `Origin` equal to `http://` + its own `Host`, and that host must be a loopback name or the address
the gateway listens on (a DNS-rebinding page has a matching Origin and Host, but under its own name).
The key is read from the form body only, never echoed, logged or put in an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from urllib.parse import parse_qs, quote

from mlxgw.server.config import is_loopback
from mlxgw.server.errors import ApiError
from mlxgw.server.gateway import Gateway
from mlxgw.server.keys import presented_token

log = logging.getLogger("mlxgw.server")
PATH = "/admin/providers/{name}/key"
MAX_FORM = 16 * 1024
MAX_KEY = 4096


def _forbidden(message: str) -> ApiError:
    return ApiError.of(403, message, code="forbidden", type="permission_error")


class ProviderKey:
    def __init__(self, gateway: Gateway, lifespan):
        self.gw = gateway
        self.lifespan = lifespan

    def _check_caller(self, req) -> None:
        if not is_loopback(req.remote_addr or ""):
            token = presented_token(req.get_header("authorization"), req.get_header("x-api-key"))
            if token is None or hashlib.sha256(token.encode()).hexdigest() not in self.gw.key_hashes:
                raise _forbidden("Keys can be stored from loopback clients, or with a gateway key.")
        host = req.get_header("host") or ""
        origin = req.get_header("origin")
        if not origin or origin != f"{req.scheme}://{host}":
            raise _forbidden("Keys can be stored only from this gateway's own page (the Origin header must be "
                             "this gateway's address).")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if not (is_loopback(hostname) or hostname.strip("[]") == self.gw.config.host):
            raise _forbidden("Keys can be stored only through the gateway's own address, not another name.")

    async def _form_key(self, req) -> str:
        ctype = (req.content_type or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise ApiError.of(415, "Send the key as a form field `key` (application/x-www-form-urlencoded).",
                              param="key", code="unsupported_media_type")
        raw = await req.stream.read(MAX_FORM + 1)
        if len(raw) > MAX_FORM:
            raise ApiError.of(413, "The form is too large.", param="key", code="body_too_large")
        try:
            values = parse_qs(raw.decode("utf-8"), keep_blank_values=True).get("key") or [""]
        except UnicodeDecodeError:
            raise ApiError.of(400, "key: not UTF-8 text.", param="key", code="invalid_key") from None
        key = values[0].strip()
        if not key:
            raise ApiError.of(400, "key: empty; nothing was stored.", param="key", code="invalid_key")
        if len(key) > MAX_KEY or any(c.isspace() or not c.isprintable() for c in key):
            raise ApiError.of(400, f"key: must be one line of printable characters without spaces, at most "
                              f"{MAX_KEY}; nothing was stored.", param="key", code="invalid_key")
        return key

    async def on_post(self, req, resp, name: str) -> None:
        from mlxgw import declarative

        self._check_caller(req)
        provider = self.gw.runtime.snapshot.providers.get(name)
        if provider is None:
            raise ApiError.of(404, f"name: no provider named '{name}'.", param="name", code="provider_not_found")
        if provider.local:
            raise ApiError.of(400, f"name: provider '{name}' is a local engine ({provider.kind}); it takes no key.",
                              param="name", code="no_key_needed")
        key = await self._form_key(req)
        boxes = declarative.Boxes()
        fp = await asyncio.to_thread(declarative.set_key, self.lifespan.store.db.orm, name, key, boxes)
        if boxes.created:
            log.warning("mlxgw created a new master key file %s (mode 0600): back it up", boxes.created)
        log.info("mlxgw stored a new key for provider %s (%s) from the route view", name, fp)
        await self.lifespan.reload_once()
        resp.status = 303
        resp.set_header("Location", f"/ui?key_stored={quote(name)}#provider-{quote(name)}")
        resp.set_header("Cache-Control", "no-store")
