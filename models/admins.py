"""Slack users allowed to use credbot."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow


class Admin(Base):
    """A Slack user allowed to create accounts and email credentials."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(primary_key=True)
    slack_user_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    added_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Admin {self.slack_user_id}>"


class HomeView(Base):
    """A Slack user's App Home as credbot last published it: when they last opened it (to republish it
    while they may be looking), and the view's hash (views.publish refuses a stale one)."""

    __tablename__ = "home_views"

    slack_user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    opened_at: Mapped[datetime | None] = mapped_column(index=True)
    view_hash: Mapped[str | None] = mapped_column(String(100))
