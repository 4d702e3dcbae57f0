"""Who may use credbot: the admins table plus ADMIN_SLACK_USER_IDS for bootstrapping."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.audit import AuditAction, record
from models import Admin

SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,31}")
"""A Slack user id (U012AB3CD; W... on Enterprise Grid), upper case; match it with `fullmatch`."""


class AdminError(ValueError):
    """A request about admins that cannot be carried out; the message says why."""


def is_admin(session: Session, slack_user_id: str, bootstrap_ids: set[str]) -> bool:
    """True when the Slack user may use credbot."""
    if slack_user_id in bootstrap_ids:
        return True
    return session.scalar(select(Admin.id).where(Admin.slack_user_id == slack_user_id)) is not None


def add_admin(session: Session, slack_user_id: str, actor: str, name: str | None = None) -> Admin:
    """Allow a Slack user to use credbot; audited."""
    slack_user_id = slack_user_id.strip().upper()
    if not SLACK_USER_ID.fullmatch(slack_user_id):
        raise AdminError(f"{slack_user_id!r} is not a Slack user id (it looks like U012AB3CD)")
    if session.scalar(select(Admin).where(Admin.slack_user_id == slack_user_id)):
        raise AdminError(f"{slack_user_id} is already an admin")
    admin = Admin(slack_user_id=slack_user_id, name=name, added_by=actor)
    session.add(admin)
    record(session, actor, AuditAction.ADMIN_ADDED, slack_user_id, name=name)
    return admin


def remove_admin(session: Session, slack_user_id: str, actor: str) -> None:
    """Stop a Slack user from using credbot; audited."""
    slack_user_id = slack_user_id.strip().upper()
    admin = session.scalar(select(Admin).where(Admin.slack_user_id == slack_user_id))
    if admin is None:
        raise AdminError(f"{slack_user_id} is not an admin")
    session.delete(admin)
    record(session, actor, AuditAction.ADMIN_REMOVED, slack_user_id)


def list_admins(session: Session) -> list[Admin]:
    return list(session.scalars(select(Admin).order_by(Admin.slack_user_id)))
