"""mlxgw logs tail | stats | prune: read and prune the audit log. The library is imported inside each
command, so other commands do not pay for it."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from mlxgw.cli import _output, app
from mlxgw.cli._common import DbOption, JsonOption, open_store
from mlxgw.text import printable

logs_app = typer.Typer(help="The audit log: one row per request the gateway answered.", no_args_is_help=True)
app.add_typer(logs_app, name="logs")


def _ms(v) -> str:
    return "-" if v is None else f"{v:.0f}ms"


def _line(r: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"]))
    tokens = f"{r['input_tokens'] if r['input_tokens'] is not None else '-'}→" \
             f"{r['output_tokens'] if r['output_tokens'] is not None else '-'}"
    where = f"{r['provider'] or '-'}/{r['backend_model'] or '-'}"
    line = (f"{when} {r['id']} {r['status']} {r['requested_model'] or '-'} -> {where} "
            f"route={r['route'] or '-'} {_ms(r['duration_ms'])} ttfb={_ms(r['ttfb_ms'])} tokens={tokens}"
            f"{' stream' if r['stream'] else ''}")
    if r.get("path"):
        line += f" path={r['path']}"
    # Every text here came from a client: newlines would forge rows, ESC/OSC sequences drive the terminal.
    return printable(line + (f" error={r['error']}" if r["error"] else ""))


def _emit(rows: list[dict], json: bool) -> None:
    for r in rows:
        if json:
            _output.emit_json(r)
        else:
            _output.say(_line(r))


@logs_app.command()
def tail(
    n: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many of the latest rows to show.")] = 20,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new rows as they arrive.")] = False,
    json: JsonOption = False,
    db: DbOption = None,
    interval: Annotated[float, typer.Option(hidden=True)] = 0.5,
) -> None:
    """Show the latest requests (--json: one object per line)."""
    from mlxgw.audit import queries

    store = open_store(db)
    rows = queries.tail(store, n)
    _emit(rows, json)
    if not follow:
        return
    follower = queries.Follower(store, rows if n else queries.tail(store, 1))
    try:
        while True:
            time.sleep(interval)
            _emit(follower.poll(), json)
    except KeyboardInterrupt:
        return


@logs_app.command()
def stats(
    json: JsonOption = False,
    db: DbOption = None,
    since: Annotated[float | None, typer.Option(help="Only rows of the last SECONDS.")] = None,
) -> None:
    """Requests, errors, p50/p95 latency, failovers and tokens, in total and per route, provider and client
    API (openai, anthropic, responses)."""
    from mlxgw.audit import queries

    result = queries.stats(open_store(db), None if since is None else time.time() - since)
    if json:
        _output.emit_json(result)
        return

    def show(label: str, s: dict) -> None:
        _output.say(f"{label:<32} requests={s['requests']} errors={s['errors']} p50={_ms(s['p50_ms'])} "
                    f"p95={_ms(s['p95_ms'])} failovers={s['failovers']} tokens_in={s['input_tokens']} tokens_out={s['output_tokens']}")

    show("total", result["total"])
    for title, label in (("routes", "route"), ("providers", "provider"), ("client_apis", "client API")):
        if result[title]:
            _output.say(f"per {label}:")
            for k, s in result[title].items():
                show(f"  {k}", s)


@logs_app.command()
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Delete rows older than this (30d, 12h, 0s: all).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Delete audit rows older than DURATION, in small batches (a running server keeps writing)."""
    import sys

    from mlxgw.audit import retention
    from mlxgw.config import durations
    from mlxgw.errors import MlxgwError

    try:
        seconds = durations.parse_seconds(older_than)
    except ValueError as exc:
        raise MlxgwError(f"--older-than: {exc}") from None
    store = open_store(db)
    if not yes:
        if not sys.stdin.isatty():
            raise MlxgwError("prune needs confirmation and standard input is not a terminal", "pass --yes")
        n = retention.count_older(store, seconds)
        if not typer.confirm(f"Delete {n} audit rows older than {older_than}?"):
            _output.say("cancelled; nothing deleted")
            raise typer.Exit(1)
    deleted = retention.prune(store, retention=seconds)
    if json:
        _output.emit_json({"deleted": deleted, "older_than": older_than})
    else:
        _output.say(f"deleted {deleted} audit rows older than {older_than}")
