"""The placement engine's own database connection: plain DB-API, one per process and Database.

Placement runs a few short statements per VM, thousands of times a second, so it skips the
ORM and SQLAlchemy's statement layer and talks to the driver (sqlite3 or psycopg) directly,
on one long-lived connection taken from the Database's pool. SQL is written once with
`:name` parameters; `Conn.sql()` rewrites them for psycopg's `%(name)s` style.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from engine.db import Database, redacted
from engine.errors import DatabaseUnavailable, StateConflict

_PARAM = re.compile(r"(?<![:\w]):(\w+)")

# PostgreSQL's deadlock_detected and serialization_failure: the transaction was chosen as
# the victim of a lock cycle with another writer. Nothing was written; it is safe to redo.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


class TransientConflict(StateConflict):
    """Another writer's transaction collided with ours and the database rolled ours back."""


class Conn:
    """One driver connection, used by one thread at a time (callers hold `lock`)."""

    def __init__(self, db: Database) -> None:
        # The URL only: holding the Database would keep it (and this connection) alive.
        self.url = db.url
        self.is_sqlite = db.is_sqlite
        self._fairy = db.engine.raw_connection()
        self.raw: Any = self._fairy.driver_connection
        if not self.is_sqlite:
            # Explicit BEGIN/COMMIT on both backends; psycopg must not open its own.
            self.raw.rollback()
            self.raw.autocommit = True
        self.lock = threading.RLock()
        dbapi = db.engine.dialect.loaded_dbapi
        self.operational_error: type[Exception] = dbapi.OperationalError
        self.integrity_error: type[Exception] = dbapi.IntegrityError
        self._cache: dict[str, str] = {}

    def sql(self, text: str) -> str:
        """`text` in the driver's parameter style (cached: statements are few and reused)."""
        cached = self._cache.get(text)
        if cached is None:
            cached = text if self.is_sqlite else _PARAM.sub(r"%(\1)s", text)
            self._cache[text] = cached
        return cached

    def execute(self, text: str, params: dict[str, Any] | Sequence[Any] = ()) -> Any:
        return self.raw.execute(self.sql(text), params)

    def executemany(self, text: str, rows: Sequence[dict[str, Any]]) -> int:
        """Run `text` once per row; returns the total row count the statements touched."""
        if not rows:
            return 0
        if self.is_sqlite:
            return self.raw.executemany(self.sql(text), rows).rowcount
        with self.raw.cursor() as cursor:
            cursor.executemany(self.sql(text), rows, returning=False)
            return cursor.rowcount

    def rows(self, text: str, params: dict[str, Any] | Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(text, params).fetchall())

    def data_version(self) -> int | None:
        """SQLite's counter of commits made by *other* connections; None elsewhere."""
        if not self.is_sqlite:
            return None
        return int(self.raw.execute("PRAGMA data_version").fetchone()[0])

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Conn]:
        """BEGIN IMMEDIATE on SQLite (writers queue on the busy timeout), BEGIN elsewhere."""
        if self.is_sqlite:
            self.raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        else:
            self.raw.execute("BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ")
        try:
            yield self
            self.raw.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the driver may have rolled back already
                self.raw.execute("ROLLBACK")
            if getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES:
                raise TransientConflict(
                    f"another writer held the same rows and the database rolled this change "
                    f"back ({exc.__class__.__name__}); try again"
                ) from exc
            if isinstance(exc, self.operational_error):
                raise DatabaseUnavailable(f"database {redacted(self.url)}: {exc}") from exc
            if isinstance(exc, self.integrity_error):
                raise StateConflict(
                    f"another writer changed the same rows meanwhile ({exc}); try again"
                ) from exc
            raise

    def timestamp(self, when: datetime) -> Any:
        """A bound value for a UTCDateTime column, stored as SQLAlchemy stores it."""
        when = when.astimezone(UTC)
        if self.is_sqlite:
            return when.replace(tzinfo=None).isoformat(" ", "microseconds")
        return when

    def read_timestamp(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def close(self) -> None:
        # The engine may already be disposed; then there is nothing to give back.
        with contextlib.suppress(Exception):
            self._fairy.detach()  # out of the pool: it must not be handed to anyone else
            self.raw.close()
