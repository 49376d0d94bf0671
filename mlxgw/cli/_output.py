"""Printing for the CLI: rich on a terminal, plain text in pipes, JSON with --json, errors on stderr."""

from __future__ import annotations

import json
import sys

from rich.console import Console

# Pipes get wide output so tables are not cut to 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=None if sys.stderr.isatty() else 200)


def say(text: str, style: str | None = None) -> None:
    out.print(text, style=style, markup=False)


def warn(text: str) -> None:
    err.print(text, style="yellow", markup=False)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def error(message: str, hint: str | None = None) -> None:
    err.print(f"error: {message}", style="bold red", markup=False)
    if hint:
        err.print(f"hint: {hint}", markup=False)
