"""Claims and leases on deliveries and their accounts, with fencing tokens: the SQL only, no threads.

A claim raises the delivery's `fence` and hands the new value to the runner (a `Held`). Every later
write of that runner about the delivery (its ending, the promotion of its credential, a lease
renewal, a release) names the token and takes effect only while the delivery still carries it: a
runner that lost its claim (stalled past its lease, another runner took the delivery) changes nothing.
`current` locks the deliveries being ended, so whether a token is current is decided in the database,
under the claim, and stays so until the ending commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, or_, select, tuple_, update
from sqlalchemy.orm import Session

from bot.chunks import chunks
from models import Account, Delivery, DeliveryStatus, rowcount

_ACCOUNTS = Account.__table__
_DELIVERIES = Delivery.__table__

CLAIM_GROUP = 64
"""Deliveries claimed (and credentials stored) per transaction; their leases are renewed until sent."""


class Held(NamedTuple):
    """A delivery as claimed: its id and the fencing token the claim returned."""

    delivery_id: int
    fence: int


def _tokens(held: Iterable[Held]) -> list[tuple[int, int]]:
    return [(h.delivery_id, h.fence) for h in held]


def claim(
    session: Session, batch_id: int, runner_id: str, now: datetime, until: datetime, limit: int
) -> tuple[list[Held], set[int]]:
    """Claim up to `limit` deliveries of the batch (pending, or sending under an expired lease) and their
    accounts until `until`: (the claims with their new tokens, ids of the deliveries whose account the
    claim holds; the others' accounts are held by another delivery)."""
    claimable = or_(
        _DELIVERIES.c.status == DeliveryStatus.PENDING,
        and_(_DELIVERIES.c.status == DeliveryStatus.SENDING, _DELIVERIES.c.lease_until < now),
    )
    # Picked apart from the UPDATE: as its subquery, PostgreSQL may run a SKIP LOCKED pick more than
    # once and claim more rows than the limit.
    picked = list(
        session.scalars(
            select(_DELIVERIES.c.id)
            .where(_DELIVERIES.c.batch_id == batch_id, claimable)
            .order_by(_DELIVERIES.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL: runners pick different rows
        )
    )
    if not picked:
        return [], set()
    claimed = sorted(
        Held(delivery_id, fence)
        for delivery_id, fence in session.execute(
            update(_DELIVERIES)
            .where(_DELIVERIES.c.id.in_(picked), claimable)
            .values(
                status=DeliveryStatus.SENDING,
                lease_until=until,
                claimed_by=runner_id,
                fence=_DELIVERIES.c.fence + 1,
            )
            .returning(_DELIVERIES.c.id, _DELIVERIES.c.fence)
        )
    )
    if not claimed:
        return [], set()
    ids = [h.delivery_id for h in claimed]
    held = set(
        session.scalars(
            update(_ACCOUNTS)
            .where(
                _ACCOUNTS.c.employee_id == _DELIVERIES.c.employee_id,
                _DELIVERIES.c.id.in_(ids),
                or_(
                    _ACCOUNTS.c.sending_until.is_(None),
                    _ACCOUNTS.c.sending_until < now,
                    _ACCOUNTS.c.sending_delivery_id == _DELIVERIES.c.id,
                ),
            )
            .values(sending_delivery_id=_DELIVERIES.c.id, sending_until=until)
            .returning(_ACCOUNTS.c.sending_delivery_id)
        )
    )
    return claimed, held


def current(session: Session, held: Sequence[Held]) -> set[int]:
    """Lock the deliveries of `held` whose token is still current (still SENDING under it): their ids.

    Until the transaction ends no claim can take them (claims skip locked rows), so the caller's
    ending, promotion and release of the account are the claim's last word.
    """
    found: set[int] = set()
    for chunk in chunks(list(held)):
        found.update(
            session.scalars(
                select(_DELIVERIES.c.id)
                .where(
                    tuple_(_DELIVERIES.c.id, _DELIVERIES.c.fence).in_(_tokens(chunk)),
                    _DELIVERIES.c.status == DeliveryStatus.SENDING,
                )
                .order_by(_DELIVERIES.c.id)
                .with_for_update()
            )
        )
    return found


def renew(session: Session, held: Sequence[Held], until: datetime) -> set[int]:
    """Renew the leases of `held` (deliveries and accounts) whose token is still current; the ids of
    those that are not (another runner claimed them, or they ended).

    SKIP LOCKED (PostgreSQL; nothing on SQLite, which locks whole databases): a row the group writer
    holds is being ended, so the renewal leaves it rather than wait for it. Waiting deadlocked: the
    writer takes deliveries, then accounts; no order of the renewal's own avoids that cycle.
    """
    lost: set[int] = set()
    for chunk in chunks(list(held)):
        tokens = {h.delivery_id: h.fence for h in chunk}
        rows = session.execute(
            select(_DELIVERIES.c.id, _DELIVERIES.c.fence, _DELIVERIES.c.status).where(
                _DELIVERIES.c.id.in_(list(tokens))
            )
        )
        lost.update(
            delivery_id
            for delivery_id, fence, status in rows
            if fence != tokens[delivery_id] or status != DeliveryStatus.SENDING
        )
        mine = [(i, f) for i, f in tokens.items() if i not in lost]
        if not mine:
            continue
        free = (
            select(_DELIVERIES.c.id)
            .where(
                tuple_(_DELIVERIES.c.id, _DELIVERIES.c.fence).in_(mine),
                _DELIVERIES.c.status == DeliveryStatus.SENDING,
            )
            .with_for_update(skip_locked=True)
        )
        renewed = list(
            session.scalars(
                update(_DELIVERIES)
                .where(_DELIVERIES.c.id.in_(free.scalar_subquery()))
                .values(lease_until=until)
                .returning(_DELIVERIES.c.id)
            )
        )
        if renewed:
            accounts = (
                select(_ACCOUNTS.c.id)
                .where(_ACCOUNTS.c.sending_delivery_id.in_(renewed))
                .with_for_update(skip_locked=True)
            )
            session.execute(
                update(_ACCOUNTS)
                .where(_ACCOUNTS.c.id.in_(accounts.scalar_subquery()))
                .values(sending_until=until)
            )
    return lost


def let_go_accounts(session: Session, account_delivery: Sequence[tuple[int, int]]) -> None:
    """Let go of accounts (account id, the delivery holding it) whose delivery ended or was released."""
    if account_delivery:  # an account is only ever held by a delivery for its own employee: one statement
        session.execute(
            update(_ACCOUNTS)
            .where(
                _ACCOUNTS.c.id.in_([account_id for account_id, _ in account_delivery]),
                _ACCOUNTS.c.sending_delivery_id.in_([delivery_id for _, delivery_id in account_delivery]),
            )
            .values(sending_delivery_id=None, sending_until=None)
        )


def expire(session: Session, runner_id: str, now: datetime) -> None:
    """Make a runner's claims free to take at once (after a crash)."""
    session.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.claimed_by == runner_id, _DELIVERIES.c.status == DeliveryStatus.SENDING)
        .values(lease_until=now)
    )


def release_orphans(session: Session, batch_id: int, runner_id: str) -> int:
    """Deliveries a runner claimed without knowing it (the connection dropped as the claim committed, and
    the retry claimed others): nothing was sent for them, so they go back to pending; how many."""
    released = session.execute(
        update(_DELIVERIES)
        .where(
            _DELIVERIES.c.batch_id == batch_id,
            _DELIVERIES.c.claimed_by == runner_id,
            _DELIVERIES.c.status == DeliveryStatus.SENDING,
            _DELIVERIES.c.welcome_sent_at.is_(None),
        )
        .values(status=DeliveryStatus.PENDING, lease_until=None)
    )
    return rowcount(released)


def attach_accounts(session: Session, delivery_ids: Sequence[int]) -> None:
    """Deliveries about to be sent: each notes its employee's account, and counts one more attempt."""
    account_of = (
        select(_ACCOUNTS.c.id).where(_ACCOUNTS.c.employee_id == _DELIVERIES.c.employee_id).scalar_subquery()
    )
    session.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id.in_(list(delivery_ids)))
        .values(account_id=account_of, attempts=_DELIVERIES.c.attempts + 1)
    )
