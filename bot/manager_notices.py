"""Who is told that an employee's credentials went out, and what: their manager (MANAGER_NOTICES).

The manager learns who, at which address, when they start and until when the credentials work; never the
password or link. Only a manager in the directory with a Slack user id is told, once per delivery
(`claim` before posting: a notice lost to a crash is not worth a second one). `handlers.manager_notices`
posts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from bot.sending.recipients import normalise_address
from bot.settings import Settings
from bot.time_zones import local_time, zone_of
from models import (
    Account,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    Employee,
    SetupLink,
    full_name,
    rowcount,
)

NOTICES_PER_READ = 200


@dataclass(frozen=True)
class ManagerNotice:
    """One manager to tell about one employee's delivery."""

    delivery_id: int
    manager_slack_user_id: str
    name: str
    employee_number: str
    address: str
    address_kind: str
    """`work` or `personal`."""
    start_date: date | None
    expires: str | None
    """Until when the credentials work, in the employee's time zone (`Monday 7 December 2026, 17:00 GMT`)."""


def due(session: Session, settings: Settings, batch_id: int) -> list[ManagerNotice]:
    """The batch's sent deliveries whose manager has a Slack user id and was not told yet (a page); none
    with MANAGER_NOTICES off."""
    if not settings.manager_notices:
        return []
    employee, manager = aliased(Employee), aliased(Employee)
    link_expiry = (
        select(func.max(SetupLink.expires_at))
        .where(
            SetupLink.account_id == Account.id,
            SetupLink.sent_at.is_not(None),
            SetupLink.revoked_at.is_(None),
        )
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Delivery.id,
            manager.slack_user_id,
            employee.first_name,
            employee.last_name,
            employee.employee_number,
            Delivery.email_address,
            employee.email,
            employee.start_date,
            employee.time_zone,
            CredentialBatch.mode,
            Account.temp_password_expires_at,
            link_expiry,
        )
        .join(CredentialBatch, CredentialBatch.id == Delivery.batch_id)
        .join(employee, employee.id == Delivery.employee_id)
        .join(manager, manager.employee_number == employee.manager)
        .outerjoin(Account, Account.id == Delivery.account_id)
        .where(
            Delivery.batch_id == batch_id,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.manager_notified_at.is_(None),
            manager.slack_user_id.is_not(None),
            manager.active.is_(True),
        )
        .order_by(Delivery.id)
        .limit(NOTICES_PER_READ)
    ).all()
    notices = []
    for (
        delivery_id,
        slack_user_id,
        first,
        last,
        number,
        address,
        work,
        start_date,
        time_zone,
        mode,
        password_expires,
        link_expires,
    ) in rows:
        expires_at: datetime | None = link_expires if mode == "link" else password_expires
        zone = zone_of(time_zone, settings.default_time_zone)
        notices.append(
            ManagerNotice(
                delivery_id=delivery_id,
                manager_slack_user_id=str(slack_user_id),
                name=full_name(first, last),
                employee_number=number,
                address=address or "",
                address_kind="work" if work and normalise_address(work)[0] == address else "personal",
                start_date=start_date,
                expires=local_time(expires_at, zone) if expires_at else None,
            )
        )
    return notices


def claim(sessions: sessionmaker[Session], delivery_id: int, now: datetime) -> bool:
    """Mark the delivery's manager as told; False when another run told them already."""
    with sessions.begin() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.manager_notified_at.is_(None))
            .values(manager_notified_at=now)
        )
        return rowcount(result) == 1
