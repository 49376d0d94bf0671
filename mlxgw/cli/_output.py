"""Printing for the CLI: rich on a terminal, plain text in pipes, JSON with --json, errors on stderr."""

from __future__ import annotations

import json
import sys


def __getattr__(name: str):
    """`out` and `err`, the rich consoles, made on first use: `mlxgw serve` prints nothing when all is well
    and so never imports rich (~3 MiB of the idle server)."""
    if name not in ("out", "err"):
        raise AttributeError(name)
    return _console(name)


def _console(name: str):
    if name in globals():
        return globals()[name]
    from rich.console import Console

    stream = sys.stderr if name == "err" else sys.stdout
    # Pipes get wide output so tables are not cut to 80 columns.
    console = Console(stderr=name == "err", highlight=False, soft_wrap=True, width=None if stream.isatty() else 200)
    globals()[name] = console
    return console


def say(text: str, style: str | None = None) -> None:
    _console("out").print(text, style=style, markup=False)


def warn(text: str) -> None:
    _console("err").print(text, style="yellow", markup=False)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def error(message: str, hint: str | None = None) -> None:
    _console("err").print(f"error: {message}", style="bold red", markup=False)
    if hint:
        _console("err").print(f"hint: {hint}", markup=False)
