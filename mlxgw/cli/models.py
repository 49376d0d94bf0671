"""mlxgw models list | start | stop | logs: local models, through the running gateway's admin API.

The gateway owns the engine processes, so these commands ask it (`--url`, or MLXGW_URL; default
http://127.0.0.1:8080) rather than touching processes themselves. Beyond loopback the admin API wants a
gateway key: `--key` or MLXGW_KEY."""

from __future__ import annotations

from urllib.parse import quote

import time
from typing import Annotated, Optional

import typer

from mlxgw.cli import _output, app
from mlxgw.cli._common import JsonOption
from mlxgw.errors import MlxgwError, NotFoundError

models_app = typer.Typer(help="Local models: list, start, stop, and read engine logs (asks the running gateway).",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

DEFAULT_URL = "http://127.0.0.1:8080"
UrlOption = Annotated[str, typer.Option("--url", envvar="MLXGW_URL", help="The running gateway's address.")]

KeyOption = Annotated[Optional[str], typer.Option("--key", envvar="MLXGW_KEY", show_default=False,
                                                  help="A gateway key (needed beyond loopback).")]
ProviderOption = Annotated[Optional[str], typer.Option("--provider", help="The provider, when several declare NAME.")]


def _segment(name: str) -> str:
    """`name` as one URL path segment: '../../v1/models#' must not reach another endpoint."""
    seg = quote(name, safe="")
    return seg.replace(".", "%2E") if seg in (".", "..") else seg


class _Admin:
    def __init__(self, url: str, key: str | None, timeout: float | None = 30.0):
        import httpx

        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0))
        self._httpx = httpx

    def call(self, method: str, path: str, **kwargs):
        try:
            r = self.client.request(method, path, **kwargs)
        except self._httpx.ConnectError:
            raise MlxgwError(f"no gateway is running at {self.url}",
                             "start one with `mlxgw serve` (or point --url / MLXGW_URL at the running one)") from None
        except self._httpx.TimeoutException:
            raise MlxgwError(f"the gateway at {self.url} did not answer in time") from None
        except self._httpx.HTTPError as exc:
            raise MlxgwError(f"cannot talk to the gateway at {self.url}: {exc}") from None
        if r.status_code == 404 and path.startswith("/admin/models/"):
            raise NotFoundError(_message(r), "see `mlxgw models list`")
        if r.status_code == 404:
            raise MlxgwError(f"{self.url} has no admin API", "is it an mlxgw gateway? (`mlxgw serve`)")
        if r.status_code in (401, 403):
            raise MlxgwError(_message(r), "run this on the gateway's machine, or pass a gateway key with --key")
        return r


def _message(r) -> str:
    try:
        return r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"the gateway answered HTTP {r.status_code}"


