"""Run the real gateway for tests: uvicorn serving `create_app` on an ephemeral port, in a thread with
its own event loop, against the real SQLite store of the test's MLXGW_HOME.

    with running_gateway(ServerConfig(...)) as gw:
        gw.base_url          # "http://127.0.0.1:PORT/v1"
        gw.app.gateway       # the live state (runtime, audit writer)

`apply_config(cli, tmp_path, yaml_text)` writes a gateway.yaml and applies it with the real CLI.
`blackhole_port()` gives a port where connecting hangs (connect timeouts); `free_port()`, `answers_health()`
and `refuses()` help tests that run `mlxgw serve` as a subprocess.
`openai_config(base_url, ...)` builds the YAML of one openai-compatible provider and its routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import textwrap
import threading
import time

import uvicorn

from mlxgw.server import ServerConfig, create_app
from mlxgw.server.protocol import DeadlineProtocol


class RunningGateway:
    def __init__(self, config: ServerConfig, **uvicorn_options):
        self.app = create_app(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.base_url = self.origin + "/v1"
        # The protocol `mlxgw serve` runs (read deadlines), unless a test asks otherwise.
        options = {"http": DeadlineProtocol, **uvicorn_options}
        self.server = uvicorn.Server(uvicorn.Config(self.app, lifespan="on", access_log=False, log_level="warning",
                                                    loop="asyncio", **options))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # surfaced by start()
            self.error = exc

    def start(self) -> RunningGateway:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self.error or not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start: {self.error!r}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


@contextlib.contextmanager
def running_gateway(config: ServerConfig | None = None, uvicorn_options: dict | None = None, **kwargs):
    gw = RunningGateway(config or ServerConfig(**kwargs), **(uvicorn_options or {})).start()
    try:
        yield gw
    finally:
        gw.stop()


def openai_config(base_url: str, *, provider: str = "up", extra_provider: str = "", routes: str | None = None) -> str:
    routes = routes if routes is not None else textwrap.dedent("""\
        - match: {prefix: "gpt-"}
          target: up
        - match: {exact: up-model}
          target: up
    """)
    return (
        "version: 1\n"
        "providers:\n"
        f"  - name: {provider}\n"
        "    kind: openai-compatible\n"
        f"    base_url: '{base_url}'\n"
        "    api_key: ${env:OPENAI_API_KEY}\n"
        + textwrap.indent(extra_provider, "    ")
        + "routes:\n"
        + textwrap.indent(routes, "  ")
    )


def apply_config(cli, tmp_path, text: str, name: str = "gateway.yaml") -> None:
    path = tmp_path / name
    path.write_text(text)
    code, out, err = cli("apply", "-f", str(path), "--yes")
    assert code == 0, out + err


def wait_for_rows(gw: RunningGateway, n: int, timeout: float = 30.0) -> list[dict]:
    """The audit rows once `n` were written (the writer batches every 200 ms). Fails when fewer than `n`
    came within `timeout`, or more: a test counts the requests it made, so a check over the rows never
    passes over missing ones."""
    from mlxgw.audit import queries
    from mlxgw.store.db import Store

    store = Store(gw.app.gateway.config.db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            rows = queries.tail(store, 10_000)
            if len(rows) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        store.engine.dispose()
    assert len(rows) == n, f"{len(rows)} audit rows, expected {n}"
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_health(origin: str) -> bool:
    """True when a gateway at `origin` answers /health (False while it is not listening yet)."""
    import httpx

    try:
        return httpx.get(origin + "/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def refuses(origin: str) -> bool:
    """True once `origin` turns new clients away: nothing listens any more (a gateway shutting down
    closed its socket), or a connection the kernel accepted just before that is closed unanswered (a
    close, or a reset when the socket it waited on went away: ECONNRESET on the read)."""
    import httpx

    try:
        httpx.get(origin + "/health", timeout=2)
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
        return True
    return False


def blackhole_port() -> tuple[int, list]:
    """A port whose accept queue is full: the kernel drops new SYNs, so connecting hangs (a connect
    timeout, like a firewalled host)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    keep = [srv]
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        keep.append(c)
    time.sleep(0.05)
    return port, keep
