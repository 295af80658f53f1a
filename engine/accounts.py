"""Domains, accounts and users. Init creates the ROOT domain and the admin account."""

from __future__ import annotations

from sqlmodel import Session, select

from engine.context import Caller
from engine.db import Database
from engine.models import Account, AccountType, Domain, User

ROOT_DOMAIN = "ROOT"
ADMIN_ACCOUNT = "admin"
ADMIN_USER = "admin"


def ensure_root_objects(session: Session) -> bool:
    """Create ROOT, the admin account and the admin user if missing; True if created."""
    root = session.exec(select(Domain).where(Domain.parent_id.is_(None))).first()  # type: ignore[union-attr]
    if root is not None:
        return False
    root = Domain(name=ROOT_DOMAIN, path=f"{ROOT_DOMAIN}/")
    session.add(root)
    session.flush()
    admin = Account(name=ADMIN_ACCOUNT, domain_id=root.id, account_type=AccountType.ADMIN)
    session.add(admin)
    session.flush()
    session.add(User(username=ADMIN_USER, account_id=admin.id, first_name="Admin"))
    return True


def admin_caller(db: Database) -> Caller:
    """The caller the console and the CLI act as."""
    with db.read() as session:
        row = session.exec(
            select(User, Account)
            .join(Account, Account.id == User.account_id)
            .where(User.username == ADMIN_USER)
        ).first()
    if row is None:
        return Caller(db=db, username="system")
    user, account = row
    return Caller(
        db=db,
        username=user.username,
        user_id=user.id,
        account_id=account.id,
        domain_id=account.domain_id,
        is_admin=True,
    )
