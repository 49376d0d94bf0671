"""The audit writer (batched, off the request path, drained on stop) and the queries behind `logs`."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import time

import pytest
from sqlalchemy import text

from mlxgw.audit import queries
from mlxgw.audit.writer import _ALL, COLUMNS, AuditWriter, storable_row
from mlxgw.dialects.jsonfast import dumps
from mlxgw.store.batches import MAX_ROWS, blocks
from mlxgw.store.db import Store

pytestmark = pytest.mark.both_stores  # SQLite and PostgreSQL (tests/conftest.py)


def row(i: int, **kw) -> dict:
    base = {"id": f"req_{i:06d}", "ts": 1_000_000.0 + i, "client_api": "openai", "backend_api": "openai",
            "requested_model": "gpt-4o", "route": "prefix:gpt-", "provider": "up", "backend_model": "gpt-4o",
            "attempts": 1, "stream": False, "status": 200, "duration_ms": float(i), "ttfb_ms": 1.0,
            "input_tokens": 2, "output_tokens": 3, "cached_tokens": None, "error": None}
    return {**base, **kw}


@pytest.fixture
def store(home) -> Store:
    return Store()


async def test_rows_are_written_in_batches_and_drained_on_stop(store):
    w = AuditWriter(store, interval=0.05, batch=100)
    await w.start()
    for i in range(250):
        w.record(row(i))
    for _ in range(600):  # flushed by size and by the timer, while running (polled up to 30 s)
        if w.written == 250:
            break
        await asyncio.sleep(0.05)
    assert w.written == 250
    for i in range(250, 1250):
        w.record(row(i))
    await w.stop()  # nothing may be lost on a clean stop
    assert w.written == 1250
    assert len(queries.tail(store, 5000)) == 1250


def test_statement_sizes_add_up_to_the_rows_in_few_statements():
    assert blocks(0) == [] and blocks(1) == [1] and blocks(37) == [32, 4, 1]
    assert blocks(600) == [MAX_ROWS, MAX_ROWS, 64, 16, 8] and MAX_ROWS == 256
    for n in range(2000):
        sizes = blocks(n)
        assert sum(sizes) == n and len(sizes) <= n // MAX_ROWS + MAX_ROWS.bit_length() - 1


@pytest.mark.parametrize("store_kind", ["sqlite"], indirect=True)
async def test_many_rows_go_in_few_insert_statements(store):
    """The driver lets go of the GIL once per statement (mlxgw.store.batches): 300 rows must not be 300
    statements."""
    w = AuditWriter(store, interval=60, batch=1000)
    w.budget = 1.0  # one chunk for the whole flush
    w.record(row(0))
    await w.flush()  # opens the writer's own connection
    inserts: list[str] = []
    w._conn.set_trace_callback(lambda sql: inserts.append(sql) if sql.startswith("INSERT") else None)
    for i in range(1, 301):
        w.record(row(i))
    await w.flush()
    assert len(inserts) == len(blocks(300)) == 4 and w.written == 301
    assert len(queries.tail(store, 1000)) == 301


async def test_record_never_blocks_even_when_the_database_fails(store, tmp_path):
    broken = Store(f"sqlite:///{tmp_path / 'other.db'}")
    broken.engine.dispose()
    with broken.session(write=True) as s:
        s.execute(text("DROP TABLE requests"))
    w = AuditWriter(broken, interval=0.02, max_pending=10)
    await w.start()
    t0 = time.perf_counter()
    for i in range(50):
        w.record(row(i))
    assert time.perf_counter() - t0 < 5  # returned: no wait on the database (its speed is bench/'s business)
    await asyncio.sleep(0.1)
    await w.stop()
    assert w.written == 0


def test_tail_and_follow(store):
    w = AuditWriter(store)
    for i in range(5):
        w.record(row(i))
    w.flush_sync()
    last = queries.tail(store, 3)
    assert [r["id"] for r in last] == ["req_000002", "req_000003", "req_000004"]
    f = queries.Follower(store, last)
    assert f.poll() == []
    w.record(row(5))
    w.record(row(6, ts=1_000_006.0))
    w.flush_sync()
    assert [r["id"] for r in f.poll()] == ["req_000005", "req_000006"]
    w.record(row(7, ts=1_000_006.0))  # same timestamp as the last row seen
    w.flush_sync()
    assert [r["id"] for r in f.poll()] == ["req_000007"]
    assert f.poll() == []


def test_stats_per_route_and_provider(store):
    w = AuditWriter(store)
    for i in range(1, 101):
        w.record(row(i))
    w.record(row(200, status=502, route="exact:x", provider="dead", duration_ms=5.0, input_tokens=None,
                 output_tokens=None, error="refused"))
    w.record(row(201, status=200, route="exact:x", provider="dead", duration_ms=7.0, error="stream broke"))
    w.flush_sync()
    s = queries.stats(store)
    assert s["total"]["requests"] == 102 and s["total"]["errors"] == 2
    gpt = s["routes"]["prefix:gpt-"]
    assert (gpt["requests"], gpt["errors"], gpt["p50_ms"], gpt["p95_ms"]) == (100, 0, 50.0, 95.0)
    assert gpt["input_tokens"] == 200 and gpt["output_tokens"] == 300
    assert s["providers"]["dead"] == {"requests": 2, "errors": 2, "p50_ms": 5.0, "p95_ms": 7.0,
                                      "input_tokens": 2, "output_tokens": 3, "failovers": 0}
    assert queries.stats(store, since=2_000_000.0)["total"]["requests"] == 0


def test_json_and_boolean_columns_round_trip(store):
    """The writer binds through the driver itself (no ORM types): the attempts list and the stream flag
    read back as written, on both stores."""
    w = AuditWriter(store)
    attempts = [{"target": "a/x", "outcome": "http_503", "ms": 1.5, "status": 503},
                {"target": "b/y", "outcome": "ok", "ms": 2.0, "status": 200}]
    w.record(row(1, stream=True, attempts_detail=attempts, failovers=1))
    w.record(row(2))
    w.flush_sync()
    first, second = queries.tail(store, 5)
    assert (first["stream"], first["attempts_detail"], first["failovers"]) == (True, attempts, 1)
    assert (second["stream"], second["attempts_detail"], second["failovers"]) == (False, None, 0)


@pytest.mark.parametrize("store_kind", ["sqlite"], indirect=True)
def test_sqlite_stand_ins_for_none_and_bool_store_what_the_plain_values_store(store):
    """On SQLite the writer binds NaN for the None of the columns rows often leave empty and an int for
    `stream` (mlxgw.audit.writer: cheaper than sqlite3's adapters). Varied rows written that way read back
    value for value, type for type, as the same rows bound as plain Python values."""
    rows = []
    choices = {"ttfb_ms": (None, 0.0, 12.5), "input_tokens": (None, 0, 7), "output_tokens": (None, 3),
               "cached_tokens": (None, 0, 2), "error": (None, "", "upstream said no"), "stream": (True, False),
               "backend_api": (None, "anthropic"), "attempts_detail": (None, [{"target": "a", "ms": 1.0}])}
    for i, combo in enumerate(itertools.product(*choices.values())):
        rows.append(storable_row(row(i, **dict(zip(choices, combo)))))
    w = AuditWriter(store)
    for r in rows:
        w.record(dict(r))
    w.flush_sync()
    assert w.written == len(rows) and w.dead == 0

    # The same rows again, bound as they are (None, bool) by a plain INSERT, under other ids.
    plain = [("plain-" + r["id"], *(dumps(v).decode() if c == "attempts_detail" and v is not None else v
                                    for c, v in zip(COLUMNS[1:], _ALL(r)[1:]))) for r in rows]
    with sqlite3.connect(store.db.where) as db:
        db.executemany(f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                       plain)
        typed = ", ".join(f"{c}, typeof({c})" for c in COLUMNS[1:])
        written = db.execute(f"SELECT {typed} FROM requests WHERE id LIKE 'req%' ORDER BY id").fetchall()
        expected = db.execute(f"SELECT {typed} FROM requests WHERE id LIKE 'plain-%' ORDER BY id").fetchall()
    assert len(written) == len(rows) and written == expected
    assert not any(isinstance(v, float) and math.isnan(v) for r in written for v in r)
