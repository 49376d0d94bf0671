"""mlxgw providers list | set-key."""

from __future__ import annotations

import sys

import typer
from mlxgw.cli import _output, app
from mlxgw.cli._common import DbOption, JsonOption, note_created_key, open_store

providers_app = typer.Typer(help="Providers in the store and their API keys.", no_args_is_help=True)
app.add_typer(providers_app, name="providers")


@providers_app.command("list")
def list_(json: JsonOption = False, db: DbOption = None) -> None:
    """List providers with base URL and key fingerprint (never the key)."""
    from rich.table import Table

    from mlxgw import declarative

    rows = declarative.providers(open_store(db))
    if json:
        _output.emit_json(rows)
        return
    if not rows:
        _output.say("no providers; run `mlxgw apply -f gateway.yaml`")
        return
    table = Table("name", "kind", "base url", "key", "models")
    for r in rows:
        key = f"{r['key']} ({r['key_source']})" if r["key"] else "-"
        table.add_row(r["name"], r["kind"], r["base_url"] or "(default)", key, ", ".join(r["models"]) or "-")
    _output.out.print(table)


@providers_app.command("set-key")
def set_key(name: str, db: DbOption = None) -> None:
    """Store a provider's API key, read from a hidden prompt or from stdin (never from the command line)."""
    from mlxgw import declarative

    if sys.stdin.isatty():
        value = typer.prompt(f"API key for {name}", hide_input=True)
    else:
        value = sys.stdin.readline()
    store = open_store(db)
    boxes = declarative.Boxes(store=store)
    fp = declarative.set_key(store, name, value, boxes)
    note_created_key(boxes)
    _output.say(f"stored the key of provider '{name}' ({fp})", style="green")
