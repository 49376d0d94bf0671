"""mlxgw ui build: write the route and provider view as one self-contained HTML file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from mlxgw.cli import _output, app
from mlxgw.cli._common import DbOption, open_store
from mlxgw.errors import MlxgwError

ui_app = typer.Typer(help="The route and provider view (a static HTML page).", no_args_is_help=True)
app.add_typer(ui_app, name="ui")


@ui_app.command("build")
def build(
    output: Annotated[str, typer.Option("-o", "--output", help="The HTML file to write ('-' for stdout).")]
    = "routes.html",
    db: DbOption = None,
) -> None:
    """Write providers, routes (as a diagram, with a resolver box) and audit figures to one HTML file
    that works offline. Keys never appear in it, only their fingerprints."""
    from mlxgw import ui

    html = ui.build(open_store(db))
    if output == "-":
        typer.echo(html, nl=False)
        return
    path = Path(output)
    tmp = None
    try:
        # Write then rename, so a reader never sees half a page.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise MlxgwError(f"cannot write {output}: {exc.strerror or exc}", "check the path and its permissions") from None
    _output.say(f"wrote {path} ({len(html.encode()) // 1024 + 1} KiB); open it in a browser", style="green")
