"""mlxgw clients CLIENT: the settings that point an agent CLI or SDK at the gateway, and whether the model
names it sends have a route in the applied config. The settings come from mlxgw.clientsetup."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlxgw.cli import _output, app
from mlxgw.cli._common import DbOption, open_store
from mlxgw.clientsetup import CLIENTS


def _complete_client(incomplete: str) -> list[str]:
    return [c for c in CLIENTS if c.startswith(incomplete)]


@app.command()
def clients(
    client: Annotated[str, typer.Argument(help="One of: " + ", ".join(CLIENTS) + ".",
                                          autocompletion=_complete_client)],
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="The gateway model the client should use (default: `default`, else a local model).")]
    = None,
    url: Annotated[str, typer.Option("--url", envvar="MLXGW_URL", help="The gateway's base URL.")]
    = "http://127.0.0.1:8080",
    key: Annotated[Optional[str], typer.Option("--key", envvar="MLXGW_KEY",
                                               help="A gateway key, for a gateway beyond loopback.")] = None,
    write: Annotated[bool, typer.Option("--write", help="Write the client's config file (the change is shown first).")]
    = False,
    db: DbOption = None,
) -> None:
    """Print the environment lines or config file that point CLIENT at the gateway, and check the model
    names it will send against the applied config's routes."""
    from mlxgw.clientsetup import setup
    from mlxgw.errors import MlxgwError
    from mlxgw.routing.snapshot import Snapshot
    from mlxgw.store.state import current_revision, read_config

    if client not in CLIENTS:
        raise MlxgwError(f"unknown client {client!r}", "one of: " + ", ".join(CLIENTS))
    store = open_store(db)
    with store.session() as s:
        config = read_config(s)
    snapshot = Snapshot(config, {}, current_revision(store))
    try:
        result = setup(client, snapshot, url, model, key)
    except ValueError as exc:
        raise MlxgwError(str(exc)) from None
    if result.env:
        _output.say("# environment")
        for name, value in result.env:
            _output.say(f"export {name}={_sh(value)}")
    old = result.file.read_text() if result.file and result.file.exists() else ""
    if result.file and result.text is not None and not write:
        _output.say(f"# {result.file}" + (" (merged into the existing file)" if old else ""))
        _output.out.print(result.text, markup=False, highlight=False, end="")
    _check(snapshot, result.names)
    for note in result.notes:
        _output.say(f"# {note}", style="dim")
    if write:
        if result.file is None:
            raise MlxgwError(f"{client} is set up by environment variables only; nothing to write",
                             "put the export lines above in your shell profile")
        _write(result.file, old, result.text)


def _sh(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _check(snapshot, names: list[tuple[str, str]]) -> None:
    if not names:
        _output.warn("warning: the applied config has no model to point this client at; run `mlxgw init` "
                     "and `mlxgw apply -f gateway.yaml --yes` first")
        return
    _output.say("# model names this client sends, and their routes in the applied config")
    for name, why in names:
        rt = snapshot.route(name)
        if rt is None:
            _output.warn(f"warning: no route matches {name!r} ({why}): the gateway answers 404; "
                         "add a route to gateway.yaml or pick another name with --model")
            continue
        chain = " -> ".join(f"{t.provider}/{snapshot.backend_model(t, name)}" for t in rt.targets)
        _output.say(f"#   {name} ({why}): route {rt.key}: {chain}")


def _write(path: Path, old: str, new: str) -> None:
    diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        fromfile=f"{path} (now)", tofile=f"{path} (new)"))
    if not diff:
        _output.say(f"{path} already holds these settings; nothing written")
        return
    _output.out.print(diff, markup=False, highlight=False, end="")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".mlxgw-tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    _output.say(f"wrote {path}", style="green")
