"""The store through the driver's own DB-API (stdlib sqlite3, or psycopg 3 for PostgreSQL): what `mlxgw
serve` reads and writes at run time, without SQLAlchemy.

SQLAlchemy (mlxgw.store.db.Store) costs ~19 MiB of memory once imported and holds the GIL for long
stretches in its bulk paths; the server needs neither. So everything `serve` does at run time (loading the
config, the reload poll, gateway keys, the audit log, stored responses, pruning) is plain SQL here, written
once with `?` placeholders (`Database.sql` turns them into psycopg's `%s`). The CLI (`apply`, `logs`,
migrations) keeps SQLAlchemy; `Database.orm` opens it lazily for the rare admin/UI paths that need it.

Both drivers run in autocommit mode and transactions are explicit (`BEGIN` / `BEGIN IMMEDIATE` on SQLite,
plus the advisory write lock on PostgreSQL), so one code path serves both. Driver errors become the same
StoreErrors mlxgw.store.db gives (`translate`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from mlxgw.errors import SchemaVersionError, StoreError, StoreLockedError, StoreReadOnlyError

SCHEMA_VERSION = 6
# PostgreSQL: writers take this transaction-scoped advisory lock first, the counterpart of SQLite's
# BEGIN IMMEDIATE. Two `mlxgw apply` on two machines then run one after the other, and the second sees
# that the store moved since its plan ("the store changed ... run the command again") instead of both
# writing from the same base. Readers (the servers' reload polls, the request path's nothing) never wait.
WRITE_LOCK = 0x6D6C7867  # "mlxg"


def home() -> Path:
    """MLXGW_HOME, else the per-user data dir. Holds the SQLite file, the master key file, logs."""
    env = os.environ.get("MLXGW_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("mlxgw"))


def resolve_url(db: str | None = None) -> str:
    return db or os.environ.get("MLXGW_DB") or f"sqlite:///{home() / 'mlxgw.db'}"


def sqlite_path(url: str) -> str | None:
    """The database of a `sqlite:` URL as sqlite3.connect takes it (":memory:" for none); None when the URL
    is not SQLite's. `sqlite:///rel.db`, `sqlite:////abs.db`, `sqlite:///file:x.db?mode=ro&uri=true`."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] != "sqlite":
        return None
    path = rest[1:] if rest.startswith("/") else rest
    if not path.startswith("file:"):
        path = path.partition("?")[0]
    return unquote(path) or ":memory:"


def display_url(url: str) -> str:
    """The URL as it may be shown: a file path for SQLite, no password otherwise."""
    path = sqlite_path(url)
    if path is not None:
        return path
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def private_file(path: Path) -> None:
    """Create the SQLite file `path` (and its folder) readable by this user only: 0600 in a 0700 folder
    when the folder is MLXGW_HOME. SQLite gives the -wal and -shm files the main file's mode."""
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.resolve() == home().resolve():
        os.chmod(folder, 0o700)
    # Opened only to create it: closing a descriptor of a file drops every POSIX lock this process holds
    # on it, and SQLite's connections to it (the server's, a test's) rely on theirs.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if f.stat().st_mode & 0o077:
                os.chmod(f, 0o600)


