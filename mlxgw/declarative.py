"""The gateway.yaml workflow the CLI drives: validate, plan (diff), apply, export, set-key, rotate.

Each function takes what it needs (a Store, a path, an environment) and returns data; printing is the
CLI's job. Failures raise the errors in mlxgw.errors, and leave the store as it was.
"""

from __future__ import annotations

import os
import time

from sqlalchemy import select

from mlxgw.config import canonical
from mlxgw.config.loader import Document, load_file
from mlxgw.config.plan import Plan, checksum, make_plan
from mlxgw.config.validate import check, env_name
from mlxgw.errors import ConfigError, MlxgwError, NotFoundError, Problem, SecretError, StoreError
from mlxgw.fingerprints import fingerprint
from mlxgw.store import tables
from mlxgw.store.db import Store, home
from mlxgw.store.secrets import SecretBox, write_key_file
from mlxgw.store.state import read_config, read_secrets, write_plan


class Boxes:
    """Loads the master key once, on first need, and remembers whether that created the key file."""

    def __init__(self, environ=os.environ, store: Store | None = None):
        self.environ = environ
        self.store = store
        self.box: SecretBox | None = None

    def __call__(self) -> SecretBox:
        if self.box is None:
            # A new key file only for a store without secrets: with secrets, the key that encrypted
            # them is lost, and a second key would leave the store readable by neither.
            held = self.store is not None and _secret_count(self.store)
            self.box = SecretBox.load(home(), self.environ, create=not held, holding=held or 0)
        return self.box

    @property
    def created(self):
        return self.box.created if self.box else None


def _secret_count(store: Store) -> int:
    from sqlalchemy import func

    with store.session() as s:
        return s.scalar(select(func.count()).select_from(tables.Secret)) or 0


def validate(path: str, offline: bool = False, environ=os.environ) -> tuple[Document, list[Problem]]:
    doc = load_file(path)
    return doc, check(doc, offline=offline, environ=environ)


def load_valid(path: str, environ=os.environ) -> Document:
    """A document that passed every check except env vars, which plan() weighs against the store."""
    doc, problems = validate(path, offline=True, environ=environ)
    if problems:
        raise ConfigError(problems)
    return doc


def plan(store: Store, doc: Document, prune: bool, boxes: Boxes, environ=os.environ) -> Plan:
    desired = canonical.config(doc.data)
    with store.session() as s:
        current = read_config(s)
        stored = {row.provider for row in s.scalars(select(tables.Secret))}
        wanted, missing = {}, []
        for i, p in enumerate(doc.data.get("providers") or []):
            var = env_name(p.get("api_key"))
            if not var:
                continue
            value = environ.get(var) or None
            if value is None and p["name"] not in stored:
                missing.append(doc.problem(
                    ("providers", i, "api_key"),
                    f"environment variable {var} is not set and the store holds no key for provider "
                    f"'{p['name']}'; export {var}, or run `mlxgw providers set-key {p['name']}`",
                ))
            wanted[p["name"]] = ("${env:%s}" % var, value)
        if missing:
            raise ConfigError(missing)
        decrypt = {n for n, (_, v) in wanted.items() if v is not None and n in stored}
        current_secrets = read_secrets(s, boxes, decrypt)
    return make_plan(current, desired, current_secrets, wanted, prune)


def apply(store: Store, doc: Document, the_plan: Plan, boxes: Boxes) -> int:
    """Write the plan, provided the store still holds what the plan was made from."""
    box = boxes() if the_plan.secrets else None
    with store.session(write=True) as s:
        if checksum(read_config(s)) != the_plan.base:
            raise StoreError("the store changed since this plan was made (another apply?)", "run the command again")
        return write_plan(s, the_plan, doc.file, box)


def export(store: Store) -> str:
    with store.session() as s:
        return canonical.to_yaml(read_config(s))


def providers(store: Store) -> list[dict]:
    with store.session() as s:
        secrets = {r.provider: r for r in s.scalars(select(tables.Secret))}
        out = []
        for p in read_config(s)["providers"]:
            sec = secrets.get(p["name"])
            out.append({
                "name": p["name"],
                "kind": p["kind"],
                "base_url": p.get("base_url"),
                "models": [m["name"] for m in p.get("models", [])],
                "key": sec.fingerprint if sec else None,
                "key_source": (sec.env_ref or "set-key") if sec else None,
            })
        return out


def set_key(store: Store, name: str, value: str, boxes: Boxes) -> str:
    value = value.strip()
    if not value:
        raise MlxgwError("the key is empty; nothing was stored", "pipe the key on stdin or type it at the prompt")
    with store.session() as s:
        if s.scalar(select(tables.Provider).where(tables.Provider.name == name)) is None:
            known = ", ".join(s.scalars(select(tables.Provider.name))) or "none; run `mlxgw apply -f gateway.yaml`"
            raise NotFoundError(f"no provider named '{name}'", f"providers in the store: {known}")
    box = boxes()
    token = box.encrypt(value)
    with store.session(write=True) as s:
        row = s.scalar(select(tables.Secret).where(tables.Secret.provider == name)) or tables.Secret(provider=name)
        row.env_ref, row.ciphertext, row.fingerprint = None, token, fingerprint(value)
        s.add(row)
        # A new revision, so running gateways (which poll it) load the new key within a second.
        s.add(tables.Revision(applied_at=time.time(), source=f"set-key {name}", checksum=checksum(read_config(s)),
                              summary={"set_key": name}))
    return fingerprint(value)


def generate_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def rotate(store: Store, environ=os.environ) -> dict:
    """Re-encrypt every secret under a new primary key.

    With MLXGW_MASTER_KEY=NEW,OLD: re-encrypt under NEW; the user then drops OLD from the variable.
    With the key file: write NEW,OLD to the file first (so a crash leaves a file that still decrypts
    everything), re-encrypt in one transaction, then write NEW alone.
    """
    box = SecretBox.load(home(), environ)
    from_env = box.source == "MLXGW_MASTER_KEY"
    if from_env:
        if len(box.keys) < 2:
            raise SecretError(
                "MLXGW_MASTER_KEY holds a single key, so there is nothing to rotate to",
                "set MLXGW_MASTER_KEY=NEW,OLD (NEW from `mlxgw keys generate`) and run again",
            )
        new_box = box
    else:
        from cryptography.fernet import Fernet

        key_path = home() / "master.key"
        new_keys = [Fernet.generate_key()] + box.keys
        write_key_file(key_path, new_keys)
        new_box = SecretBox(new_keys, str(key_path))
    count = 0
    with store.session(write=True) as s:
        for row in s.scalars(select(tables.Secret)):
            row.ciphertext = new_box.rotate(row.ciphertext)
            count += 1
    if not from_env:
        write_key_file(key_path, new_keys[:1])
    return {"rotated": count, "source": "MLXGW_MASTER_KEY" if from_env else str(home() / "master.key")}
