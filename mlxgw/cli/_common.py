"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mlxgw.cli import _output

DbOption = Annotated[
    Optional[str],
    typer.Option("--db", envvar="MLXGW_DB", help="SQLAlchemy URL of the store (default: SQLite under MLXGW_HOME)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
FileOption = Annotated[str, typer.Option("-f", "--file", help="The gateway.yaml to read ('-' for stdin).")]


def open_store(db: str | None):
    from mlxgw.store.db import Store

    return Store(db)


def note_created_key(boxes) -> None:
    if boxes.created:
        _output.warn(
            f"created a new master key file {boxes.created} (mode 0600). Back it up: the stored API keys "
            "cannot be decrypted without it. Set MLXGW_MASTER_KEY instead to keep the key elsewhere."
        )