class Database:
    """A store URL opened through its driver. Connections are pooled (a thread takes one for the length
    of a transaction); `connect()` gives a dedicated one (the audit writer's)."""

    def __init__(self, url: str | None = None, orm=None):
        self.url = resolve_url(url)
        self.where = display_url(self.url)
        self._path = sqlite_path(self.url)
        self.sqlite = self._path is not None
        self._orm = orm  # the SQLAlchemy Store over the same URL, opened on first use
        self._idle: list = []
        self._pool_lock = threading.Lock()
        self._sql: dict[str, str] = {}
        if self.sqlite:
            import sqlite3 as driver

            # sqlite3 binds exact int/float/str directly; anything else, None and bool included, goes
            # through its adapter lookup, whose failing attribute lookups raise and clear an exception
            # per value (about 4k instructions an audit row). Registered adapters are found first.
            driver.register_adapter(type(None), {}.get)  # None -> None, bound as NULL
            driver.register_adapter(bool, int)
        elif self.url.partition("://")[0].split("+")[0] not in ("postgresql", "postgres"):
            raise StoreError(f"cannot use the database URL {self.where}: mlxgw stores live in SQLite or PostgreSQL",
                             "check --db / MLXGW_DB (sqlite:///PATH or postgresql://USER@HOST/DB)")
        else:
            try:
                import psycopg as driver
            except ImportError:
                raise StoreError(f"cannot use the database URL {self.where}: psycopg is not installed",
                                 "pip install 'mlxgw[postgres]'") from None
        self.driver = driver
        # Texts of JSON columns: SQLite gives the text back, psycopg the decoded value.
        self.load_json = json.loads if self.sqlite else _same
        path = self._path
        if orm is None and self.sqlite and path != ":memory:" and not path.startswith("file:"):
            try:
                private_file(Path(path).expanduser())
            except OSError as exc:
                raise StoreError(f"cannot create the folder for the database {self.where}: {exc.strerror}",
                                 "set MLXGW_HOME or --db to a writable place") from None

    @property
    def db(self) -> Database:
        """So code can take a Database or a Store alike (`store.db`)."""
        return self

    @property
    def orm(self):
        """The SQLAlchemy Store over the same URL (imports SQLAlchemy: admin and UI paths only)."""
        if self._orm is None:
            from mlxgw.store.db import Store

            self._orm = Store(self.url, migrate=False)
        return self._orm

    def session(self, write: bool = False):
        return self.orm.session(write)

    def sql(self, text: str) -> str:
        """`text` (with `?` placeholders) in the driver's paramstyle."""
        if self.sqlite:
            return text
        out = self._sql.get(text)
        if out is None:
            out = self._sql[text] = text.replace("?", "%s")
        return out

    # -- connections --

    def connect(self):
        """A new connection in autocommit mode (transactions are explicit); driver errors translated."""
        with self.translate():
            if self.sqlite:
                path = self._path
                conn = self.driver.connect(path, timeout=5, isolation_level=None, check_same_thread=False,
                                           uri=path.startswith("file:"))
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.execute("PRAGMA foreign_keys = ON")
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    with contextlib.suppress(self.driver.Error):  # read-only: WAL cannot be switched on
                        conn.execute("PRAGMA journal_mode = WAL")
                return conn
            scheme, sep, rest = self.url.partition("://")
            return self.driver.connect("postgresql" + sep + rest, autocommit=True)

    @contextlib.contextmanager
    def transaction(self, write: bool = False, conn=None, raw: bool = False):
        """A cursor inside one transaction: committed if the block succeeds, rolled back otherwise. A
        pooled connection unless `conn` is given. `raw`: driver errors are not translated (a caller that
        tells a refused row from a failing database)."""
        own = conn is None
        if own:
            with self._pool_lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self.connect()
        broken = False
        try:
            with contextlib.nullcontext() if raw else self.translate():
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE" if write and self.sqlite else "BEGIN")
                try:
                    if write and not self.sqlite:
                        cur.execute(self.sql("SELECT pg_advisory_xact_lock(?)"), (WRITE_LOCK,))
                    yield cur
                    cur.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        cur.execute("ROLLBACK")
                    raise
                finally:
                    with contextlib.suppress(Exception):
                        cur.close()
        except (self.driver.Error, StoreError):
            broken = True  # the connection may be unusable: never pooled again
            raise
        finally:
            if own and broken:
                with contextlib.suppress(Exception):
                    conn.close()
            elif own:
                with self._pool_lock:
                    self._idle.append(conn)

    def query(self, text: str, params: tuple = ()) -> list[tuple]:
        with self.transaction() as cur:
            cur.execute(self.sql(text), params)
            return cur.fetchall()

    def close(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()
        if self._orm is not None:
            self._orm.engine.dispose()

    # -- opening --

    def schema_version(self) -> int:
        """The store's schema version; 0 for an empty database."""
        table = ("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'" if self.sqlite
                 else "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' "
                      "AND table_schema = current_schema()")
        with self.transaction() as cur:
            cur.execute(table)
            if not cur.fetchone()[0]:
                return 0
            cur.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def check(self) -> Database:
        """Refuse a store from a newer mlxgw; create or migrate an older or empty one (through
        SQLAlchemy: the cold path of a first start)."""
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database {self.where} has schema version {version}, newer than this mlxgw "
                f"understands ({SCHEMA_VERSION})",
                "upgrade mlxgw (pip install -U mlxgw), or point --db / MLXGW_DB at another database",
            )
        if version < SCHEMA_VERSION:
            self.orm.migrate()
            self.orm.engine.dispose()  # its connections; the Store stays for the admin paths
        return self

    # -- errors --

    @contextlib.contextmanager
    def translate(self):
        try:
            yield
        except self.driver.OperationalError as exc:
            raise store_error(self.where, exc) from None
        except self.driver.DatabaseError as exc:
            raise StoreError(
                f"{self.where} is not a usable mlxgw database: {exc}",
                "point --db / MLXGW_DB at an mlxgw database, or move the file away to start afresh",
            ) from None


def _same(value):
    return value


def store_error(where: str, exc: Exception) -> StoreError:
    """A StoreError saying what to do about a failing database (`exc`: the driver's OperationalError)."""
    msg = str(exc).lower()
    if "locked" in msg or "busy" in msg:
        return StoreLockedError(f"the database {where} is locked by another process",
                                "wait for the other mlxgw command to finish, then retry")
    if "readonly" in msg or "read-only" in msg or "read only" in msg:
        return StoreReadOnlyError(f"cannot write to the database {where}: it is read-only",
                                  "make the file and its folder writable, or point --db / MLXGW_DB elsewhere")
    if "unable to open" in msg:
        return StoreError(f"cannot open the database {where}",
                          "check that its folder exists and is readable, or set MLXGW_HOME / --db")
    return StoreError(f"database error on {where}: {exc}")
