"""Who has App Home open, and the hash of the view each was last shown, across processes (the database).

A batch that finishes republishes App Home for the admins who opened it within RECENTLY_OPENED, so
its figures are current while they may be looking. The hash makes a publish conditional: Slack refuses
one built from a view older than what is shown (`hash_conflict`), and the publisher rebuilds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from models.admins import HomeView

RECENTLY_OPENED = timedelta(minutes=30)


def _upsert(session: Session, user_id: str, **values: Any) -> None:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(HomeView).values(slack_user_id=user_id, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["slack_user_id"], set_=values))


def remember_opened(sessions: sessionmaker[Session], user_id: str, now: datetime) -> None:
    with sessions.begin() as session:
        _upsert(session, user_id, opened_at=now)


def remember_published(sessions: sessionmaker[Session], user_id: str, view_hash: str | None) -> None:
    with sessions.begin() as session:
        _upsert(session, user_id, view_hash=view_hash)


def home_hash(sessions: sessionmaker[Session], user_id: str) -> str | None:
    with sessions() as session:
        return session.scalar(select(HomeView.view_hash).where(HomeView.slack_user_id == user_id))


def recent_viewers(sessions: sessionmaker[Session], now: datetime) -> list[str]:
    """The users who opened App Home within RECENTLY_OPENED of `now`."""
    with sessions() as session:
        query = select(HomeView.slack_user_id).where(HomeView.opened_at >= now - RECENTLY_OPENED)
        return list(session.scalars(query.order_by(HomeView.slack_user_id)))
