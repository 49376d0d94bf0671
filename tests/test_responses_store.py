"""The stored Responses: put/get/history/delete/input_items on a real SQLite file, reads right after a
put (memory) and after the row left memory (database), a clean close surviving a reopen, retention."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from sqlalchemy import inspect, text

from mlxgw.dialects import responses as rs
from mlxgw.store.db import SCHEMA_VERSION, Store
from mlxgw.store.responses import ResponseStore
from tests import conformance


pytestmark = pytest.mark.both_stores  # SQLite and PostgreSQL (tests/conftest.py)


@pytest.fixture
def db(tmp_path, request, store_kind):
    """A fresh store: SQLite, and again on a fresh PostgreSQL database of its own (tests/conftest.py):
    the store is plain SQLAlchemy Core, this proves it there."""
    if store_kind == "postgresql":
        return Store(request.getfixturevalue("pg_url"))
    return Store(f"sqlite:///{tmp_path / 'mlxgw.db'}")


def turn(rid: str, text_in: str, answer: str, prev: str | None = None, **req) -> tuple[dict, list[dict]]:
    """A real Response and its input items, as the server would put them."""
    body = rs.parse_request(json.dumps({"model": "m", "input": text_in, "previous_response_id": prev, **req}).encode())
    chat = {"choices": [{"message": {"content": answer}, "finish_reason": "stop"}]}
    return rs.from_chat_response(chat, body, rid, int(time.time())), rs.input_items(body)


def texts(items: list[dict]) -> list[str]:
    return [p.get("text") for it in items for p in it.get("content", [])]


async def test_get_right_after_put_and_after_the_flush(db):
    rstore = ResponseStore(db, memory=0)
    resp, items = turn("resp_1", "hi", "hello")
    rstore.put(resp, items)
    assert await rstore.get("resp_1") == resp  # from memory, nothing written yet
    assert rstore.written == 0
    await rstore.flush()
    assert rstore.written == 1 and "resp_1" not in rstore._mem
    got = await rstore.get("resp_1")  # from the database
    assert got == resp
    conformance.validate_response(got)
    assert await rstore.get("resp_nope") is None


async def test_history_walks_the_chain_across_memory_and_database(db):
    rstore = ResponseStore(db, memory=1)
    r1, i1 = turn("resp_1", "one", "A")
    r2, i2 = turn("resp_2", "two", "B", prev="resp_1")
    rstore.put(r1, i1)
    rstore.put(r2, i2)
    await rstore.flush()  # keeps only resp_2 in memory
    assert list(rstore._mem) == ["resp_2"]
    r3, i3 = turn("resp_3", "three", "C", prev="resp_2")
    rstore.put(r3, i3)  # pending: memory only
    history = await rstore.history("resp_3")
    assert texts(history) == ["one", "A", "two", "B", "three", "C"]
    assert [it["type"] for it in history] == ["message"] * 6
    assert texts(await rstore.history("resp_2")) == ["one", "A", "two", "B"]
    assert await rstore.history("resp_unknown") is None


async def test_a_chained_request_finds_a_response_put_just_before(db):
    rstore = ResponseStore(db)
    await rstore.start()
    try:
        r1, i1 = turn("resp_1", "one", "A")
        rstore.put(r1, i1)
        req2 = rs.parse_request(json.dumps({"model": "m", "input": "two", "previous_response_id": "resp_1"}).encode())
        history = await rstore.history(req2["previous_response_id"])
        assert rs.to_chat_request(req2, "b", history)["messages"] == [
            {"role": "user", "content": "one"}, {"role": "assistant", "content": "A"},
            {"role": "user", "content": "two"}]
        deadline = time.monotonic() + 20
        while rstore.written < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert rstore.written == 1  # the background task wrote it without being asked
    finally:
        await rstore.close()


async def test_delete_pending_and_written(db):
    rstore = ResponseStore(db, memory=0)
    r1, i1 = turn("resp_1", "one", "A")
    r2, i2 = turn("resp_2", "two", "B", prev="resp_1")
    rstore.put(r1, i1)
    await rstore.flush()
    rstore.put(r2, i2)
    assert await rstore.delete("resp_2") is True  # still pending: never reaches the database
    await rstore.flush()
    assert rstore.written == 1 and await rstore.get("resp_2") is None
    assert await rstore.delete("resp_1") is True
    assert await rstore.get("resp_1") is None and await rstore.history("resp_1") is None
    assert await rstore.delete("resp_1") is False and await rstore.delete("resp_never") is False
    with db.session() as s:
        assert s.execute(text("select count(*) from responses")).scalar() == 0


async def test_a_deleted_ancestor_ends_the_history(db):
    rstore = ResponseStore(db)
    for rid, prev, word in (("resp_1", None, "one"), ("resp_2", "resp_1", "two"), ("resp_3", "resp_2", "three")):
        r, i = turn(rid, word, word.upper(), prev=prev)
        rstore.put(r, i)
    await rstore.delete("resp_2")
    assert texts(await rstore.history("resp_3")) == ["three", "THREE"]


async def test_owners_see_only_their_own(db):
    rstore = ResponseStore(db, memory=0)
    r1, i1 = turn("resp_1", "one", "A")
    rstore.put(r1, i1, owner="team-a")
    for flush in (False, True):
        if flush:
            await rstore.flush()
        assert await rstore.get("resp_1", owner="team-a") == r1
        assert await rstore.get("resp_1") is None and await rstore.get("resp_1", owner="team-b") is None
        assert await rstore.history("resp_1", owner="team-b") is None
        assert await rstore.input_items("resp_1", owner="team-b") is None
    assert await rstore.delete("resp_1", owner="team-b") is False
    assert await rstore.delete("resp_1", owner="team-a") is True


async def test_input_items_pages(db):
    rstore = ResponseStore(db, memory=0)
    body = rs.parse_request(json.dumps({"model": "m", "input": [
        {"role": "user", "content": f"q{n}"} if n % 2 == 0 else {"role": "assistant", "content": f"a{n}"}
        for n in range(5)]}).encode())
    items = rs.input_items(body)
    resp = rs.from_chat_response({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]}, body, "resp_p", 1)
    rstore.put(resp, items)
    await rstore.flush()
    ids = [it["id"] for it in items]
    page = await rstore.input_items("resp_p", limit=2)
    conformance.validate_responses("ResponseItemList", page)
    assert [it["id"] for it in page["data"]] == ids[::-1][:2]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[4], ids[3], True)
    page = await rstore.input_items("resp_p", after=page["last_id"], limit=2)
    assert [it["id"] for it in page["data"]] == [ids[2], ids[1]] and page["has_more"] is True
    page = await rstore.input_items("resp_p", after=page["last_id"], limit=2)
    assert [it["id"] for it in page["data"]] == [ids[0]] and page["has_more"] is False
    asc = await rstore.input_items("resp_p", order="asc", limit=100)
    conformance.validate_responses("ResponseItemList", asc)
    assert [it["id"] for it in asc["data"]] == ids and asc["has_more"] is False
    assert await rstore.input_items("resp_missing") is None


async def test_close_writes_everything_and_a_reopen_finds_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'mlxgw.db'}"
    rstore = ResponseStore(Store(url), interval=60)
    await rstore.start()
    r1, i1 = turn("resp_1", "one", "A")
    r2, i2 = turn("resp_2", "two", "B", prev="resp_1")
    rstore.put(r1, i1)
    rstore.put(r2, i2)
    await rstore.close()
    again = ResponseStore(Store(url))
    assert await again.get("resp_2") == r2
    assert texts(await again.history("resp_2")) == ["one", "A", "two", "B"]


async def test_prune_removes_expired_responses(db):
    rstore = ResponseStore(db, retention=100, memory=0)
    old, i_old = turn("resp_old", "old", "O")
    new, i_new = turn("resp_new", "new", "N")
    rstore.put(old, i_old, now=1000.0)  # expired long ago
    rstore.put(new, i_new)
    await rstore.flush()
    assert await rstore.get("resp_old") is None  # expired rows are invisible before the prune too
    assert await rstore.prune() == 1
    assert await rstore.get("resp_new") == new
    with db.session() as s:
        assert [r[0] for r in s.execute(text("select id from responses"))] == ["resp_new"]
    rstore.put(old, i_old, now=1000.0)  # a pending expired one goes too, from memory
    assert await rstore.prune() == 0 and "resp_old" not in rstore._mem


async def test_a_duplicate_row_does_not_block_the_others(db, tmp_path):
    dead_letter = tmp_path / "dead.jsonl"
    rstore = ResponseStore(db)
    rstore._dead_letter = dead_letter
    r1, i1 = turn("resp_1", "one", "A")
    rstore.put(r1, i1)
    await rstore.flush()
    r2, i2 = turn("resp_2", "two", "B")
    rstore.put(r1, i1)  # the same id again
    rstore.put(r2, i2)
    await rstore.flush()
    assert rstore._pending == []
    with db.session() as s:
        assert sorted(r[0] for r in s.execute(text("select id from responses"))) == ["resp_1", "resp_2"]
    # The refused row is counted and kept in the dead-letter file (mode 0600), like the audit log's.
    assert rstore.dead == 1 and rstore.written == 2
    (kept,) = [json.loads(line) for line in dead_letter.read_text().splitlines()]
    assert kept["row"]["id"] == "resp_1" and kept["row"]["response"] == r1
    assert dead_letter.stat().st_mode & 0o777 == 0o600


def test_the_migration_adds_the_table_to_an_older_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    with store.engine.begin() as conn:
        conn.execute(text("drop table responses"))
        conn.execute(text("update meta set value = '2' where key = 'schema_version'"))
    store = Store(url)
    assert "responses" in inspect(store.engine).get_table_names() and SCHEMA_VERSION >= 3


async def test_a_shortened_retention_expires_older_responses_at_once(db):
    rstore = ResponseStore(db, memory=0)  # 30 days when they were stored
    old, i_old = turn("resp_old", "old", "O")
    new, i_new = turn("resp_new", "new", "N")
    rstore.put(old, i_old, now=time.time() - 3600)
    rstore.put(new, i_new)
    await rstore.flush()
    rstore.retention = 600.0  # gateway.yaml now says 10m: the hour-old response is past it
    assert await rstore.get("resp_old") is None and await rstore.get("resp_new") == new
    assert await rstore.prune() == 1
    with db.session() as s:
        assert [r[0] for r in s.execute(text("select id from responses"))] == ["resp_new"]
