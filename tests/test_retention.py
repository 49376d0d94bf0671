"""Audit retention (issue 14): `audit: {retention, max_rows}` in gateway.yaml through validate, plan and
export; the server pruning in the background; `mlxgw logs prune`; migration 4's indexes; and `logs stats`
computed in SQL agreeing with a plain computation over the same rows."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import time

import pytest
from sqlalchemy import func, select

from mlxgw.audit import queries
from mlxgw.audit.writer import AuditWriter
from mlxgw.server import ServerConfig
from mlxgw.store import tables
from mlxgw.store.db import SCHEMA_VERSION, Store
from tests.gateway_harness import apply_config, openai_config, running_gateway
from tests.supervisor_helpers import wait_until
from tests.test_audit import row

pytestmark = pytest.mark.both_stores  # SQLite and PostgreSQL (tests/conftest.py)


def fill(store: Store, n: int, age: float, start: int = 0, **kw) -> None:
    w = AuditWriter(store)
    now = time.time()
    for i in range(start, start + n):
        w.record(row(i, ts=now - age - i * 1e-3, **kw))
    w.flush_sync()


def count(store: Store, older_than: float | None = None) -> int:
    q = select(func.count()).select_from(tables.RequestLog)
    if older_than is not None:
        q = q.where(tables.RequestLog.ts < time.time() - older_than)
    with store.session() as s:
        return s.scalar(q)


def test_logs_prune_by_hand(home, cli):
    store = Store()
    fill(store, 30, age=7200)
    fill(store, 20, age=0, start=100)
    code, out, err = cli("logs", "prune", "--older-than", "1h")  # no terminal to confirm on
    assert code == 1 and "--yes" in err and count(store) == 50
    code, out, err = cli("logs", "prune", "--older-than", "soon", "--yes")
    assert code == 1 and "--older-than" in err and "not a duration" in err
    code, out, err = cli("logs", "prune", "--older-than", "1h", "--yes", "--json")
    assert code == 0, err
    assert json.loads(out) == {"deleted": 30, "older_than": "1h"} and count(store) == 20
    code, out, err = cli("logs", "prune", "--older-than", "0s", "--yes")
    assert code == 0 and "deleted 20 audit rows" in out and count(store) == 0
    store.engine.dispose()


def test_audit_settings_are_config_like_any_other(home, cli, tmp_path, upstream_url="http://127.0.0.1:9/v1"):
    base = openai_config(upstream_url)
    apply_config(cli, tmp_path, base + "audit: {retention: 720h, max_rows: 1000}\n")
    code, out, _ = cli("export")
    assert code == 0 and "audit:\n  retention: 30d\n  max_rows: 1000\n" in out  # canonical: days
    (tmp_path / "same.yaml").write_text(base + "audit: {max_rows: 1000, retention: 30d}\n")
    code, out, _ = cli("diff", "-f", str(tmp_path / "same.yaml"))
    assert code == 0 and "~ audit" not in out  # the same thing spelled differently is no change
    (tmp_path / "other.yaml").write_text(base + "audit: {retention: 7d}\n")
    code, out, _ = cli("diff", "-f", str(tmp_path / "other.yaml"))
    assert "~ audit audit" in out and "retention: 30d -> 7d" in out and "max_rows removed" in out
    (tmp_path / "bad.yaml").write_text(base + "audit: {retention: forever, max_rows: 0, keep: yes}\n")
    code, out, err = cli("validate", "-f", str(tmp_path / "bad.yaml"), "--offline")
    assert code == 1
    for field in ("audit.retention", "audit.max_rows", "keep"):
        assert field in out + err, field


def test_the_server_prunes_in_the_background(home, cli, tmp_path):
    store = Store()
    fill(store, 250, age=3 * 86400)  # three days old
    fill(store, 120, age=0, start=1000)
    apply_config(cli, tmp_path, openai_config("http://127.0.0.1:9/v1") + "audit: {retention: 2d, max_rows: 100}\n")
    with running_gateway(ServerConfig(prune_interval=0.2)):
        assert wait_until(lambda: count(store) == 100, 30)
    assert count(store, older_than=86400) == 0
    with store.session() as s:  # the newest were kept
        kept = set(s.scalars(select(tables.RequestLog.id)))
    assert kept == {f"req_{i:06d}" for i in range(1000, 1100)}
    store.engine.dispose()


def test_stats_in_sql_match_a_plain_computation(home):
    store = Store()
    rnd = random.Random(7)
    w = AuditWriter(store)
    rows = []
    for i in range(400):
        r = row(i, route=rnd.choice(["a", "b", None]), provider=rnd.choice(["p", "q"]),
                duration_ms=round(rnd.uniform(1, 500), 3), status=rnd.choice([200, 200, 200, 502]),
                failovers=rnd.choice([0, 0, 1]), input_tokens=rnd.choice([None, 5]))
        rows.append(r)
        w.record(dict(r))
    w.flush_sync()

    def plain(rs):
        d = sorted(r["duration_ms"] for r in rs)
        pick = lambda q: d[max(0, math.ceil(q * len(d)) - 1)]  # noqa: E731
        return {"requests": len(rs), "errors": sum(r["status"] >= 400 for r in rs), "p50_ms": pick(0.5),
                "p95_ms": pick(0.95), "input_tokens": sum(r["input_tokens"] or 0 for r in rs),
                "output_tokens": sum(r["output_tokens"] for r in rs), "failovers": sum(r["failovers"] > 0 for r in rs)}

    s = queries.stats(store)
    assert s["total"] == plain(rows)
    assert s["routes"] == {k or "(none)": plain([r for r in rows if r["route"] == k]) for k in ("a", "b", None)}
    assert s["providers"] == {k: plain([r for r in rows if r["provider"] == k]) for k in ("p", "q")}
    assert s["client_apis"] == {"openai": plain(rows)}
    recent = [r for r in rows if r["ts"] >= 1_000_250.0]  # a --since window (read through the ts index)
    s = queries.stats(store, since=1_000_250.0)
    assert s["total"] == plain(recent)
    assert s["routes"] == {k or "(none)": plain([r for r in recent if r["route"] == k]) for k in ("a", "b", None)}
    store.engine.dispose()


@pytest.mark.parametrize("store_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize("version", [4, 5])
def test_migrations_leave_only_the_append_only_audit_index(home, store_kind, version):
    """A version 4 store gets (ts, id) from migration 5; a version 5 store loses the duration indexes
    (and the plain ts index) to migration 6, keeping its rows."""
    Store().engine.dispose()
    path = home / "mlxgw.db"
    kept = [ix.name for ix in tables.AUDIT_INDEXES]
    assert kept == ["ix_requests_ts_id"]
    with sqlite3.connect(path) as db:  # back to what that version had
        db.execute("insert into requests (id, ts, client_api, status, duration_ms, attempts, stream, failovers) "
                   "values ('req_1', 1.0, 'openai', 200, 3.5, 1, 0, 0)")
        for name in kept:
            db.execute(f"drop index {name}")
        if version == 5:
            db.execute("create index ix_requests_ts on requests (ts)")
            db.execute("create index ix_requests_ts_id on requests (ts, id)")
            db.execute("create index ix_requests_duration on requests (duration_ms, ts)")
            for col in ("route", "provider", "client_api"):
                short = "client" if col == "client_api" else col
                db.execute(f"create index ix_requests_{short}_duration on requests ({col}, duration_ms, ts)")
        db.execute(f"update meta set value = '{version}' where key = 'schema_version'")
    Store().engine.dispose()
    with sqlite3.connect(path) as db:
        have = {r[0] for r in db.execute("select name from sqlite_master where type = 'index' "
                                         "and tbl_name = 'requests' and name not like 'sqlite_%'")}
        version_now = db.execute("select value from meta where key = 'schema_version'").fetchone()[0]
        rows = db.execute("select id from requests").fetchall()
    assert have == {"ix_requests_ts_id"}
    assert version_now == str(SCHEMA_VERSION) == "6"
    assert rows == [("req_1",)]
