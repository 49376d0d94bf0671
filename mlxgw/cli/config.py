"""validate / diff / apply / export: the gateway.yaml workflow."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from mlxgw.cli import _output, app
from mlxgw.cli._common import DbOption, FileOption, JsonOption, note_created_key, open_store

# The library is imported inside each command: `mlxgw serve` should not pay for yaml and jsonschema.

_SYMBOL_STYLE = {"+": "green", "~": "yellow", "-": "red", "=": "dim"}


@app.command()
def validate(
    file: FileOption,
    json: JsonOption = False,
    offline: Annotated[bool, typer.Option("--offline", help="Do not require referenced env vars to be set.")] = False,
) -> None:
    """Check a gateway.yaml: YAML syntax, schema, then meaning. Exit 0 valid, 1 invalid."""
    from mlxgw import declarative
    from mlxgw.errors import ConfigError

    try:
        _, problems = declarative.validate(file, offline=offline)
    except ConfigError as exc:  # unreadable or not YAML: same report shape as other problems
        problems = exc.problems
    if json:
        _output.emit_json({"file": file, "valid": not problems, "errors": [p.as_dict() for p in problems]})
    else:
        for p in problems:
            _output.say(p.format())
        if problems:
            _output.err.print(f"{file}: {len(problems)} problem(s)", style="red", markup=False)
        else:
            _output.say(f"{file}: valid", style="green")
    raise typer.Exit(1 if problems else 0)


def _print_plan(plan, json: bool) -> None:
    if json:
        _output.emit_json({"changes": [c.as_dict() for c in plan.changes], "counts": plan.counts(),
                           "has_changes": plan.has_changes})
        return
    for c in plan.changes:
        _output.say(c.format(), style=_SYMBOL_STYLE[c.op])
    n = plan.counts()
    if plan.has_changes:
        _output.say(f"{n['add']} to add, {n['change']} to change, {n['remove']} to remove, {n['kept']} kept")
    else:
        _output.say("no changes" + (f" ({n['kept']} kept, not in the file)" if n["kept"] else ""))


def _plan(file: str, prune: bool, db: str | None):
    from mlxgw import declarative

    doc = declarative.load_valid(file)  # a bad file is reported before any database is opened
    store = open_store(db)
    boxes = declarative.Boxes(store=store)
    return store, boxes, doc, declarative.plan(store, doc, prune, boxes)


@app.command()
def diff(
    file: FileOption,
    json: JsonOption = False,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 0 if no change, 2 if changes, 1 on error.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Show removals of entities the file no longer has.")] = False,
    db: DbOption = None,
) -> None:
    """Show what `apply` would change, entity by entity (+ add, ~ change, - remove). Secrets are masked."""
    _, _, _, plan = _plan(file, prune, db)
    _print_plan(plan, json)
    raise typer.Exit(2 if exit_code and plan.has_changes else 0)


@app.command()
def apply(
    file: FileOption,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, write nothing.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Remove entities earlier applies created that the file no longer has.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Validate, then write the file into the store in ONE transaction and bump the config revision."""
    store, boxes, doc, plan = _plan(file, prune, db)
    if not plan.has_changes:
        if json:
            _output.emit_json({"applied": False, "revision": None, "changes": [], "counts": plan.counts()})
        else:
            _print_plan(plan, False)
            _output.say("nothing changed; nothing written")
        return
    if dry_run:
        _print_plan(plan, json)
        if not json:
            _output.say("dry run: nothing written")
        return
    if not json:
        _print_plan(plan, False)
    if not yes:
        if not sys.stdin.isatty():
            from mlxgw.errors import MlxgwError

            raise MlxgwError("apply needs confirmation and standard input is not a terminal", "pass --yes")
        if not typer.confirm("Apply these changes?"):
            _output.say("cancelled; nothing written")
            raise typer.Exit(1)
    from mlxgw import declarative

    revision = declarative.apply(store, doc, plan, boxes)
    note_created_key(boxes)
    if json:
        _output.emit_json({"applied": True, "revision": revision, "changes": [c.as_dict() for c in plan.changes],
                           "counts": plan.counts()})
    else:
        _output.say(f"applied: config revision {revision}", style="green")


@app.command()
def export(
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="Write to this file instead of stdout.")] = None,
    db: DbOption = None,
) -> None:
    """Print the store as canonical gateway.yaml (secrets as their ${env:NAME} references)."""
    from mlxgw import declarative

    text = declarative.export(open_store(db))
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        _output.err.print(f"wrote {output}", markup=False)
    else:
        sys.stdout.write(text)
