"""What the sender knows of each claimed delivery's employee, read again at send time (SQL only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.sending.batches import DeliveryOutcome
from bot.sending.claims import Held
from bot.sending.outcomes import Skip, SkipKind
from bot.sending.recipients import send_time_check
from models import Account, Delivery, DeliveryStatus, Employee, full_name

_ACCOUNTS = Account.__table__
_DELIVERIES = Delivery.__table__
_EMPLOYEES = Employee.__table__


@dataclass(frozen=True)
class Target:
    """What a worker knows about one employee; no ORM objects cross transactions."""

    delivery_id: int
    fence: int
    """The fencing token of this runner's claim (see `bot.sending.claims`)."""
    account_id: int | None
    employee_number: str
    first_name: str
    name: str
    address: str | None
    username: str | None
    bypass_bounce_list: bool = False
    """The admin confirmed the address although it is on SendGrid's bounce list."""
    time_zone: str | None = None
    """The employee's own (None: DEFAULT_TIME_ZONE): the emails show times in it."""

    @property
    def held(self) -> Held:
        return Held(self.delivery_id, self.fence)

    def outcome(self, status: DeliveryStatus, error: str | None) -> DeliveryOutcome:
        return DeliveryOutcome(
            self.delivery_id, self.employee_number, self.name, self.username, self.address, status, error
        )


def read_targets(
    session: Session, delivery_ids: Sequence[int], fences: dict[int, int] | None = None
) -> list[tuple[Target, str | None, Skip | None]]:
    """(target, the employee's address now, why they cannot be mailed now or None) per delivery."""
    rows = session.execute(
        select(
            _DELIVERIES.c.id,
            _DELIVERIES.c.email_address,
            _DELIVERIES.c.confirmed_emailed_at,
            _ACCOUNTS.c.credentials_emailed_at,
            _DELIVERIES.c.bypass_bounce_list,
            _EMPLOYEES.c.employee_number,
            _EMPLOYEES.c.first_name,
            _EMPLOYEES.c.last_name,
            _EMPLOYEES.c.email,
            _EMPLOYEES.c.personal_email,
            _EMPLOYEES.c.time_zone,
            _EMPLOYEES.c.active,
            _ACCOUNTS.c.id,
            _ACCOUNTS.c.username,
            _ACCOUNTS.c.status,
        )
        .select_from(
            _DELIVERIES.join(_EMPLOYEES, _EMPLOYEES.c.id == _DELIVERIES.c.employee_id).outerjoin(
                _ACCOUNTS, _ACCOUNTS.c.employee_id == _EMPLOYEES.c.id
            )
        )
        .where(_DELIVERIES.c.id.in_(delivery_ids))
        .order_by(_DELIVERIES.c.id)
    ).all()
    found: list[tuple[Target, str | None, Skip | None]] = []
    since = []
    for (
        delivery_id,
        confirmed,
        emailed_confirmed,
        emailed,
        bypass,
        number,
        first,
        last,
        raw,
        personal,
        time_zone,
        active,
        account_id,
        username,
        status,
    ) in rows:
        address, problem = send_time_check(active, status, raw, personal, confirmed)
        if problem is None and _emailed_since(emailed, emailed_confirmed):
            since.append(len(found))
        target = Target(
            delivery_id=delivery_id,
            fence=(fences or {}).get(delivery_id, 0),
            account_id=account_id,
            employee_number=number,
            first_name=first,
            name=full_name(first, last),
            address=confirmed,
            username=username,
            bypass_bounce_list=bypass,
            time_zone=time_zone,
        )
        found.append((target, address, None if problem is None else Skip(SkipKind.UNMAILABLE, problem)))
    for index in since:  # rare: each one looks up the batch that emailed the employee
        target, address, _ = found[index]
        found[index] = (target, address, Skip(SkipKind.EMAILED_SINCE, _emailed_by(session, target)))
    return found


def _emailed_since(emailed: datetime | None, confirmed: datetime | None) -> bool:
    """Whether the account was emailed after what the admin was shown (`confirmed`, None: never)."""
    return emailed is not None and (confirmed is None or emailed > confirmed)


def _emailed_by(session: Session, target: Target) -> str:
    """The number of the batch whose email last reached the account (for EMAILED_SINCE)."""
    batch_id = session.scalar(
        select(_DELIVERIES.c.batch_id)
        .where(
            _DELIVERIES.c.account_id == target.account_id,
            _DELIVERIES.c.welcome_sent_at.is_not(None),
            _DELIVERIES.c.id != target.delivery_id,
        )
        .order_by(_DELIVERIES.c.welcome_sent_at.desc())
        .limit(1)
    )
    return f"#{batch_id}" if batch_id is not None else "(unknown)"
