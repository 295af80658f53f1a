"""Opening a cloud: connect, migrate, seed settings, make sure ROOT and admin exist."""

from __future__ import annotations

from dataclasses import dataclass

from engine.accounts import admin_caller, ensure_root_objects
from engine.context import Caller
from engine.db import Database, database_from_environment
from engine.schema import check_not_newer, upgrade
from engine.settings import seed_settings


@dataclass(frozen=True)
class Cloud:
    db: Database
    admin: Caller
    # True when this open created the database's first objects (a brand-new cloud).
    fresh: bool


def open_cloud(url: str | None = None, *, migrate: bool = True) -> Cloud:
    """Open the database at `url` (else the configured one) ready for services."""
    db = url if isinstance(url, Database) else database_from_environment(url)
    db.check_connection()
    if migrate:
        upgrade(db)
    else:
        check_not_newer(db)
    with db.write() as session:
        db.serialise_startup(session)
        seed_settings(session)
        fresh = ensure_root_objects(session)
    return Cloud(db=db, admin=admin_caller(db), fresh=fresh)
