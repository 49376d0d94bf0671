"""The `mlxgw` command. Each command group lives in its own module and stays thin: parse options, call
the library, print. Errors the library raises (mlxgw.errors) become one clear message and an exit code,
never a traceback."""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from mlxgw.cli import _output
from mlxgw.errors import ConfigError, MlxgwError


def _guarded(call):
    """Run a command: errors the library raises become one clear message and an exit code."""
    try:
        return call()
    except ConfigError as exc:
        for p in exc.problems:
            _output.err.print(p.format(), markup=False)
        _output.error(exc.message, exc.hint)
        raise typer.Exit(exc.exit_code) from None
    except MlxgwError as exc:
        _output.error(exc.message, exc.hint)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _output.error("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `mlxgw logs tail --json | head`: the reader is done, so are we
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug: say so plainly, keep the traceback for MLXGW_DEBUG=1
        # Usage errors belong to the (vendored) click inside typer: duck-type them.
        if os.environ.get("MLXGW_DEBUG") or (hasattr(exc, "show") and hasattr(exc, "exit_code")):
            raise
        _output.error(f"internal error: {type(exc).__name__}: {exc}",
                      "re-run with MLXGW_DEBUG=1 for a traceback and report it")
        raise typer.Exit(70) from None


class _Group(TyperGroup):
    def invoke(self, ctx):
        return _guarded(lambda: super(_Group, self).invoke(ctx))


app = typer.Typer(
    cls=_Group,
    name="mlxgw",
    help="A local-first LLM API gateway: one base URL for local MLX engines and the OpenAI and Anthropic clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Command groups register themselves on `app` when imported.
from mlxgw.cli import config as _config  # noqa: E402,F401
from mlxgw.cli import providers as _providers  # noqa: E402,F401
from mlxgw.cli import keys as _keys  # noqa: E402,F401
from mlxgw.cli import completion as _completion  # noqa: E402,F401
# --- other command groups (serve, logs, tokens, models...) register below this line ---
from mlxgw.cli import serve, logs, tokens  # noqa: E402,F401
from mlxgw.cli import ui as _ui  # noqa: E402,F401
from mlxgw.cli import models as _models  # noqa: E402,F401
from mlxgw.cli import init as _init  # noqa: E402,F401
from mlxgw.cli import clients as _clients  # noqa: E402,F401


def main() -> None:
    if sys.argv[1:2] == ["serve"]:  # the server, without typer's pydantic-based option parsing (cli/quick.py)
        from mlxgw.cli import quick

        kwargs = quick.parse(serve.serve, sys.argv[2:])
        if kwargs is not None:
            try:
                _guarded(lambda: serve.serve(**kwargs))
            except typer.Exit as exc:
                sys.exit(exc.exit_code)
            return
    app()
