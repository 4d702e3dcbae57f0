"""This installation's id, carried by every email so that only its own delivery events count.

CREDBOT_INSTANCE names it; unset, a random id is made in the database on first use (one row, id 1, so
concurrent first uses agree). The row's `created_at` also dates the change to namespaced custom args:
deliveries created before it went out with the old `batch_id` and `delivery_id` args.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.settings import Settings
from models import Installation


@dataclass(frozen=True)
class Identity:
    instance_id: str
    """What the emails carry as `credbot_instance`."""
    installed_at: datetime
    """Deliveries created before this were sent with the old custom args."""


_known: weakref.WeakKeyDictionary[sessionmaker[Session], Identity] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def identity(settings: Settings, sessions: sessionmaker[Session], clock: Clock) -> Identity:
    """This installation's identity, made in the database on first use (then kept per process)."""
    with _lock:
        known = _known.get(sessions)
    if known is None:
        known = _load_or_make(sessions, clock)
        with _lock:
            _known[sessions] = known
    if settings.credbot_instance:
        return Identity(settings.credbot_instance, known.installed_at)
    return known


def _load_or_make(sessions: sessionmaker[Session], clock: Clock) -> Identity:
    with sessions.begin() as session:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        row = {"id": 1, "instance_id": secrets.token_hex(8), "created_at": clock.now()}
        session.execute(insert(Installation).values(row).on_conflict_do_nothing(index_elements=["id"]))
        instance_id, created_at = session.execute(
            select(Installation.instance_id, Installation.created_at).where(Installation.id == 1)
        ).one()
    return Identity(instance_id, created_at)


BATCH_ARG = "credbot_batch"
DELIVERY_ARG = "credbot_delivery"
INSTANCE_ARG = "credbot_instance"
LEGACY_BATCH_ARG = "batch_id"
LEGACY_DELIVERY_ARG = "delivery_id"
"""What emails sent before the namespaced args carried (accepted only for those, by message id)."""


def custom_args(instance_id: str, batch_id: int, delivery_id: int) -> dict[str, str]:
    """The custom args of a credential email: which installation, batch and delivery it belongs to."""
    return {INSTANCE_ARG: instance_id, BATCH_ARG: str(batch_id), DELIVERY_ARG: str(delivery_id)}
