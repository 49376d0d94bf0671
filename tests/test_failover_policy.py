"""The failover policy's parts on their own (issue 6): retry delays, retry-after, the circuit breakers,
the route and provider settings the Snapshot compiles, and the audit columns of migration 2."""

from __future__ import annotations

import email.utils
import sqlite3
import time

import pytest

from mlxgw.backends.base import UpstreamConnectError, UpstreamStatusError, UpstreamTimeout
from mlxgw.config import canonical
from mlxgw.routing import Breakers, RetryPolicy, Snapshot, retryable
from mlxgw.routing.policy import ModelLoading, fails_over, outcome, parse_retry_after
from mlxgw.store.db import SCHEMA_VERSION, Store
from mlxgw.supervisor import EngineError


def test_what_is_retried_on_the_same_target():
    assert retryable(UpstreamStatusError("p", 429, b"")) and retryable(UpstreamStatusError("p", 503, b""))
    assert retryable(UpstreamConnectError("p", "refused")) and retryable(UpstreamTimeout("p", "connect", 1))
    assert not retryable(UpstreamTimeout("p", "first_token", 1))  # a slow model stays slow: fail over
    assert not retryable(EngineError("p", "exited"))  # the supervisor remembers a failed start
    assert fails_over(EngineError("p", "exited")) and outcome(EngineError("p", "exited")) == "engine_failed"
    assert not retryable(UpstreamStatusError("p", 400, b""))
    assert not fails_over(ModelLoading("p", "m", 3.2)) and ModelLoading("p", "m", 3.2).retry_after == "4"


def test_backoff_doubles_with_jitter_and_is_capped():
    p = RetryPolicy(attempts=5, backoff=0.1, max_backoff=0.3)
    for _ in range(50):
        assert 0.05 <= p.delay(1) <= 0.1
        assert 0.1 <= p.delay(2) <= 0.2
        assert 0.15 <= p.delay(4) <= 0.3


def test_retry_after_is_honoured_up_to_max_backoff():
    p = RetryPolicy(attempts=1, backoff=0.1, max_backoff=5)
    assert p.delay(1, "2") == 2.0
    assert p.delay(1, "0.5") == 0.5
    assert p.delay(1, "30") is None  # longer than we would wait: fail over instead
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    assert 1.5 <= parse_retry_after(when) <= 3.1
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_breaker_opens_after_consecutive_failures_and_probes_once():
    COOLDOWN = 1.0  # long enough that no stall of a loaded machine ends it between two lines
    b = Breakers()
    for _ in range(2):
        b.failure("p", COOLDOWN)
    assert b.allow("p", COOLDOWN) and not b.is_open("p")
    b.success("p")  # a success resets the count
    for _ in range(2):
        b.failure("p", COOLDOWN)
    assert not b.is_open("p")
    b.failure("p", COOLDOWN)
    assert not b.allow("p", COOLDOWN) and b.is_open("p") and b.open_until()["p"] > time.time()
    assert b.describe()[0]["state"] == "open"
    time.sleep(COOLDOWN + 0.05)  # the cooldown is over (a lower bound: never early)
    assert b.allow("p", COOLDOWN)  # the half-open probe
    assert not b.allow("p", COOLDOWN)  # only one at a time
    b.failure("p", COOLDOWN)  # the probe failed: open again at once
    assert b.is_open("p")
    time.sleep(COOLDOWN + 0.05)  # the cooldown is over (a lower bound: never early)
    assert b.allow("p", COOLDOWN)
    b.success("p")
    assert b.allow("p", COOLDOWN) and b.allow("p", COOLDOWN) and b.describe() == []
    b.failure("q", 0)  # cooldown 0s: never opens
    b.failure("q", 0)
    b.failure("q", 0)
    assert b.allow("q", 0)


CONFIG = {
    "version": 1,
    "defaults": {"retry": {"attempts": 2, "backoff": "100ms"}, "cooldown": "10s"},
    "providers": [
        {"name": "local", "kind": "vllm-mlx", "models": [{"name": "q", "path": "/m"}]},
        {"name": "cloud", "kind": "openai", "retry": {"max_backoff": "3s"}, "cooldown": "0s"},
    ],
    "routes": [
        {"name": "a", "match": {"exact": "a"}, "target": "local/q", "fallback": ["cloud"], "max_wait": "2s"},
        {"name": "b", "match": {"exact": "b"}, "target": "local/q", "on_cold": "retry_later"},
        {"name": "c", "match": {"exact": "c"}, "target": "cloud"},
    ],
}


def test_snapshot_compiles_retry_cooldown_and_cold_settings():
    s = Snapshot(CONFIG)
    assert s.providers["local"].retry == RetryPolicy(2, 0.1, 20.0) and s.providers["local"].cooldown == 10.0
    assert s.providers["cloud"].retry == RetryPolicy(2, 0.1, 3.0) and s.providers["cloud"].cooldown == 0.0
    assert (s.route("a").max_wait, s.route("a").on_cold) == (2.0, "failover")
    assert (s.route("b").max_wait, s.route("b").on_cold) == (None, "retry_later")
    assert (s.route("c").max_wait, s.route("c").on_cold) == (None, "wait")


def test_route_fields_are_canonical():
    r = canonical.route({"on_cold": "wait", "max_wait": "2000ms", "target": "x", "match": {"exact": "a"}})
    assert list(r) == ["match", "target", "max_wait", "on_cold"] and r["max_wait"] == "2s"


def test_validate_checks_the_route_fields(home, cli, tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("version: 1\nproviders: [{name: up, kind: openai}]\n"
                 "routes: [{match: {exact: a}, target: up, max_wait: soon, on_cold: maybe}]\n")
    code, out, err = cli("validate", "-f", str(f), "--offline")
    assert code == 1
    assert "routes[0].max_wait" in out + err and "routes[0].on_cold: 'maybe' is not one of" in out + err


def test_migration_2_adds_the_attempt_columns_to_a_version_1_store(home):
    Store().engine.dispose()
    path = home / "mlxgw.db"
    with sqlite3.connect(path) as db:  # back to what version 1 created
        db.execute("alter table requests drop column attempts_detail")
        db.execute("alter table requests drop column failovers")
        db.execute("update meta set value = '1' where key = 'schema_version'")
        db.execute("insert into requests (id, ts, client_api, attempts, stream, status, duration_ms) "
                   "values ('req_old', 1.0, 'openai', 1, 0, 200, 1.0)")
    Store().engine.dispose()
    with sqlite3.connect(path) as db:
        cols = {r[1] for r in db.execute("pragma table_info(requests)")}
        assert {"attempts_detail", "failovers"} <= cols
        assert db.execute("select failovers from requests where id = 'req_old'").fetchone()[0] == 0
        assert db.execute("select value from meta where key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert SCHEMA_VERSION >= 2  # 3: the stored responses (issue 11); 4: the audit indexes (issue 14)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_client_errors_never_move_on(status):
    exc = UpstreamStatusError("p", status, b"")
    assert not fails_over(exc) and not retryable(exc)
