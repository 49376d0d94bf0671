"""Server options, resolved once by the CLI (or a test) and handed to `create_app`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_MAX_BODY = 10 * 1024 * 1024


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    db_url: str | None = None  # None: MLXGW_DB, else SQLite under MLXGW_HOME
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = DEFAULT_MAX_BODY
    require_keys: bool | None = None  # None: required exactly when `host` is not loopback
    reload_interval: float = 1.0
    audit_interval: float = 0.2
    allowed_hosts: tuple[str, ...] = ()  # Host names served beyond loopback names and addresses
    allow_origins: tuple[str, ...] = ()  # web page origins allowed to call the gateway ("*": any)
    prune_interval: float = 60.0  # seconds between rounds of audit pruning (`audit` in gateway.yaml)
    keepalive_interval: float = 15.0  # seconds between keep-alives while a local engine prefills a stream
    # gc.freeze() once started (`mlxgw serve`: one gateway per process; not for tests that start many)
    freeze_gc: bool = False

    @property
    def keys_required(self) -> bool:
        return (not is_loopback(self.host)) if self.require_keys is None else self.require_keys
