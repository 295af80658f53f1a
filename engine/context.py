"""The caller context every service takes: which database, and who is acting."""

from __future__ import annotations

from dataclasses import dataclass

from engine.db import Database


@dataclass(frozen=True)
class Caller:
    """Who performs an operation. Services record it in the audit log.

    The console acts as the admin user created on init; roles and API keys will narrow
    what a caller may do without changing any service signature.
    """

    db: Database
    username: str
    user_id: int | None = None
    account_id: int | None = None
    domain_id: int | None = None
    is_admin: bool = True