def _params(provider: str | None) -> dict:
    return {"provider": provider} if provider else {}


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    return _duration(time.time() - ts) + " ago"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@models_app.command("list")
def list_models(json: JsonOption = False, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Configured local models: state, port, pid, memory, uptime, last use and memory estimate; and the
    providers failover skips while they cool down."""
    from mlxgw.supervisor.memory import human

    r = _Admin(url, key).call("GET", "/admin/models")
    if r.status_code != 200:
        raise MlxgwError(_message(r))
    data = r.json()
    if json:
        _output.emit_json(data)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("MODEL", "PROVIDER", "KIND", "STATE", "PORT", "PID", "MEMORY", "ESTIMATE", "UPTIME", "LAST USE"):
        table.add_column(col, no_wrap=True)
    for m in data["data"]:
        state = m["state"] + (f" ({m['in_flight']} in flight)" if m.get("in_flight") else "")
        table.add_row(m["name"], m["provider"], m["kind"], state, str(m["port"] or "-"), str(m["pid"] or "-"),
                      human(m["memory"]), human(m["estimate"]["total"]), _duration(m["uptime"]),
                      _ago(m["last_used"]))
    if not data["data"]:
        _output.say("no local models are configured (add a provider of kind mlx-openai-server or vllm-mlx)")
        _say_cooldowns(data.get("cooldowns") or [])
        return
    _output.out.print(table)
    _output.say(f"memory budget {human(data['budget'])}, estimated in use {human(data['estimated_in_use'])}")
    for m in data["data"]:
        if m.get("error") and m["state"] in ("failed", "stopped"):
            _output.warn(f"{m['name']}: {m['error']}")
    _say_cooldowns(data.get("cooldowns") or [])


def _say_cooldowns(cooldowns: list[dict]) -> None:
    for c in cooldowns:
        if c["state"] == "open":
            _output.say(f"provider {c['provider']}: cooling down for {c['seconds_left']:g}s more after "
                        f"{c['failures']} failures (failover skips it)")
        elif c["state"] == "half-open":
            _output.say(f"provider {c['provider']}: cooled down; the next request probes it")


@models_app.command()
def start(name: Annotated[str, typer.Argument(help="Model name or alias.")], provider: ProviderOption = None,
          json: JsonOption = False, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Start a local model and wait until it is ready (the engine's last log lines if it fails)."""
    admin = _Admin(url, key, timeout=None)
    t0 = time.monotonic()
    with _output.err.status(f"starting {name}...", spinner="dots"):
        r = admin.call("POST", f"/admin/models/{_segment(name)}/start", params=_params(provider))
    if r.status_code != 200:
        try:
            err = r.json()["error"]
        except (ValueError, KeyError, TypeError):
            err = {"message": _message(r)}
        if err.get("log_tail"):
            _output.err.print("--- last lines of the engine log ---", markup=False)
            _output.err.print(err["log_tail"], markup=False, highlight=False)
        raise MlxgwError(f"{name} did not start: {err.get('message')}", f"see `mlxgw models logs {name}`")
    m = r.json()
    if json:
        _output.emit_json(m)
        return
    _output.say(f"{m['name']} is ready on port {m['port']} (pid {m['pid']}, {time.monotonic() - t0:.1f}s)")


@models_app.command()
def stop(name: Annotated[str, typer.Argument(help="Model name or alias.")], provider: ProviderOption = None,
         json: JsonOption = False, url: UrlOption = DEFAULT_URL, key: KeyOption = None) -> None:
    """Stop a local model (requests in flight get up to 30 s to finish)."""
    r = _Admin(url, key, timeout=120).call("POST", f"/admin/models/{_segment(name)}/stop", params=_params(provider))
    if r.status_code != 200:
        raise MlxgwError(_message(r))
    m = r.json()
    if json:
        _output.emit_json(m)
        return
    _output.say(f"{m['name']} is {m['state']}")


@models_app.command()
def logs(name: Annotated[str, typer.Argument(help="Model name or alias.")], provider: ProviderOption = None,
         n: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many of the last lines to show.")] = 100,
         follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
         url: UrlOption = DEFAULT_URL, key: KeyOption = None,
         interval: Annotated[float, typer.Option(hidden=True)] = 0.5) -> None:
    """The engine's log (its output, and mlxgw's start/stop notes)."""
    import sys

    admin = _Admin(url, key)
    r = admin.call("GET", f"/admin/models/{_segment(name)}/logs", params={**_params(provider), "lines": n})
    if r.status_code != 200:
        raise MlxgwError(_message(r))
    sys.stdout.write(r.text)
    sys.stdout.flush()
    if not follow:
        return
    offset = int(r.headers.get("x-log-offset") or 0)
    try:
        while True:
            time.sleep(interval)
            r = admin.call("GET", f"/admin/models/{_segment(name)}/logs", params={**_params(provider), "offset": offset})
            if r.status_code != 200:
                raise MlxgwError(_message(r))
            if r.text:
                sys.stdout.write(r.text)
                sys.stdout.flush()
            offset = int(r.headers.get("x-log-offset") or offset)
    except KeyboardInterrupt:
        return
