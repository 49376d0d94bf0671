"""mlxgw tokens create | list | revoke: gateway keys for clients off this machine. The library is
imported inside each command, so other commands do not pay for it."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from mlxgw.cli import _output, app
from mlxgw.cli._common import DbOption, JsonOption, open_store

tokens_app = typer.Typer(help="Gateway keys clients present when the gateway listens beyond loopback.",
                         no_args_is_help=True)
app.add_typer(tokens_app, name="tokens")


@tokens_app.command()
def create(name: str, admin: Annotated[bool, typer.Option(
               "--admin", help="Also allow the admin API (/admin/*: start, stop and read local models).")] = False,
           json: JsonOption = False, db: DbOption = None) -> None:
    """Create a gateway key and print its token. The token is shown this once; only a hash is kept."""
    from mlxgw.server import keys

    scope = "admin" if admin else "client"
    token = keys.create(open_store(db), name, scope)
    if json:
        _output.emit_json({"name": name, "scope": scope, "token": token})
    else:
        _output.say(token)
        _output.warn(f"gateway key '{name}' created: store the token now, it cannot be shown again")


@tokens_app.command("list")
def list_(json: JsonOption = False, db: DbOption = None) -> None:
    """List gateway keys (name, prefix, scope, creation time; never the token)."""
    from mlxgw.server import keys

    rows = keys.list_keys(open_store(db))
    if json:
        for r in rows:
            _output.emit_json(r)
        return
    if not rows:
        _output.say("no gateway keys")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created_at"]))
        _output.say(f"{r['name']}\t{r['prefix']}…\t{r['scope']}\t{when}")


@tokens_app.command()
def revoke(name: str, db: DbOption = None) -> None:
    """Delete a gateway key: requests carrying it are refused within a second."""
    from mlxgw.server import keys

    keys.revoke(open_store(db), name)
    _output.say(f"revoked gateway key '{name}'")
