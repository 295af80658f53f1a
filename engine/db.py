"""Database access: one `Database` per URL, SQLite by default, any SQLAlchemy URL otherwise.

SQLite is tuned for many processes sharing one file: WAL (readers never block the writer),
a busy timeout, foreign keys on, and write transactions that start with BEGIN IMMEDIATE so
that concurrent writers queue on the busy timeout instead of failing half-way with
"database is locked" when a deferred transaction tries to upgrade its lock.
PostgreSQL (several management servers on one database) goes through the same code path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
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
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({redacted(self.url)!r})"


def database_from_environment(url: str | None = None) -> Database:
    """`url`, else STRATUS_DATABASE_URL, else the SQLite file in the user data dir."""
    return Database(url or os.environ.get("STRATUS_DATABASE_URL") or default_database_url())
