"""Gateway keys: what clients off this machine present (`Authorization: Bearer` or `x-api-key`).

Only a sha256 of each token is stored, with a short prefix so a person can tell keys apart. A token is
shown once, when created. A key's scope is "client" (the inference API, /ui) or "admin" (also /admin/*). The server loads the set of hashes at start and on every reload tick, so the
request path checks a key with one hash and one set lookup, never a query.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from sqlalchemy import select

from mlxgw.errors import MlxgwError, NotFoundError
from mlxgw.store.db import Store
from mlxgw.store.tables import GatewayKey

TOKEN_PREFIX = "mlxgw-"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


SCOPES = ("client", "admin")


def create(store: Store, name: str, scope: str = "client") -> str:
    """Create key `name` with `scope` and return its token (the only time it exists in clear)."""
    if scope not in SCOPES:
        raise MlxgwError(f"unknown key scope {scope!r}", "use client or admin")
    if not _NAME.match(name):
        raise MlxgwError(f"invalid key name {name!r}", "use lower-case letters, digits and '-', up to 63 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.session(write=True) as s:
        if s.scalar(select(GatewayKey.id).where(GatewayKey.name == name)) is not None:
            raise MlxgwError(f"a gateway key named '{name}' already exists",
                             f"revoke it first (mlxgw tokens revoke {name}) or pick another name")
        s.add(GatewayKey(name=name, prefix=token[:12], hash=hash_token(token), created_at=time.time(), scope=scope))
    return token


def list_keys(store: Store) -> list[dict]:
    with store.session() as s:
        return [{"name": k.name, "prefix": k.prefix, "scope": k.scope, "created_at": k.created_at}
                for k in s.scalars(select(GatewayKey).order_by(GatewayKey.name))]


def revoke(store: Store, name: str) -> None:
    with store.session(write=True) as s:
        row = s.scalar(select(GatewayKey).where(GatewayKey.name == name))
        if row is None:
            raise NotFoundError(f"no gateway key named '{name}'", "see mlxgw tokens list")
        s.delete(row)


def load_hashes(store: Store) -> dict[str, str]:
    """sha256 of every key -> its scope."""
    with store.session() as s:
        return {h: scope for h, scope in s.execute(select(GatewayKey.hash, GatewayKey.scope))}


def presented_token(auth_header: str | None, api_key_header: str | None) -> str | None:
    """The token a request carries, from `Authorization: Bearer X` or `x-api-key: X`."""
    if auth_header:
        scheme, _, value = auth_header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return api_key_header.strip() if api_key_header else None
