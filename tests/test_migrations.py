"""Schema migrations and the first open of a cloud."""

from __future__ import annotations

import multiprocessing
import pprint
import tomllib
import traceback
from importlib import resources

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlmodel import SQLModel

import engine.models  # noqa: F401  (registers every table on SQLModel.metadata)
from engine.bootstrap import open_cloud
from engine.db import Database
from engine.errors import SchemaTooNew
from engine.models import Account, Configuration, Domain, User
from engine.schema import current_revision, head_revision, upgrade

UNKNOWN_REVISION = "ffff0000newer"


@pytest.fixture
def db(db_url: str):
    database = Database(db_url)
    yield database
    database.dispose()


def test_models_and_migrations_agree(db: Database) -> None:
    upgrade(db)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], "models differ from the migrations:\n" + pprint.pformat(diff)


def test_migrations_create_every_model_table(db: Database) -> None:
    upgrade(db)
    tables = set(inspect(db.engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    assert current_revision(db) is None
    assert upgrade(db) == (None, head_revision())
    assert current_revision(db) == head_revision()
    tables = set(inspect(db.engine).get_table_names())

    assert upgrade(db) == (head_revision(), head_revision())
    assert current_revision(db) == head_revision()
    db.engine.dispose()  # fresh inspector cache
    assert set(inspect(db.engine).get_table_names()) == tables


def _stamp_unknown_revision(db: Database) -> None:
    with db.write() as session:
        session.execute(
            text("UPDATE alembic_version SET version_num = :r"), {"r": UNKNOWN_REVISION}
        )


@pytest.mark.parametrize("how", ["open_cloud", "open_cloud without migrating", "upgrade"])
def test_database_newer_than_the_code_is_refused(db: Database, db_url: str, how: str) -> None:
    upgrade(db)
    _stamp_unknown_revision(db)

    with pytest.raises(SchemaTooNew) as info:
        if how == "upgrade":
            upgrade(db)
        else:
            open_cloud(db_url, migrate=how == "open_cloud")
    message = str(info.value)
    assert UNKNOWN_REVISION in message
    assert head_revision() in message
    assert "newer Stratus" in message and "run that version" in message
    # Refused before touching anything.
    assert current_revision(db) == UNKNOWN_REVISION


def test_open_cloud_creates_root_objects_once_and_seeds_every_setting(db_url: str) -> None:
    first = open_cloud(db_url)
    assert first.fresh is True
    first.db.dispose()
    second = open_cloud(db_url)
    assert second.fresh is False

    with second.db.read() as session:
        domains = session.exec(select(Domain)).scalars().all()
        accounts = session.exec(select(Account)).scalars().all()
        users = session.exec(select(User)).scalars().all()
        settings = {row.name: row for row in session.exec(select(Configuration)).scalars().all()}
    second.db.dispose()

    assert [(d.name, d.path, d.parent_id) for d in domains] == [("ROOT", "ROOT/", None)]
    assert [(a.name, a.account_type, a.domain_id) for a in accounts] == [
        ("admin", "Admin", domains[0].id)
    ]
    assert [(u.username, u.account_id) for u in users] == [("admin", accounts[0].id)]
    assert second.admin.username == "admin"
    assert second.admin.user_id == users[0].id
    assert second.admin.account_id == accounts[0].id

    shipped = tomllib.loads(
        resources.files("data").joinpath("settings.toml").read_text(encoding="utf-8")
    )["settings"]
    assert set(settings) == set(shipped)
    for name, spec in shipped.items():
        row = settings[name]
        assert (row.default_value, row.value_type, row.value) == (
            str(spec["default"]),
            spec["type"],
            None,
        ), name
        assert row.scopes == ",".join(spec.get("scopes", ())), name


def test_reopening_keeps_operator_values(cloud) -> None:
    url = cloud.db.url
    with cloud.db.write() as session:
        row = session.get(Configuration, "cpu.overprovisioning.factor")
        row.value = "3.0"
        session.add(row)
    cloud.db.dispose()
    reopened = open_cloud(url)
    with reopened.db.read() as session:
        assert session.get(Configuration, "cpu.overprovisioning.factor").value == "3.0"
        assert session.scalar(select(func.count()).select_from(Domain)) == 1
    reopened.db.dispose()


# --- two processes opening one new database ----------------------------------------------


def _opener(url: str, start, results) -> None:
    try:
        start.wait()
        cloud = open_cloud(url)
        cloud.db.dispose()
        results.put(("ok", cloud.fresh))
    except BaseException:
        results.put(("error", traceback.format_exc()))
        raise


@pytest.mark.slow
def test_three_processes_opening_a_new_database_at_once(db_url: str) -> None:
    """All succeed: one migrates and creates ROOT/admin, the others wait and find them."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(db_url, start, results)) for _ in range(3)]
    for proc in procs:
        proc.start()
    start.set()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)

    errors = [detail for status, detail in outcomes if status != "ok"]
    assert not errors, "\n".join(errors)
    assert sorted(fresh for _, fresh in outcomes) == [False, False, True]

    db = Database(db_url)
    try:
        assert current_revision(db) == head_revision()
        with db.read() as session:
            assert session.scalar(select(func.count()).select_from(Domain)) == 1
            assert session.scalar(select(func.count()).select_from(User)) == 1
    finally:
        db.dispose()
