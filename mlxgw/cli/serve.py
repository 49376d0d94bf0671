"""mlxgw serve: run the gateway under uvicorn (uvloop + httptools when installed, no access log).

Uvicorn owns the signals: SIGTERM and Ctrl-C start a graceful shutdown: stop accepting connections, let
requests in flight finish for up to `--shutdown-timeout` seconds (then cut them), then the app's lifespan
shutdown (flush the audit log, stop the engines the gateway started, close the HTTP client) before the
process exits."""

from __future__ import annotations

from typing import Annotated

import typer

from mlxgw.cli import _output, app
from mlxgw.cli._common import DbOption
from mlxgw.errors import MlxgwError


def _exit_clean(signum, frame) -> None:
    raise SystemExit(0)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on. Beyond loopback (or with --require-keys), gateway "
                                      "keys are required.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    db: DbOption = None,
    max_body: Annotated[int, typer.Option("--max-body", help="Largest request body accepted, in bytes.")]
    = 10 * 1024 * 1024,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn/mlxgw log level.")] = "info",
    reload_interval: Annotated[float, typer.Option("--reload-interval", hidden=True, min=0.05)] = 1.0,
    shutdown_timeout: Annotated[float, typer.Option(
        "--shutdown-timeout", min=0,
        help="On SIGTERM or Ctrl-C, seconds requests in flight get to finish before they are cut.")] = 30.0,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="A Host name clients use for this gateway, beyond loopback names and addresses "
        "(repeatable; '.example.com' allows subdomains). Also `server.allowed_hosts` in gateway.yaml.")] = None,
    allow_origin: Annotated[list[str] | None, typer.Option(
        "--allow-origin", help="A web page origin allowed to call the gateway, e.g. http://localhost:3000 "
        "(repeatable; '*' any). Also `server.allow_origins` in gateway.yaml.")] = None,
    require_keys: Annotated[bool, typer.Option(
        "--require-keys", help="Require gateway keys on a loopback bind too (behind a reverse proxy).")] = False,
    forwarded_allow_ips: Annotated[str | None, typer.Option(
        "--forwarded-allow-ips", help="Trust X-Forwarded-For/-Proto from these proxy addresses (comma-separated). "
        "Unset: proxy headers are ignored.")] = None,
    limit_concurrency: Annotated[int, typer.Option(
        "--limit-concurrency", min=1, help="Most connections and requests at once; beyond, new requests get 503.")]
    = 1000,
    header_timeout: Annotated[float, typer.Option(
        "--header-timeout", min=0.1, help="Seconds a client gets to send a request's headers (then 408).")] = 10.0,
    body_timeout: Annotated[float, typer.Option(
        "--body-timeout", min=0.1, help="Seconds a request body may stall before the gateway answers 408.")] = 30.0,
    keep_alive: Annotated[float, typer.Option(
        "--keep-alive", min=0.1, help="Seconds an idle kept-alive connection stays open.")] = 5.0,
) -> None:
    """Serve the OpenAI-compatible API on HOST:PORT. Config changes (`mlxgw apply`) are picked up within a
    second, or at once on SIGHUP."""
    import importlib.util
    import signal

    import uvicorn

    from mlxgw.server import ServerConfig, create_app
    from mlxgw.server.keys import load_hashes
    from mlxgw.server.protocol import protocol
    from mlxgw.store.live import load_runtime
    from mlxgw.store.sql import Database

    config = ServerConfig(db_url=db, host=host, port=port, max_body_bytes=max_body,
                          reload_interval=reload_interval, require_keys=True if require_keys else None,
                          allowed_hosts=tuple(allowed_host or ()), allow_origins=tuple(allow_origin or ()),
                          freeze_gc=True)
    store = Database(db).check()  # plain SQL: the server never imports SQLAlchemy (a first start migrates)
    loaded = load_runtime(store)  # a store or master-key problem stops here, as a plain error
    if not loaded[1].get("routes"):
        _output.warn("the config has no routes, so every model name gets 404: run `mlxgw init` to find local "
                     "models and cloud keys, then `mlxgw apply -f gateway.yaml --yes` (serve picks it up)")
    if config.keys_required and not load_hashes(store):
        raise MlxgwError(
            f"listening on {host} {'with --require-keys' if require_keys else '(beyond loopback)'} requires "
            "gateway keys, and none exists",
            "create one with `mlxgw tokens create NAME`, or listen on 127.0.0.1",
        )
    uv = uvicorn.Config(
        create_app(config, store=store, loaded=loaded), host=host, port=port, lifespan="on", access_log=False,
        log_level=log_level, ws="none",  # no WebSocket endpoint: uvicorn need not load the websockets package
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=protocol(header_timeout, body_timeout), timeout_keep_alive=keep_alive,
        limit_concurrency=limit_concurrency, timeout_graceful_shutdown=shutdown_timeout, server_header=False,
        # Uvicorn trusts X-Forwarded-For from 127.0.0.1 by default; the admin check reads the client
        # address, so proxy headers count only from the proxies named here.
        proxy_headers=forwarded_allow_ips is not None, forwarded_allow_ips=forwarded_allow_ips or "",
    )
    server = uvicorn.Server(uv)
    # Uvicorn turns SIGTERM into a graceful shutdown, then re-raises it once done; by then the audit log
    # is drained, so the process exits 0 rather than dying by the signal.
    signal.signal(signal.SIGTERM, _exit_clean)
    server.run()
    if not server.started:
        raise MlxgwError(f"the gateway could not start on {host}:{port}", "see the messages above")
