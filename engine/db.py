"""Database access: one `Database` per URL, SQLite by default, any SQLAlchemy URL otherwise.

SQLite is tuned for many processes sharing one file: WAL (readers never block the writer),
a busy timeout, foreign keys on, and write transactions that start with BEGIN IMMEDIATE so
that concurrent writers queue on the busy timeout instead of failing half-way with
"database is locked" when a deferred transaction tries to upgrade its lock.
PostgreSQL (several management servers on one database) goes through the same code path.

Hot paths (allocating an address) may use lean_write() instead of write(): the same one
BEGIN IMMEDIATE transaction, run on a driver connection with statements compiled once and
no ORM Session, whose bookkeeping costs several times what such a statement does.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlmodel import Session

from engine import paths
from engine.errors import DatabaseUnavailable

BUSY_TIMEOUT_SECONDS = 60
_BEGIN_OPTION = "stratus_begin"
# PostgreSQL advisory lock id that serialises migrations and first-start seeding.
STARTUP_LOCK = 7355608


def default_database_url() -> str:
    return f"sqlite:///{paths.data_dir() / 'stratus.db'}"


def normalise_url(url: str) -> str:
    """Accept the URLs operators type and pin the drivers Stratus ships with."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def redacted(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


_MISSING: Any = object()


class LeanStatement:
    """A Core statement compiled once for one dialect: its SQL text, and how to turn the
    caller's parameters into the driver's (order, literals the statement carries, the
    type's bind processing, e.g. datetimes as SQLite text)."""

    def __init__(self, statement: Executable, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.literal_execute_params or compiled.post_compile_params:
            # IN-lists and literal_execute parameters are rendered per call: not cacheable.
            raise ValueError("a lean statement cannot have parameters rendered per call")
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup or ()) if self.positional else list(compiled.binds)
        self.names = names
        # One slot per driver parameter: (name, bind processor or None, fixed value).
        self.slots: list[tuple[str, Any, Any]] = []
        for name in names:
            bind = compiled.binds[name]
            fixed = bind.effective_value if not bind.required else _MISSING
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self.slots.append((name, processor, fixed))
        # The rows' columns (a SELECT's, or an UPDATE/INSERT's RETURNING) and their result
        # processing (SQLite gives datetimes as text and booleans as ints); None: as is.
        columns = list(getattr(statement, "exported_columns", ()))
        self.columns = [column.key for column in columns]
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self.row_processors = processors if any(processors) else None

    def rows(self, raw: list[Any]) -> list[Any]:
        processors = self.row_processors
        if processors is None:
            return raw
        return [
            tuple(
                value if p is None else p(value) for p, value in zip(processors, row, strict=True)
            )
            for row in raw
        ]

    def driver_parameters(self, params: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for name, processor, fixed in self.slots:
            value = params.get(name, fixed)
            if value is _MISSING:
                raise KeyError(f"lean statement: no value for parameter '{name}'")
            values.append(processor(value) if processor is not None else value)
        return tuple(values) if self.positional else dict(zip(self.names, values, strict=True))


class LeanWrite:
    """One write transaction on a driver connection, without an ORM session.

    For hot paths (picking an address): statements are compiled once per Database and run
    straight on the driver's cursor. Rows come back as tuples, through the column types'
    result processing (datetimes, booleans) as a Session would give them.
    """

    def __init__(self, database: Database, cursor: Any) -> None:
        self.database = database
        self.cursor = cursor
        self.dialect_name = database.engine.dialect.name

    def execute(self, statement: Executable, params: dict[str, Any] | None = None) -> list[Any]:
        """Run a long-lived statement (module-level or cached: it is compiled once and kept
        by identity) and return its rows (empty for a statement without rows)."""
        lean = self.database.lean_statement(statement)
        self.cursor.execute(lean.sql, lean.driver_parameters(params or {}))
        if self.cursor.description is None:
            return []
        return lean.rows(self.cursor.fetchall())

    def columns(self, statement: Executable) -> list[str]:
        """The keys of the statement's row columns, in order."""
        return self.database.lean_statement(statement).columns

    def first(self, statement: Executable, params: dict[str, Any] | None = None) -> Any | None:
        rows = self.execute(statement, params)
        return rows[0] if rows else None


class Database:
    """An engine plus the two kinds of session Stratus uses: reads and writes."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except Exception:  # sqlalchemy raises ArgumentError with a terse text
            shown = re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)
            raise DatabaseUnavailable(
                f"database URL '{shown}' is not valid: expected sqlite:///path/to/file.db "
                "or postgresql://user@host/dbname"
            ) from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        # id(statement) -> (statement, compiled form): the statement is kept alive so that
        # its id is never reused by another object.
        self._lean: dict[int, tuple[Executable, LeanStatement]] = {}
        # SQLite: each thread keeps one driver connection for lean writes (see lean_write).
        # Weakly listed, so a finished thread's connection closes with its thread-local.
        self._held = threading.local()
        self._held_all: weakref.WeakSet[Any] = weakref.WeakSet()
        self._held_lock = threading.Lock()
        self._held_generation = 0
        if self.is_sqlite:
            self.engine = self._sqlite_engine(parsed.database, echo)
        else:
            try:
                self.engine = create_engine(self.url, echo=echo, pool_pre_ping=True)
            except (ArgumentError, ImportError) as exc:
                # An unknown scheme (NoSuchModuleError) or a driver that is not installed.
                raise DatabaseUnavailable(
                    f"database URL {redacted(self.url)}: no usable driver for "
                    f"'{parsed.drivername}' ({exc}); Stratus ships drivers for "
                    "sqlite:/// and postgresql:// URLs"
                ) from None

    @staticmethod
    def _sqlite_engine(database: str | None, echo: bool) -> Engine:
        if not database or database == ":memory:":
            raise DatabaseUnavailable(
                "an in-memory SQLite database cannot be shared between connections; "
                "give a file, e.g. sqlite:////var/lib/stratus/stratus.db"
            )
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            f"sqlite:///{Path(database).expanduser()}",
            echo=echo,
            connect_args={"timeout": BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # Take transaction control away from pysqlite so that our BEGIN below is the
            # only one (the recipe from SQLAlchemy's SQLite dialect documentation).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
            mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; it never writes."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
            except OperationalError as exc:
                raise self.unavailable(exc) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                session.connection(execution_options={_BEGIN_OPTION: "IMMEDIATE"})
                yield session
                session.commit()
            except OperationalError as exc:
                session.rollback()
                raise self.unavailable(exc) from exc
            except BaseException:
                session.rollback()
                raise

    def lean_statement(self, statement: Executable) -> LeanStatement:
        cached = self._lean.get(id(statement))
        if cached is None:
            cached = (statement, LeanStatement(statement, self.engine.dialect))
            self._lean[id(statement)] = cached
        return cached[1]

    def _lean_connection(self) -> tuple[Any, bool]:
        """(connection, pooled). SQLite: this thread's own connection, kept out of the pool
        (a local file never goes stale; checking a connection out of the pool and back
        costs about a third of what a whole allocation does). A forked child or a disposed
        Database opens a new one. PostgreSQL: from the pool, with its pre-ping."""
        if not self.is_sqlite:
            return self.engine.raw_connection(), True
        key = (os.getpid(), self._held_generation)
        held = getattr(self._held, "connection", None)
        if held is not None and held[0] == key:
            return held[1], False
        connection = self.engine.raw_connection()
        connection.detach()  # out of the pool's accounting: this thread owns it
        self._held.connection = (key, connection)
        with self._held_lock:
            self._held_all.add(connection)
        return connection, False

    def _drop_held(self, connection: Any) -> None:
        self._held.connection = None
        with self._held_lock:
            self._held_all.discard(connection)
        with suppress(Exception):
            connection.close()

    @contextmanager
    def lean_write(self) -> Iterator[LeanWrite]:
        """The same one write transaction as write() (BEGIN IMMEDIATE on SQLite; on
        PostgreSQL the driver opens it), on a driver connection with no Session:
        committed when the block ends, rolled back on any error. Driver errors are raised
        as SQLAlchemy's (IntegrityError ...); an unusable database as DatabaseUnavailable.
        Do not nest it, nor open write() inside it: on SQLite the inner one would wait
        for the outer one's lock.
        """
        dialect = self.engine.dialect
        dbapi_error = dialect.loaded_dbapi.Error
        try:
            connection, pooled = self._lean_connection()
        except OperationalError as exc:
            raise self.unavailable(exc) from exc
        if not pooled and connection.dbapi_connection.in_transaction:
            # Nested in this thread's open lean write: BEGIN would fail and the rollback
            # would end the outer transaction, leaving it to run in autocommit.
            raise RuntimeError("lean_write() is already open in this thread; do not nest it")
        broken = False
        try:
            cursor = connection.cursor()
            try:
                if not pooled:
                    cursor.execute("BEGIN IMMEDIATE")
                yield LeanWrite(self, cursor)
                connection.commit()
            except BaseException as exc:
                try:
                    connection.rollback()
                except dbapi_error:
                    broken = True  # the connection is gone: never reuse it
                if isinstance(exc, dbapi_error):
                    broken = broken or dialect.is_disconnect(
                        exc, connection.dbapi_connection, cursor
                    )
                    wrapped = DBAPIError.instance(None, None, exc, dbapi_error)
                    if isinstance(wrapped, OperationalError):
                        raise self.unavailable(wrapped) from exc
                    raise wrapped from exc
                raise
            finally:
                with suppress(dbapi_error):
                    cursor.close()
        finally:
            if pooled:
                if broken:
                    connection.invalidate()
                connection.close()  # back to the pool
            elif broken:
                self._drop_held(connection)

    def unavailable(self, exc: OperationalError) -> DatabaseUnavailable:
        reason = str(exc.orig).strip() if exc.orig is not None else str(exc)
        return DatabaseUnavailable(f"database {redacted(self.url)}: {reason}")

    def serialise_startup(self, session: Session) -> None:
        """Make concurrent starts of management servers take turns in this transaction.

        SQLite needs nothing: write transactions begin IMMEDIATE. PostgreSQL takes a
        transaction-scoped advisory lock (the same one the migrations take).
        """
        if not self.is_sqlite:
            session.connection().exec_driver_sql(f"SELECT pg_advisory_xact_lock({STARTUP_LOCK})")

    def check_connection(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except OperationalError as exc:
            raise self.unavailable(exc) from exc

    def dispose(self) -> None:
        with self._held_lock:
            held, self._held_all = list(self._held_all), weakref.WeakSet()
            self._held_generation += 1
        for connection in held:
            with suppress(Exception):
                connection.close()
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({redacted(self.url)!r})"


def database_from_environment(url: str | None = None) -> Database:
    """`url`, else STRATUS_DATABASE_URL, else the SQLite file in the user data dir."""
    return Database(url or os.environ.get("STRATUS_DATABASE_URL") or default_database_url())
