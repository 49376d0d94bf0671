"""Which browsers' requests the gateway answers: the Host and Origin checks, and CORS.

Loopback is not a trust boundary on its own: any web page can make the browser send requests to
127.0.0.1 (a `no-cors` fetch, a `text/plain` form), and DNS rebinding lets a page read the answers under
its own name. So, as Ollama (OLLAMA_ORIGINS and its host check), Jupyter (allow_origin) and Django
(ALLOWED_HOSTS) do:

- `Host` must name this gateway: a loopback name (localhost, *.localhost), an IP address (a rebinding
  attack needs a DNS name, so an address in `Host` is never one), this machine's host name, or an entry
  of the allowlist (`--allowed-host` / `server.allowed_hosts`; ".example.com" allows its subdomains,
  "*" anything);
- a request carrying `Origin` must come from the gateway's own origin (the /ui page) or an allowed
  origin (`--allow-origin` / `server.allow_origins`; "*" allows any). SDKs and CLIs send no Origin;
- a CORS preflight is answered 204 for an allowed origin, 403 otherwise; answers to an allowed foreign
  origin carry `Access-Control-Allow-Origin`.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ALLOW_METHODS = "GET, POST, OPTIONS"
EXPOSE_HEADERS = "x-request-id, request-id, upstream-request-id, retry-after"
_MACHINE = socket.gethostname().lower().rstrip(".")


@dataclass(frozen=True)
class Access:
    hosts: frozenset[str] = frozenset()  # allowlisted Host names (lower case), ".suffix" entries, or "*"
    origins: frozenset[str] = frozenset()  # allowlisted origins ("scheme://host[:port]", lower case) or "*"
    _seen: dict = field(default_factory=dict, compare=False, repr=False)  # Host header -> host_ok

    @classmethod
    def of(cls, hosts=(), origins=(), more: dict | None = None) -> Access:
        """The allowlists from the command line plus the config's `server` section (`more`)."""
        more = more or {}
        return cls(frozenset(h.lower().rstrip(".") for h in [*hosts, *(more.get("allowed_hosts") or [])]),
                   frozenset(o.lower().rstrip("/") for o in [*origins, *(more.get("allow_origins") or [])]))

    def host_ok(self, host_header: str | None) -> bool:
        if not host_header or "*" in self.hosts:
            return True  # no Host at all: HTTP/1.0 tools; browsers always send one
        known = self._seen.get(host_header)
        if known is None:  # a client sends the same Host every time: decided once (bounded memory)
            if len(self._seen) >= 1024:
                self._seen.clear()
            known = self._seen[host_header] = self._host_ok(host_header)
        return known

    def _host_ok(self, host_header: str) -> bool:
        name = hostname(host_header)
        if name in self.hosts or name in ("localhost", _MACHINE) or name.endswith(".localhost"):
            return True
        if any(h.startswith(".") and (name.endswith(h) or name == h[1:]) for h in self.hosts):
            return True
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        if origin is None:
            return True
        origin = origin.lower().rstrip("/")
        if "*" in self.origins or origin in self.origins:
            return True
        return self.same_origin(origin, host_header)

    @staticmethod
    def same_origin(origin: str, host_header: str | None) -> bool:
        """The page's origin is the gateway's own: the /ui page calling back (its scheme is http)."""
        parts = urlsplit(origin)
        return bool(host_header) and parts.scheme == "http" and parts.netloc == host_header.lower()


def hostname(host_header: str) -> str:
    """The name in a Host header, without port or brackets, lower case, without a final dot."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h[1:]
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def host_refusal(host_header: str) -> str:
    name = hostname(host_header)[:100]
    return (f"Host '{name}' is not a name of this gateway (a DNS-rebinding guard). If clients reach it by "
            f"that name, allow it: `mlxgw serve --allowed-host {name}` or `server.allowed_hosts` in gateway.yaml.")


def origin_refusal(origin: str) -> str:
    origin = origin[:200]
    return (f"Requests from web pages of origin '{origin}' are refused: a page may use this gateway only "
            f"when allowed. Allow it with `mlxgw serve --allow-origin {origin}` or `server.allow_origins` "
            "in gateway.yaml.")
