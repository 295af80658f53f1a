"""engine.db: SQLite tuning, URL handling, and many processes writing one database."""

from __future__ import annotations

import multiprocessing
import sqlite3
import traceback
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from engine.bootstrap import open_cloud
from engine.db import BUSY_TIMEOUT_SECONDS, Database
from engine.errors import DatabaseUnavailable
from engine.events import record_event
from engine.models import Event


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _can_take_write_lock(path: str) -> bool:
    """Whether another connection could start a write transaction right now."""
    other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    else:
        other.execute("ROLLBACK")
        return True
    finally:
        other.close()


# --- SQLite tuning -----------------------------------------------------------------------


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        with db.read() as session:
            pragma = {
                name: session.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        db.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": BUSY_TIMEOUT_SECONDS * 1000,
    }


def test_sqlite_foreign_keys_are_enforced(cloud) -> None:
    from engine.models import Account

    with pytest.raises(Exception, match="FOREIGN KEY"), cloud.db.write() as session:
        session.add(Account(name="orphan", domain_id=999_999))


def test_sqlite_write_takes_the_write_lock_at_begin(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    db.check_connection()
    path = _sqlite_path(sqlite_url)
    try:
        assert _can_take_write_lock(path)
        with db.write():
            # No statement yet: BEGIN IMMEDIATE alone must already hold the lock.
            assert not _can_take_write_lock(path)
        assert _can_take_write_lock(path)
    finally:
        db.dispose()


def test_sqlite_read_does_not_take_the_write_lock(cloud) -> None:
    path = _sqlite_path(cloud.db.url)
    with cloud.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Event)) is not None
        assert _can_take_write_lock(path)


def test_write_rolls_back_on_error(cloud) -> None:
    with pytest.raises(RuntimeError), cloud.db.write() as session:
        record_event(session, cloud.admin, "TEST.ROLLBACK", "Test", None, "never kept")
        session.flush()
        raise RuntimeError("boom")
    with cloud.db.read() as session:
        kept = session.scalar(
            select(func.count()).select_from(Event).where(Event.event_type == "TEST.ROLLBACK")
        )
    assert kept == 0


# --- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(DatabaseUnavailable, match="in-memory SQLite"):
        Database(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "is not valid"),
        ("nosuchdb://host/db", "no usable driver for 'nosuchdb'"),
        ("mysql://user:secret@host/db", "no usable driver for 'mysql'"),
    ],
)
def test_invalid_url_is_refused_with_a_clear_message(url: str, expected: str) -> None:
    with pytest.raises(DatabaseUnavailable, match=expected) as info:
        Database(url)
    assert "secret" not in str(info.value)


def test_postgres_scheme_is_normalised_to_the_shipped_driver() -> None:
    db = Database("postgres://user@/db?host=/nonexistent")
    assert db.url.startswith("postgresql+psycopg://")
    assert not db.is_sqlite
    db.dispose()


def test_unreachable_postgres_is_database_unavailable(tmp_path: Path) -> None:
    # A socket directory with no server in it: the connection fails at once.
    url = f"postgresql://admin:hunter2@/stratus?host={tmp_path}"
    with pytest.raises(DatabaseUnavailable) as info:
        open_cloud(url)
    message = str(info.value)
    assert type(info.value) is DatabaseUnavailable
    assert message.startswith("database postgresql+psycopg://admin:***@/stratus")
    assert str(tmp_path) in message  # the driver's reason: which socket it tried
    assert "hunter2" not in message
    assert "sqlalche.me" not in message and "psycopg.OperationalError" not in message


def test_unopenable_sqlite_file_is_database_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory.db"
    directory.mkdir()
    with pytest.raises(DatabaseUnavailable, match="unable to open database file"):
        open_cloud(f"sqlite:///{directory}")


# --- concurrent writers ------------------------------------------------------------------

COUNTER_TABLE = "CREATE TABLE test_counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"


def _writer(url: str, worker: int, writes: int, atomic: bool, start, results) -> None:
    """Child process: `writes` separate transactions, each an event plus a counter bump."""
    try:
        cloud = open_cloud(url, migrate=False)
        start.wait()
        for i in range(writes):
            with cloud.db.write() as session:
                if atomic:
                    session.execute(text("UPDATE test_counter SET n = n + 1 WHERE id = 1"))
                else:
                    # Read-modify-write: correct only if write transactions are serialised.
                    n = session.execute(text("SELECT n FROM test_counter WHERE id = 1")).scalar()
                    session.execute(
                        text("UPDATE test_counter SET n = :n WHERE id = 1"), {"n": n + 1}
                    )
                record_event(
                    session, cloud.admin, "TEST.WRITE", "Test", None, f"worker {worker} write {i}"
                )
        cloud.db.dispose()
        results.put((worker, "ok"))
    except BaseException:
        results.put((worker, traceback.format_exc()))
        raise


def _run_writers(url: str, workers: int, writes: int, *, atomic: bool) -> None:
    cloud = open_cloud(url)
    with cloud.db.write() as session:
        session.execute(text(COUNTER_TABLE))
        session.execute(text("INSERT INTO test_counter (id, n) VALUES (1, 0)"))

    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(url, w, writes, atomic, start, results))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    start.set()
    outcomes = dict(results.get(timeout=600) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    failures = {w: out for w, out in outcomes.items() if out != "ok"}
    assert not failures, "\n".join(f"worker {w}:\n{tb}" for w, tb in failures.items())
    assert [proc.exitcode for proc in procs] == [0] * workers

    with cloud.db.read() as session:
        counter = session.execute(text("SELECT n FROM test_counter WHERE id = 1")).scalar()
        descriptions = session.scalars(
            select(Event.description).where(Event.event_type == "TEST.WRITE")
        ).all()
    cloud.db.dispose()
    expected = {f"worker {w} write {i}" for w in range(workers) for i in range(writes)}
    assert len(descriptions) == workers * writes
    assert set(descriptions) == expected
    assert counter == workers * writes


@pytest.mark.slow
def test_concurrent_writers_on_one_sqlite_file(sqlite_url: str) -> None:
    """8 processes x 200 transactions: none fails with "database is locked", none is lost."""
    _run_writers(sqlite_url, workers=8, writes=200, atomic=False)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_writers_on_postgres(postgres_url: str) -> None:
    _run_writers(postgres_url, workers=4, writes=100, atomic=True)
