"""Fencing tokens on claims and endings, at the SQL level: two runners, one database, times passed in
(no sleeps, no threads)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.audit import AuditAction
from bot.context import Context
from bot.sending import claims, endings, runs
from bot.sending.batches import start_batch
from bot.sending.claims import Held
from bot.sending.targets import read_targets
from models import (
    Account,
    AuditEvent,
    BatchSource,
    BatchStatus,
    CredentialBatch,
    CredentialMode,
    Delivery,
    DeliveryStatus,
    utcnow,
)
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


def _sent(session: Session, held: Held) -> endings.Ending:
    """The ending of a delivery whose emails both went out (no credential: only the fencing is tested)."""
    ((target, _, _),) = read_targets(session, [held.delivery_id], {held.delivery_id: held.fence})
    return endings.Ending(
        target, DeliveryStatus.SENT, None, AuditAction.CREDENTIALS_SENT, None, None, True, "m1"
    )


def test_only_the_current_claims_ending_is_written_and_it_ends_the_batch(
    context: Context, session: Session
) -> None:
    employee = add_employee(session, "1")
    session.commit()
    batch_id = start_batch(context, [employee.id], "cli:tester", BatchSource.CLI)
    batch = endings.Batch(batch_id, "cli:tester", CredentialMode.PASSWORD)
    now = utcnow()
    with context.sessions.begin() as tx:
        (first,), _ = claims.claim(tx, batch_id, "runner-a", now, now + LEASE, 64)
    later = now + LEASE + timedelta(seconds=1)
    with context.sessions.begin() as tx:
        (second,), _ = claims.claim(tx, batch_id, "runner-b", later, later + LEASE, 64)
    with context.sessions.begin() as tx:
        assert endings.write(tx, batch, [_sent(tx, first)], later) == set()  # runner-a's is late
        assert not runs.finish_if_done(tx, batch_id, batch.actor)  # runner-b's delivery is in flight
    with context.sessions.begin() as tx:
        assert endings.write(tx, batch, [_sent(tx, second)], later) == {second.delivery_id}
        assert runs.finish_if_done(tx, batch_id, batch.actor)
        assert not runs.finish_if_done(tx, batch_id, batch.actor)  # ended once
    with context.sessions() as check:
        delivery = check.get_one(Delivery, first.delivery_id)
        assert delivery.status == DeliveryStatus.SENT and delivery.username_message_id == "m1"
        assert check.query(Account).one().sending_delivery_id is None
        assert check.get_one(CredentialBatch, batch_id).status == BatchStatus.FINISHED
        actions = check.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id))
        assert list(actions) == [
            AuditAction.BATCH_STARTED,
            AuditAction.CREDENTIALS_SUPERSEDED,
            AuditAction.CREDENTIALS_SENT,
            AuditAction.BATCH_FINISHED,
        ]
