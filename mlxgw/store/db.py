"""Opening the store: where it lives, SQLite pragmas, migrations, and turning driver errors into
StoreErrors that say what to do."""

from __future__ import annotations

import contextlib
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import sessionmaker

from mlxgw.errors import SchemaVersionError, StoreError
from mlxgw.store import tables
# The store's location and version live with the driver-level layer, which `mlxgw serve` uses alone.
from mlxgw.store.sql import (  # noqa: F401
    SCHEMA_VERSION, WRITE_LOCK, Database, display_url, home, private_file, resolve_url, store_error,
)


# Each migration takes a connection at version N-1 and leaves it at N. Never edit a released one.
def _m1(conn) -> None:
    for name in ("meta", "settings", "providers", "provider_models", "routes", "secrets", "revisions",
                 "gateway_keys", "requests"):  # fmt: skip
        tables.Base.metadata.tables[name].create(conn)


def _m2(conn) -> None:
    """The audit log's attempts (issue 6): attempts_detail (JSON) and failovers. A store created at
    version 2 already has them (migration 1 creates tables from the current metadata)."""
    from sqlalchemy import inspect

    have = {c["name"] for c in inspect(conn).get_columns("requests")}
    table = tables.RequestLog.__table__
    for name in ("attempts_detail", "failovers"):
        if name not in have:
            col = table.c[name]
            kind = col.type.compile(dialect=conn.dialect)
            default = " NOT NULL DEFAULT 0" if name == "failovers" else ""
            conn.execute(text(f"ALTER TABLE requests ADD COLUMN {name} {kind}{default}"))


def _m3(conn) -> None:
    """Stored Responses API responses (issue 11). checkfirst: a store rolled back to an older version
    number by hand (the migration tests do) may have it already."""
    tables.Base.metadata.tables["responses"].create(conn, checkfirst=True)


def _m4(conn) -> None:
    """Issue 12: requests.path (unknown paths are audited too) and gateway_keys.scope (admin keys).
    Existing keys keep reaching what they reached before but /admin/*: they become "client" keys."""
    _add_columns(conn, "requests", {"path": ""})
    _add_columns(conn, "gateway_keys", {"scope": " NOT NULL DEFAULT 'client'"})


def _add_columns(conn, table: str, columns: dict[str, str]) -> None:
    """ALTER TABLE `table` ADD each column of the current metadata it lacks (name -> SQL suffix)."""
    from sqlalchemy import inspect

    have = {c["name"] for c in inspect(conn).get_columns(table)}
    for name, suffix in columns.items():
        if name not in have:
            kind = tables.Base.metadata.tables[table].c[name].type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}{suffix}"))


def _m5(conn) -> None:
    """Indexes that keep `logs stats` and `logs tail` fast at a million rows (issue 14): percentiles are
    read by walking (group, duration) in order instead of loading every row, and the newest rows come off
    the end of (ts, id). (A store created at version 5 has them already: migration 1 made them.)"""
    for index in tables.AUDIT_INDEXES:
        index.create(conn, checkfirst=True)


def _m6(conn) -> None:
    """Issue 15: the audit indexes keyed by duration_ms made every audited request cost about 90 us of
    the writer's CPU (a random leaf per index per row, see tables.AUDIT_INDEXES); `logs stats` reads its
    percentiles in one scan now. (Migration 5, run on a version 4 store, creates only what is still in
    AUDIT_INDEXES.)"""
    for name in tables.DROPPED_AUDIT_INDEXES:
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))


MIGRATIONS = {1: _m1, 2: _m2, 3: _m3, 4: _m4, 5: _m5, 6: _m6}


class Store:
    """One engine per process. `session()` is the only way in; it maps driver errors to StoreErrors."""

    def __init__(self, url: str | None = None, migrate: bool = True):
        self.url = resolve_url(url)
        self.where = display_url(self.url)
        u = make_url(self.url)
        if u.drivername == "postgresql":  # SQLAlchemy's default driver is psycopg2; mlxgw[postgres] is psycopg 3
            u = u.set(drivername="postgresql+psycopg")
            self.url = u.render_as_string(hide_password=False)
        self.sqlite = u.get_backend_name() == "sqlite"
        kwargs: dict = {}
        # A "file:" URI (uri=true, e.g. mode=ro) is opened as given: no folder or file is made for it.
        if self.sqlite and u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            try:
                private_file(Path(u.database).expanduser())
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder for the database {self.where}: {exc.strerror}",
                    "set MLXGW_HOME or --db to a writable place",
                ) from None
            kwargs["connect_args"] = {"timeout": 5}
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except Exception as exc:  # bad URL, missing driver
            raise StoreError(f"cannot use the database URL {self.where}: {exc}", "check --db / MLXGW_DB") from None
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Writers take SQLite's write lock at BEGIN, so a concurrent writer fails before changing anything.
        self._writers = sessionmaker(self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False)
        self._db: Database | None = None
        if migrate:
            self.migrate()

    @property
    def db(self) -> Database:
        """The same store through the driver's DB-API (mlxgw.store.sql), for code shared with `serve`."""
        if self._db is None:
            self._db = Database(self.url, orm=self)
        return self._db

    @contextlib.contextmanager
    def session(self, write: bool = False):
        """A session in one transaction: committed if the block succeeds, rolled back otherwise."""
        with self._translate():
            with (self._writers if write else self._sessions)() as s:
                try:
                    if write and not self.sqlite:
                        self._lock(s)
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise

    def migrate(self) -> None:
        with self._translate():
            with self.engine.connect() as conn:
                current = _version(self.engine, conn)
            if current > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"the database {self.where} has schema version {current}, newer than this mlxgw "
                    f"understands ({SCHEMA_VERSION})",
                    "upgrade mlxgw (pip install -U mlxgw), or point --db / MLXGW_DB at another database",
                )
            if current == SCHEMA_VERSION:
                return
            with self.engine.execution_options(sqlite_immediate=True).begin() as conn:
                if not self.sqlite:  # replicas starting together on an empty PostgreSQL: one migrates
                    self._lock(conn)
                if _version(self.engine, conn) != current:  # another process migrated meanwhile
                    return
                for v in range(current + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[v](conn)
                conn.execute(
                    tables.Meta.__table__.delete().where(tables.Meta.key == "schema_version")
                )
                conn.execute(tables.Meta.__table__.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))

    def _lock(self, conn) -> None:
        if self.engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK})

    @contextlib.contextmanager
    def _translate(self):
        try:
            yield
        except OperationalError as exc:
            raise self._store_error(exc) from None
        except DatabaseError as exc:
            raise StoreError(
                f"{self.where} is not a usable mlxgw database: {exc.orig}",
                "point --db / MLXGW_DB at an mlxgw database, or move the file away to start afresh",
            ) from None

    def _store_error(self, exc: OperationalError) -> StoreError:
        return store_error(self.where, exc.orig)


def _version(engine: Engine, conn) -> int:
    if not engine.dialect.has_table(conn, "meta"):
        return 0
    row = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).first()
    return int(row[0]) if row else 0


def _sqlite_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Let SQLAlchemy, not the driver, manage transactions so BEGIN IMMEDIATE works as written.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout = 5000")
        cur.execute("PRAGMA foreign_keys = ON")
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            try:
                cur.execute("PRAGMA journal_mode = WAL")
            except Exception:  # read-only file: WAL cannot be switched on; reads still work
                pass
    finally:
        cur.close()
