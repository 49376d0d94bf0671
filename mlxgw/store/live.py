"""What the server reads from the store to build its in-memory state: the config (as canonical config, in
stored order), the provider keys in clear, the revision its reload task polls. Plain SQL through
mlxgw.store.sql, so `mlxgw serve` never imports SQLAlchemy; mlxgw.store.state (the CLI's) delegates here.

The master key, and with it the cryptography package, is loaded only when the store holds a secret.
"""

from __future__ import annotations

from mlxgw.config.canonical import SETTINGS
from mlxgw.store.sql import Database, home

_REVISION = "SELECT max(id) FROM revisions"


def current_revision(store) -> int:
    """The newest config revision (0: none applied yet). `store`: a Database or a Store."""
    return store.db.query(_REVISION)[0][0] or 0


def read_config(db: Database, cur) -> dict:
    """The store's config in canonical form, providers and routes in their stored order (`cur`: a cursor
    in the caller's transaction)."""
    load = db.load_json
    out: dict = {"version": 1}
    cur.execute("SELECT key, value FROM settings")
    settings = {key: load(value) for key, value in cur.fetchall()}
    for key in SETTINGS:
        if settings.get(key):
            out[key] = settings[key]
    cur.execute("SELECT provider_id, spec FROM provider_models ORDER BY provider_id, position, id")
    models: dict[int, list] = {}
    for pid, spec in cur.fetchall():
        models.setdefault(pid, []).append(load(spec))
    cur.execute("SELECT id, spec FROM providers ORDER BY position, id")
    providers = []
    for pid, spec in cur.fetchall():
        spec = dict(load(spec))
        if models.get(pid):
            spec["models"] = models[pid]
        providers.append(spec)
    out["providers"] = providers
    cur.execute("SELECT spec FROM routes ORDER BY position, id")
    out["routes"] = [load(spec) for (spec,) in cur.fetchall()]
    return out


def load_runtime(store, box=None) -> tuple[int, dict, dict]:
    """(revision, canonical config, {provider: api key in clear}) read in one transaction."""
    db = store.db
    with db.transaction() as cur:
        cur.execute(_REVISION)
        revision = cur.fetchone()[0] or 0
        config = read_config(db, cur)
        cur.execute("SELECT provider, ciphertext FROM secrets")
        rows = cur.fetchall()
    if rows and box is None:
        from mlxgw.store.secrets import SecretBox

        box = SecretBox.load(home(), create=False)
    keys = {provider: box.decrypt(token, f"the key of provider '{provider}'") for provider, token in rows}
    return revision, config, keys
