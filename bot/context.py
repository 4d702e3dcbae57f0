"""The process's shared resources: settings, the database session factory and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock, SystemClock
from bot.settings import Settings, get_settings
from models import make_engine, make_session_factory


@dataclass(frozen=True)
class Context:
    """What every service needs; built once per process (or per test)."""

    settings: Settings
    sessions: sessionmaker[Session]
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Context:
        settings = settings or get_settings()
        engine = make_engine(settings.database_url, pool_size=settings.mail_concurrency + 8)
        return cls(settings=settings, sessions=make_session_factory(engine))
