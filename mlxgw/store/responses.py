"""Stored Responses API responses (`store: true`), so `previous_response_id`, GET, DELETE and
input_items work on every backend, and a conversation survives failover to another backend: the store
keeps Responses items, and each turn is translated afresh for whichever backend serves it.

Off the request path, like the audit log (both are mlxgw.store.batches.BatchWriter): `put()` is a dict
insert plus a list append; a background task writes pending responses in batches from a worker thread. Reads look in memory first (pending ones
and the most recent written ones), so a chained request finds a response put a millisecond before; only
older ones are read from the database, in a worker thread. `close()` writes everything pending, so a
clean shutdown loses nothing. A batch the database refuses is kept and retried (up to `max_pending`);
a row that cannot be written (a duplicate id) goes to `responses-dead-letter.jsonl` and never blocks the
others (mlxgw.store.batches).

`history(id)` walks the previous_response_id chain and gives every turn's input items then output
items, oldest first. An ancestor that is gone (expired or deleted) ends the walk: the conversation
starts there. Rows expire `retention` seconds after creation (30 days by default, OpenAI's; gateway.yaml
`responses.retention`, set by the server on start and reload); a row is kept for the shorter of the
retention when it was stored (`expires_at`) and the one in force now, so shortening it takes effect at
once. `prune()` deletes expired ones and runs from the background task every `prune_every` seconds.

Plain SQL on the `responses` table through the driver (mlxgw.store.sql): SQLite and PostgreSQL alike. `owner` scopes every lookup
to the gateway key that stored the response (None: no key, loopback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from mlxgw.store.batches import BatchWriter

log = logging.getLogger("mlxgw.responses")
RETENTION = 30 * 86400.0
# The columns of the `responses` table (mlxgw.store.tables.StoredResponse); the last three hold JSON.
COLUMNS = ("id", "created_at", "expires_at", "model", "owner", "previous_response_id", "input_items", "output",
           "response")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM responses WHERE "


class ResponseStore(BatchWriter):
    label = "stored responses"
    table = "responses"
    columns = COLUMNS
    dead_letter_file = "responses-dead-letter.jsonl"
    min_chunk = 4  # a row holds a whole conversation turn: a chunk of a few may already take the budget

    def __init__(self, store, retention: float = RETENTION, interval: float = 0.2, batch: int = 500,
                 memory: int = 512, max_pending: int = 20_000, prune_every: float = 3600.0):
        super().__init__(store, interval, batch, max_pending)
        self.retention = retention
        self._memory = memory
        self._prune_every = prune_every
        self._last_prune = time.monotonic()
        self._mem: dict[str, dict] = {}  # id -> row, pending ones and the most recent written ones

    # -- writing --

    def put(self, response: dict, input_items: list[dict], owner: str | None = None, now: float | None = None) -> None:
        """Keep a finished response (completed or incomplete) and its request's input items. Never blocks."""
        now = time.time() if now is None else now
        # created_at: when the gateway stored it (what retention counts from), not the Response's own.
        row = {"id": response["id"], "created_at": now,
               "expires_at": now + self.retention, "model": response.get("model"), "owner": owner,
               "previous_response_id": response.get("previous_response_id"), "input_items": list(input_items),
               "output": list(response.get("output") or []), "response": response}
        self._mem[row["id"]] = row
        self._queue(row)

    async def close(self) -> None:
        """Write everything pending, then end the background task (BatchWriter.stop)."""
        await self.stop()

    async def flush(self) -> bool:
        ok = await super().flush()
        self._trim()
        return ok

    def _dropped(self, rows: list[dict]) -> None:
        for row in rows:
            self._mem.pop(row["id"], None)

    def _trim(self) -> None:
        """Keep at most `memory` written rows in memory (pending ones always stay)."""
        pending = {r["id"] for r in self._pending}
        extra = len(self._mem) - self._memory
        for key in list(self._mem):
            if extra <= 0:
                break
            if key not in pending:
                del self._mem[key]
                extra -= 1

    async def _tick(self) -> None:
        if time.monotonic() - self._last_prune < self._prune_every:
            return
        self._last_prune = time.monotonic()
        try:
            await self.prune()
        except Exception as exc:
            log.warning("stored responses: prune failed: %s", exc)

    def _values(self, row: dict) -> tuple:
        return (*(row[c] for c in COLUMNS[:6]), *(json.dumps(row[c]) for c in COLUMNS[6:]))

    def _row(self, values) -> dict:
        row = dict(zip(COLUMNS, values))
        for c in COLUMNS[6:]:
            row[c] = self._db.load_json(row[c])
        return row

    # -- reading --

    def _expired(self, row: dict, now: float) -> bool:
        return row["expires_at"] <= now or row["created_at"] + self.retention <= now

    def _visible(self, row: dict | None, owner: str | None, now: float) -> dict | None:
        if row is None or row["owner"] != owner or self._expired(row, now):
            return None
        return row

    def _load(self, ids: list[str]) -> dict[str, dict]:
        db = self._db
        found = db.query(_SELECT + f"id IN ({', '.join('?' * len(ids))})", tuple(ids))
        return {r["id"]: r for r in map(self._row, found)}

    def _load_chain(self, start: str, owner: str | None, now: float, limit: int) -> list[dict]:
        """Rows from `start` back along previous_response_id, newest first, in one thread call."""
        out: list[dict] = []
        rid: str | None = start
        db = self._db
        with db.transaction() as cur:
            while rid and len(out) < limit:
                cur.execute(db.sql(_SELECT + "id = ?"), (rid,))
                r = cur.fetchone()
                row = self._visible(self._row(r) if r else None, owner, now)
                if row is None:
                    break
                out.append(row)
                rid = row["previous_response_id"]
        return out

    async def _find(self, response_id: str, owner: str | None) -> dict | None:
        now = time.time()
        if response_id in self._mem:
            return self._visible(self._mem[response_id], owner, now)
        found = await asyncio.to_thread(self._load, [response_id])
        return self._visible(found.get(response_id), owner, now)

    async def get(self, response_id: str, owner: str | None = None) -> dict | None:
        """The stored Response, or None (unknown, deleted, expired, or another key's)."""
        row = await self._find(response_id, owner)
        return row["response"] if row else None

    async def history(self, response_id: str, owner: str | None = None, limit: int = 10_000) -> list[dict] | None:
        """The conversation up to and including `response_id`: each turn's input items then its output
        items, oldest first. None when `response_id` itself is not stored (previous_response_not_found)."""
        now = time.time()
        chain: list[dict] = []
        rid: str | None = response_id
        while rid and rid in self._mem and len(chain) < limit:  # the newest turns are in memory
            row = self._visible(self._mem[rid], owner, now)
            if row is None:
                rid = None  # expired or another key's: the conversation starts after it
                break
            chain.append(row)
            rid = row["previous_response_id"]
        if rid and len(chain) < limit:  # the older ones: one walk in the database
            chain += await asyncio.to_thread(self._load_chain, rid, owner, now, limit - len(chain))
        if not chain or chain[0]["id"] != response_id:
            return None
        items: list[dict] = []
        for row in reversed(chain):
            items.extend(row["input_items"])
            items.extend(row["output"])
        return items

    async def delete(self, response_id: str, owner: str | None = None) -> bool:
        """Forget a response: True when it was there."""
        async with self._lock:
            row = self._mem.get(response_id)
            if row is not None and row["owner"] != owner:
                return False
            had = self._mem.pop(response_id, None) is not None
            before = len(self._pending)
            self._pending = [r for r in self._pending if r["id"] != response_id]
            if len(self._pending) < before:
                return True  # never written: nothing in the database
            deleted = await asyncio.to_thread(self._delete, response_id, owner)
        return had or deleted

    def _delete(self, response_id: str, owner: str | None) -> bool:
        db = self._db
        with db.transaction(write=True) as cur:
            if owner is None:
                cur.execute(db.sql("DELETE FROM responses WHERE id = ? AND owner IS NULL"), (response_id,))
            else:
                cur.execute(db.sql("DELETE FROM responses WHERE id = ? AND owner = ?"), (response_id, owner))
            return cur.rowcount > 0

    async def input_items(self, response_id: str, after: str | None = None, limit: int = 20, order: str = "desc",
                          owner: str | None = None) -> dict | None:
        """A ResponseItemList page of the response's own input items (those inherited through
        previous_response_id are not listed); None when the response is not stored."""
        row = await self._find(response_id, owner)
        if row is None:
            return None
        items = list(row["input_items"])
        if order == "desc":
            items.reverse()
        if after is not None:
            ids = [it.get("id") for it in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:limit]
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else "",
                "last_id": page[-1]["id"] if page else "", "has_more": len(items) > limit}

    # -- retention --

    async def prune(self, now: float | None = None) -> int:
        """Delete expired responses (memory and database); returns how many database rows went."""
        now = time.time() if now is None else now
        async with self._lock:
            for key in [k for k, r in self._mem.items() if self._expired(r, now)]:
                del self._mem[key]
            self._pending = [r for r in self._pending if not self._expired(r, now)]
            return await asyncio.to_thread(self._prune, now, self.retention)

    def _prune(self, now: float, retention: float) -> int:
        db = self._db
        with db.transaction(write=True) as cur:
            cur.execute(db.sql("DELETE FROM responses WHERE expires_at <= ? OR created_at <= ?"), (now, now - retention))
            return cur.rowcount
