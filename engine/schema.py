"""Schema versions: Alembic migrations shipped in the package, applied on start.

A database migrated by a newer Stratus (a revision this code does not know) is refused:
running old code on a newer schema silently corrupts data.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError

from engine.db import Database, redacted
from engine.errors import SchemaTooNew


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "engine:migrations")
    return config


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations must have one head, found {heads}"
    return heads[0]


def current_revision(db: Database) -> str | None:
    try:
        with db.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise db.unavailable(exc) from exc


def check_not_newer(db: Database) -> None:
    current = current_revision(db)
    if current is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaTooNew(
            f"database {redacted(db.url)} has schema revision {current}, which this Stratus "
            f"does not know (it knows up to {head_revision()}): the database was upgraded by "
            "a newer Stratus; run that version, or point --db at another database"
        )


def upgrade(db: Database) -> tuple[str | None, str]:
    """Bring the schema to head; returns (revision before, revision after)."""
    check_not_newer(db)
    before = current_revision(db)
    config = alembic_config()
    # IMMEDIATE on SQLite: two processes starting together migrate one after the other.
    with db.engine.connect().execution_options(stratus_begin="IMMEDIATE") as conn, conn.begin():
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return before, head_revision()


def generate_revision(message: str) -> None:
    """Autogenerate a migration from the models against a scratch database at head.

    For developers: `python -m engine.schema revision "what changed"`; review the file.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{scratch}/scratch.db")
        upgrade(db)
        config = alembic_config()
        number = int(head_revision()) + 1
        with db.engine.connect() as conn, conn.begin():
            config.attributes["connection"] = conn
            command.revision(config, message=message, autogenerate=True, rev_id=f"{number:04d}")
        db.dispose()


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        raise SystemExit('usage: python -m engine.schema revision "message"')
    generate_revision(sys.argv[2])
