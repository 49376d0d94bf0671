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

from mlxgw.errors import MlxgwError, NotFoundError

TOKEN_PREFIX = "mlxgw-"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


SCOPES = ("client", "admin")


def create(store, name: str, scope: str = "client") -> str:
    """Create key `name` with `scope` and return its token (the only time it exists in clear). `store`: a
    Store or a Database (plain SQL, mlxgw.store.sql, like every function here)."""
    if scope not in SCOPES:
        raise MlxgwError(f"unknown key scope {scope!r}", "use client or admin")
    if not _NAME.match(name):
        raise MlxgwError(f"invalid key name {name!r}", "use lower-case letters, digits and '-', up to 63 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db = store.db
    with db.transaction(write=True) as cur:
        cur.execute(db.sql("SELECT id FROM gateway_keys WHERE name = ?"), (name,))
        if cur.fetchone() is not None:
            raise MlxgwError(f"a gateway key named '{name}' already exists",
                             f"revoke it first (mlxgw tokens revoke {name}) or pick another name")
        cur.execute(db.sql("INSERT INTO gateway_keys (name, prefix, hash, created_at, scope) VALUES (?, ?, ?, ?, ?)"),
                    (name, token[:12], hash_token(token), time.time(), scope))
    return token


def list_keys(store) -> list[dict]:
    return [{"name": name, "prefix": prefix, "scope": scope, "created_at": created_at}
            for name, prefix, scope, created_at in
            store.db.query("SELECT name, prefix, scope, created_at FROM gateway_keys ORDER BY name")]


def revoke(store, name: str) -> None:
    db = store.db
    with db.transaction(write=True) as cur:
        cur.execute(db.sql("DELETE FROM gateway_keys WHERE name = ?"), (name,))
        if cur.rowcount == 0:
            raise NotFoundError(f"no gateway key named '{name}'", "see mlxgw tokens list")


def load_hashes(store) -> dict[str, str]:
    """sha256 of every key -> its scope."""
    return dict(store.db.query("SELECT hash, scope FROM gateway_keys"))


def presented_token(auth_header: str | None, api_key_header: str | None) -> str | None:
    """The token a request carries, from `Authorization: Bearer X` or `x-api-key: X`."""
    if auth_header:
        scheme, _, value = auth_header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return api_key_header.strip() if api_key_header else None
