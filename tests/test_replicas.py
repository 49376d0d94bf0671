"""Several gateways on one PostgreSQL store (issue 14): two real `mlxgw serve` processes, one database.

An apply reaches both, a revoked token is refused by both, both audit into the one table, and two applies
that overlap run one after the other: the second is told the store changed and to run again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from sqlalchemy import func, select, text

from mlxgw import declarative
from mlxgw.config.loader import load_file
from mlxgw.errors import StoreError
from mlxgw.store import tables
from mlxgw.store.db import Store
from tests.gateway_harness import apply_config, openai_config
from tests.upstream import upstream, upstream_server  # noqa: F401

BODY = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    """A port below the kernel's ephemeral range (outgoing connections take those), free right now."""
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue


def serve(port: int) -> subprocess.Popen:
    # Beyond loopback (0.0.0.0, as behind a load balancer) a replica requires gateway keys.
    return subprocess.Popen([sys.executable, "-m", "mlxgw", "serve", "--host", "0.0.0.0", "--port", str(port),
                             "--log-level", "warning"], env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def wait_healthy(origin: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            if httpx.get(origin + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{origin} did not start")


def within(seconds: float, cond) -> float:
    """Poll `cond` until it holds; the seconds it took, or an AssertionError past `seconds`."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > seconds:
            raise AssertionError(f"not within {seconds}s")
        time.sleep(0.05)
    return time.monotonic() - t0


def token(cli, name: str) -> str:
    code, out, err = cli("tokens", "create", name, "--json")
    assert code == 0, out + err
    return json.loads(out)["token"]


def test_two_replicas_share_one_postgresql_store(home, cli, tmp_path, monkeypatch, pg_url, upstream):  # noqa: F811
    monkeypatch.setenv("MLXGW_DB", pg_url)
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    old, new = token(cli, "old"), token(cli, "new")
    ports = [free_port(), free_port()]
    procs = [serve(p) for p in ports]
    origins = [f"http://127.0.0.1:{p}" for p in ports]
    sent: list[str] = []
    try:
        for origin, proc in zip(origins, procs):
            wait_healthy(origin, proc)

        def ask(origin: str, key: str) -> httpx.Response:
            r = httpx.post(origin + "/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {key}"},
                           timeout=10)
            if r.status_code != 401:  # refused keys are answered by the middleware, before any audit row
                sent.append(r.headers["x-request-id"])
            return r

        for origin in origins:
            assert ask(origin, old).status_code == 200 and ask(origin, new).status_code == 200

        # One apply (a new route) reaches both replicas.
        apply_config(cli, tmp_path, openai_config(upstream.base_url, routes="""\
            - match: {prefix: "gpt-"}
              target: up
            - match: {exact: brand-new}
              target: up
        """.replace("            ", "")), name="second.yaml")

        def has_route(origin: str) -> bool:
            r = httpx.get(origin + "/v1/models", headers={"authorization": f"Bearer {new}"}, timeout=5)
            return "brand-new" in {m["id"] for m in r.json()["data"]}

        within(2.0, lambda: all(has_route(o) for o in origins))

        # A token revoked (through the shared store) is refused by both.
        code, out, err = cli("tokens", "revoke", "old")
        assert code == 0, out + err
        within(2.0, lambda: all(ask(o, old).status_code == 401 for o in origins))
        for origin in origins:
            assert ask(origin, new).status_code == 200
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(30) == 0  # drains its audit queue before exiting

    # Both replicas audited into the one table: every request they answered.
    store = Store(pg_url)
    with store.session() as s:
        ids = set(s.scalars(select(tables.RequestLog.id)))
        statuses = dict(s.execute(select(tables.RequestLog.status, func.count()).group_by(tables.RequestLog.status)).all())
    store.engine.dispose()
    assert ids == set(sent) and len(sent) >= 6  # 2 + 2 before the apply, 1 + 1 after the revocation, per replica
    assert statuses == {200: len(sent)}


def _doc(tmp_path, name: str, upstream_url: str, route: str):
    path = tmp_path / name
    path.write_text(openai_config(upstream_url, routes=f"- match: {{exact: {route}}}\n  target: up\n"))
    return load_file(str(path))


@pytest.mark.both_stores
def test_overlapping_applies_serialise_and_the_second_is_told_to_run_again(home, tmp_path, store_kind):
    store = Store()
    boxes = declarative.Boxes()
    first = _doc(tmp_path, "a.yaml", "http://127.0.0.1:9/v1", "model-a")
    second = _doc(tmp_path, "b.yaml", "http://127.0.0.1:9/v1", "model-b")
    plan_a = declarative.plan(store, first, False, boxes)
    plan_b = declarative.plan(store, second, False, boxes)  # both planned from the same (empty) store
    outcome: dict = {}
    with store.session(write=True) as s:  # apply A is writing (holds the store's write lock)...
        from mlxgw.store.state import write_plan
        write_plan(s, plan_a, first.file, boxes() if plan_a.secrets else None)

        def apply_b():
            try:
                outcome["revision"] = declarative.apply(Store(), second, plan_b, boxes)
            except StoreError as exc:
                outcome["error"] = exc

        t = threading.Thread(target=apply_b)
        t.start()  # ...while apply B starts: it must wait for A's commit, not read the store under it
        if store_kind == "postgresql":
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            probe = Store()

            def b_waits() -> bool:
                with probe.engine.connect() as c:
                    return c.execute(text(waiting)).scalar() == 1

            within(10, b_waits)
            probe.engine.dispose()
        else:
            time.sleep(0.3)
    t.join(15)
    assert not t.is_alive()
    assert "revision" not in outcome, "both applies wrote from the same base"
    err = outcome["error"]
    assert "store changed" in err.message and err.hint == "run the command again"
    assert declarative.export(store).count("model-a") == 1 and "model-b" not in declarative.export(store)
    store.engine.dispose()
