"""Issue 12, items 1, 8 and 13: invalid Unicode and deep JSON get a 400 in the client's dialect, rows are
storable when recorded, a batch the database refuses is split so one bad row cannot hold back the others
(it goes to the dead-letter file, counted), stored and echoed texts are cut, unknown paths are audited."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import pytest

from mlxgw.audit import queries
from mlxgw.audit.writer import DEAD_LETTER, AuditWriter, storable_row
from mlxgw.server import ServerConfig
from mlxgw.store.db import Store
from tests.gateway_harness import apply_config, openai_config, running_gateway, wait_for_rows
from tests.test_audit import row
from tests.upstream import upstream, upstream_server  # noqa: F401

CHAT = '{"model":"MODEL","messages":[{"role":"user","content":"x"}]}'
MESSAGES = '{"model":"MODEL","max_tokens":5,"messages":[{"role":"user","content":"x"}]}'


@pytest.fixture
def gw(home, cli, tmp_path, upstream):  # noqa: F811
    apply_config(cli, tmp_path, openai_config(upstream.base_url))
    with running_gateway(ServerConfig()) as g:
        yield g


def post(gw, path: str, raw: bytes) -> httpx.Response:
    return httpx.post(gw.base_url + path, content=raw, headers={"content-type": "application/json"})


def test_invalid_unicode_and_deep_json_get_400_and_the_audit_log_keeps_working(gw):
    bad_bodies = [
        CHAT.replace("MODEL", "x\\ud800").encode(), CHAT.replace("MODEL", "gpt-4o\\udfff").encode(),
        CHAT.replace('"x"', '"\\ud83d"').encode(),  # a lone surrogate anywhere in the body
        CHAT.replace("MODEL", "gpt-4o").encode().replace(b'"x"', b'"\xed\xa0\x80"'),  # CESU-8 surrogate
        CHAT.encode().replace(b"MODEL", b"\xff\xfe"),  # not UTF-8
        b'{"model":"gpt-4o","messages":[{"role":"user","content":' + b"[" * 990 + b"]" * 990 + b"}]}",
    ]
    for raw in bad_bodies:
        r = post(gw, "/chat/completions", raw)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
        r = post(gw, "/messages", raw.replace(b'"messages"', b'"max_tokens":5,"messages"'))
        assert r.status_code == 400 and r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    for path, body in (("/chat/completions", CHAT), ("/messages", MESSAGES)):
        assert post(gw, path, body.replace("MODEL", "gpt-4o").encode()).status_code == 200
    rows = wait_for_rows(gw, 2 * len(bad_bodies) + 2)
    assert len(rows) == 2 * len(bad_bodies) + 2 and sum(r["status"] == 200 for r in rows) == 2
    assert gw.app.gateway.audit.dead == 0


def test_long_names_are_capped_cut_when_stored_and_echoed(gw):
    long = "m" * 4_000_000
    r = post(gw, "/chat/completions", CHAT.replace("MODEL", long).encode())
    assert r.status_code == 400 and r.json()["error"]["param"] == "model" and len(r.content) < 1000
    r = httpx.get(gw.origin + "/v2/" + "p" * 20_000)
    assert r.status_code == 404 and len(r.content) < 1000
    rows = wait_for_rows(gw, 2)
    assert all(len(json.dumps(r)) < 4000 for r in rows)


def test_unknown_paths_are_audited_in_the_clients_dialect(gw, cli):
    r = httpx.post(gw.base_url + "/embeddings", json={"model": "gpt-4o", "input": "hi"})
    assert r.status_code == 404 and r.json()["error"]["message"] == "Unknown request URL: POST /v1/embeddings."
    r = httpx.post(gw.base_url + "/messages/batches", json={})
    assert r.status_code == 404 and r.json()["type"] == "error"
    rows = wait_for_rows(gw, 2)
    by_path = {x["path"]: x for x in rows}
    for path, rid in (("/v1/embeddings", None), ("/v1/messages/batches", r.headers["request-id"])):
        assert by_path[path]["client_api"] == "unknown" and by_path[path]["status"] == 404
    assert by_path["/v1/messages/batches"]["id"] == rid
    code, out, _ = cli("logs", "tail")
    assert "path=/v1/embeddings" in out


async def test_rows_are_cleaned_when_recorded(home):
    store = Store()
    w = AuditWriter(store, interval=0.02)
    await w.start()
    w.record(row(1, requested_model="x\ud800" + "y" * 1000, error="e\udfff" * 5000, route="r\x00",
                 attempts_detail=[{"target": "t\ud800", "outcome": "error", "error": "z" * 9000}]))
    await w.stop()
    (stored,) = queries.tail(store, 5)
    # cleaned and cut to the 256 characters a model name may have, then to the column's 200 (PostgreSQL
    # enforces VARCHAR lengths)
    assert stored["requested_model"].startswith("x\ufffdyyy") and len(stored["requested_model"]) == 200
    assert len(stored["error"]) == 2000 and "\ud800" not in stored["error"] and stored["route"] == "r\ufffd"


def test_a_row_like_one_already_checked_is_still_cleaned_where_it_differs():
    # The first row's texts are checked and remembered as fine; rows that repeat them skip the check.
    first = storable_row(row(1, route="prefix:known-fine-"))
    assert storable_row(row(2, route="prefix:known-fine-")) == {**first, **row(2, route="prefix:known-fine-")}
    # ...but not their id (unique per row, checked on its own) nor any text that differs
    bad_id = storable_row(row(3, route="prefix:known-fine-", id="r\x00" + "d" * 100))
    assert bad_id["id"].startswith("r\ufffd") and len(bad_id["id"]) == 64 and "\x00" not in bad_id["id"]
    bad_path = storable_row(row(4, route="prefix:known-fine-", path="/v1/\ud800"))
    assert bad_path["path"] == "/v1/\ufffd" and bad_path["route"] == "prefix:known-fine-"
    # a value that is no text (a caller's bug) is left as it was, as before the known-fine check
    odd = storable_row(row(5, route=["not", "a", "text"]))
    assert odd["route"] == ["not", "a", "text"]


async def test_a_row_the_database_refuses_cannot_hold_back_the_others(home, caplog):
    store = Store()
    w = AuditWriter(store, interval=0.02)
    await w.start()
    for i in range(10):
        w.record(row(i))
    w.record(row(3, requested_model="duplicate id"))  # the database refuses it on its own
    w.record({"id": object(), "ts": 1.0})  # a value no driver binds
    for i in range(10, 20):
        w.record(row(i))
    await asyncio.sleep(0.3)
    for i in range(20, 25):  # later rows keep flowing
        w.record(row(i))
    await w.stop()
    assert len(queries.tail(store, 100)) == 25 and w.written == 25 and w.dead == 2
    kept = [json.loads(line) for line in (home / DEAD_LETTER).read_text().splitlines()]
    assert [k["row"]["requested_model"] for k in kept[:1]] == ["duplicate id"] and len(kept) == 2
    assert (home / DEAD_LETTER).stat().st_mode & 0o777 == 0o600
    assert "refused by the database" in caplog.text
    with sqlite3.connect(home / "mlxgw.db") as db:
        assert db.execute("select requested_model from requests where id = 'req_000003'").fetchone()[0] == "gpt-4o"
