"""mlxgw keys generate | rotate: the master key that encrypts provider API keys."""

from __future__ import annotations

import typer

from mlxgw.cli import _output, app
from mlxgw.cli._common import DbOption, JsonOption, open_store

keys_app = typer.Typer(help="The master key that encrypts stored API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command()
def generate() -> None:
    """Print a new Fernet master key (for MLXGW_MASTER_KEY)."""
    from mlxgw import declarative

    _output.say(declarative.generate_key())


@keys_app.command()
def rotate(json: JsonOption = False, db: DbOption = None) -> None:
    """Re-encrypt every stored secret under a new master key.

    Key file: a new key is generated and the file rewritten. MLXGW_MASTER_KEY=NEW,OLD: secrets are
    re-encrypted under NEW; afterwards set MLXGW_MASTER_KEY=NEW."""
    from mlxgw import declarative

    result = declarative.rotate(open_store(db))
    if json:
        _output.emit_json(result)
    else:
        _output.say(f"re-encrypted {result['rotated']} secret(s) under the new key from {result['source']}",
                    style="green")
        if result["source"] == "MLXGW_MASTER_KEY":
            _output.say("now drop the old key: keep only the first key in MLXGW_MASTER_KEY")
