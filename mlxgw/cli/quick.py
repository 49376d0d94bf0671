"""`mlxgw serve` parsed without typer's parameter machinery.

Typer (0.29) coerces every option through a pydantic TypeAdapter: invoking a command imports pydantic and
builds adapters, ~7 MiB of a server whose whole idle footprint should stay under 60 MiB. A long-running
command has simple options, so `parse` reads them off the command's own signature (the same `Annotated`
typer options: names, defaults, `min`, `envvar`) into argparse. Anything it does not handle exactly
(`--help`, an unknown or malformed option, a value under its minimum) returns None and the caller runs
typer as usual, so help texts and usage errors stay typer's.
"""

from __future__ import annotations

import argparse
import inspect
import os
import types
import typing


class _Refused(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print and exit: let typer say it instead
        raise _Refused(message)


def _option(annotation):
    """(value type, typer OptionInfo) of an `Annotated[T, typer.Option(...)]` parameter."""
    from typer.models import OptionInfo

    base, *meta = typing.get_args(annotation)
    info = next((m for m in meta if isinstance(m, OptionInfo)), None)
    if info is None:
        raise _Refused("not an option")
    args = [a for a in typing.get_args(base) if a is not type(None)]
    if typing.get_origin(base) in (typing.Union, types.UnionType) and len(args) == 1:
        base = args[0]  # Optional[T]
    return base, info


def parse(func, argv: list[str]) -> dict | None:
    """`func`'s keyword arguments from `argv`, or None when typer should handle `argv` itself."""
    parser = _Parser(add_help=False, allow_abbrev=False)
    checks = []
    try:
        hints = typing.get_type_hints(func, include_extras=True)
        for name, param in inspect.signature(func).parameters.items():
            kind, info = _option(hints[name])
            decls = [d for d in info.param_decls or () if d.startswith("--")] or ["--" + name.replace("_", "-")]
            default = None if param.default is inspect.Parameter.empty else param.default
            if kind is bool:
                parser.add_argument(*decls, dest=name, action="store_true", default=default)
                parser.add_argument(*("--no-" + d[2:] for d in decls), dest=name, action="store_false")
            elif typing.get_origin(kind) is list:
                parser.add_argument(*decls, dest=name, action="append", default=default)
            elif kind in (str, int, float):
                if info.envvar and os.environ.get(info.envvar):
                    default = os.environ[info.envvar]
                parser.add_argument(*decls, dest=name, type=kind, default=default)
                if info.min is not None:
                    checks.append((name, info.min))
            else:
                return None
        values = vars(parser.parse_args(argv))
    except (_Refused, KeyError, TypeError, ValueError):
        return None
    if any(values[name] is not None and values[name] < low for name, low in checks):
        return None
    return values
