"""Fencing tokens on claims, at the SQL level: two runners, one database, times passed in (no sleeps)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from bot.context import Context
from bot.sending import claims
from bot.sending.batches import start_batch
from models import Account, BatchSource, Delivery, DeliveryStatus, utcnow
from tests.builders import add_employee

LEASE = timedelta(seconds=60)


def test_a_claim_taken_over_after_its_lease_fences_out_the_first_runner(
    context: Context, session: Session
) -> None:
    employee = add_employee(session, "1")
    session.commit()
    batch_id = start_batch(context, [employee.id], "cli:tester", BatchSource.CLI)
    now = utcnow()
    with context.sessions.begin() as tx:
        (first,), held = claims.claim(tx, batch_id, "runner-a", now, now + LEASE, 64)
    assert held == {first.delivery_id}
    later = now + LEASE + timedelta(seconds=1)  # runner-a stalled past its lease
    with context.sessions.begin() as tx:
        (second,), held = claims.claim(tx, batch_id, "runner-b", later, later + LEASE, 64)
    assert second.delivery_id == first.delivery_id and second.fence == first.fence + 1
    assert held == {second.delivery_id}  # the account's lease ran out too: runner-b holds it
    with context.sessions.begin() as tx:
        assert claims.current(tx, [first]) == set()  # runner-a's ending would be superseded
        assert claims.renew(tx, [first], later + LEASE) == {first.delivery_id}  # and its renewal too
    with context.sessions.begin() as tx:
        assert claims.current(tx, [second]) == {second.delivery_id}
        assert claims.renew(tx, [second], later + 2 * LEASE) == set()
    with context.sessions() as check:
        delivery = check.get_one(Delivery, first.delivery_id)
        account = check.query(Account).one()
        assert delivery.status == DeliveryStatus.SENDING and delivery.claimed_by == "runner-b"
        assert delivery.lease_until == later + 2 * LEASE
        assert account.sending_until == later + 2 * LEASE  # renewed by runner-b, not by runner-a


def test_a_claim_within_its_lease_is_not_taken(context: Context, session: Session) -> None:
    employee = add_employee(session, "1")
    session.commit()
    batch_id = start_batch(context, [employee.id], "cli:tester", BatchSource.CLI)
    now = utcnow()
    with context.sessions.begin() as tx:
        (first,), _ = claims.claim(tx, batch_id, "runner-a", now, now + LEASE, 64)
    with context.sessions.begin() as tx:
        assert claims.claim(tx, batch_id, "runner-b", now + LEASE / 2, now + LEASE, 64) == ([], set())
    with context.sessions.begin() as tx:
        assert claims.current(tx, [first]) == {first.delivery_id}
