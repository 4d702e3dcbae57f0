"""Scheduled batches under the faults of unattended sending: a worker killed just before the moment, Redis
flushed between scheduling and the moment, two workers at the moment, a cancel racing the moment, and
an address change and a termination before it.

Processes are real (`credbot worker` subprocesses on Redis with a namespace of this test's own, the
database, the SendGrid stand-in); the clock is the system's, with moments a few seconds ahead. Each test
checks every employee: emailed once, never before their moment, or skipped with the reason.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot import jobs
from bot.context import Context
from bot.leavers import record_leavers
from bot.sending import schedule
from bot.sending.addresses import AddressRule
from bot.sending.jobs import schedule_and_enqueue
from bot.sending.outcomes import ADDRESS_CHANGED
from bot.sending.recipients import preview
from bot.sending.schedule import Moment, Schedule, When
from models import BatchSource, BatchStatus, CredentialBatch, Delivery, DeliveryStatus, Employee
from tests.builders import add_employee_rows
from tests.standins.sendgrid import SendGridStandIn
from tests.test_send_engine import check_promise, cli_env
from tests.test_send_faults import start_worker, stop
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
AHEAD = 12.0
"""Seconds from scheduling to the moment: a worker process starts well within it on a loaded machine."""


def schedule_ahead(
    ctx: Context, employees: Sequence[Employee], redis_url: str, namespace: str, ahead: float = AHEAD
) -> tuple[int, datetime, dict[str, str]]:
    """A batch for `employees` due `ahead` seconds from now, scheduled as the CLI does (the wake through
    the outbox onto Redis); (its id, the moment, the workers' environment)."""
    jobs.configure(ctx, redis_url=redis_url, namespace=namespace, in_process=False)
    moment = (datetime.now(UTC) + timedelta(seconds=ahead)).replace(microsecond=0)
    plan = Schedule(When.AT, moment.time().replace(second=0), moment.date(), "UTC")
    ids = [e.id for e in employees]
    with ctx.sessions() as session:
        shown = preview(session, ids, AddressRule.of(ctx.settings, ctx.clock.now()))
    batch_id, queued = schedule_and_enqueue(
        ctx,
        ids,
        "cli:tester",
        BatchSource.CLI,
        plan,
        {i: Moment(moment, "UTC") for i in ids},
        confirmed={r.employee_id: r.address for r in shown},
        confirmed_emailed={r.employee_id: r.last_emailed_at for r in shown},
    )
    assert queued
    return batch_id, moment, {"REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace, "MAIL_CONCURRENCY": "4"}


def ended(ctx: Context, batch_id: int) -> bool:
    with ctx.sessions() as check:
        return check.get_one(CredentialBatch, batch_id).status in (BatchStatus.FINISHED, BatchStatus.ABORTED)


def check_at_the_moment(
    ctx: Context, standin: SendGridStandIn, employees: Sequence[Employee], moment: datetime
) -> dict[str, tuple[str, str | None]]:
    """Every employee emailed once at most (the promise), nobody before the moment; each delivery's
    (status, reason) by employee number."""
    copies = check_promise(ctx, standin, list(employees))
    assert set(copies.values()) <= {0, 1}, {a: n for a, n in copies.items() if n > 1}
    with ctx.sessions() as check:
        rows = check.execute(
            sa.select(
                Employee.employee_number, Delivery.status, Delivery.error, Delivery.welcome_sent_at
            ).join(Employee, Employee.id == Delivery.employee_id)
        ).all()
    early = [number for number, _, _, sent_at in rows if sent_at is not None and sent_at < moment]
    assert early == [], "emailed before their moment"
    sent = sum(1 for _, status, _, _ in rows if status == DeliveryStatus.SENT)
    assert sent == sum(copies.values())
    return {number: (str(status), error) for number, status, error, _ in rows}


def test_a_worker_killed_just_before_the_moment_loses_nothing(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    employees = add_employee_rows(session, 20)
    batch_id, moment, extra = schedule_ahead(context, employees, redis_server_url, redis_namespace)
    env = cli_env(context, sendgrid_standin, **extra)
    first = start_worker(env, tmp_path, "first")
    second = None
    try:
        time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds() - 1.0))
        assert sendgrid_standin.messages == []
        first.send_signal(signal.SIGKILL)  # the wake it held for the moment dies with it
        first.wait(10)
        second = start_worker(env, tmp_path, "second")
        wait_until(lambda: ended(context, batch_id), 180, "the other worker to send the batch")
    finally:
        stop(first)
        if second is not None:
            stop(second)
    found = check_at_the_moment(context, sendgrid_standin, employees, moment)
    assert {status for status, _ in found.values()} == {DeliveryStatus.SENT}


def test_redis_flushed_between_scheduling_and_the_moment_loses_nothing(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    employees = add_employee_rows(session, 20)
    batch_id, moment, extra = schedule_ahead(context, employees, redis_server_url, redis_namespace)
    env = cli_env(context, sendgrid_standin, **extra)
    worker = start_worker(env, tmp_path, "worker")
    try:
        time.sleep(2.0)
        client = redis.Redis.from_url(redis_server_url)  # only this test's keys: the server is shared
        flushed = [name for name in client.scan_iter(match=f"{redis_namespace}*", count=500)]
        if flushed:
            client.delete(*flushed)
        client.close()
        wait_until(lambda: ended(context, batch_id), 180, "the batch to be sent")
    finally:
        stop(worker)
    found = check_at_the_moment(context, sendgrid_standin, employees, moment)
    assert {status for status, _ in found.values()} == {DeliveryStatus.SENT}


def test_two_workers_send_each_employee_once_at_the_moment_and_skip_what_changed(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    employees = add_employee_rows(session, 40)
    batch_id, moment, extra = schedule_ahead(context, employees, redis_server_url, redis_namespace)
    moved, leaver = employees[0], employees[1]
    with context.sessions.begin() as change:  # between scheduling and the moment
        change.execute(sa.update(Employee).where(Employee.id == moved.id).values(email="moved@example.com"))
        change.execute(sa.update(Employee).where(Employee.id == leaver.id).values(active=False))
        record_leavers(change, "cli:hr", [leaver.employee_number])
    env = cli_env(context, sendgrid_standin, **extra)
    workers = [start_worker(env, tmp_path, name) for name in ("first", "second")]
    try:
        wait_until(lambda: ended(context, batch_id), 180, "the batch to be sent")
    finally:
        for worker in workers:
            stop(worker)
    found = check_at_the_moment(context, sendgrid_standin, employees[2:], moment)
    assert found.pop(moved.employee_number) == ("skipped", ADDRESS_CHANGED)
    assert found.pop(leaver.employee_number) == ("skipped", schedule.LEFT)
    assert {status for status, _ in found.values()} == {DeliveryStatus.SENT}
    assert sendgrid_standin.sent_to("moved@example.com") == []


def test_a_cancel_racing_the_moment_sends_each_employee_once_or_not_at_all(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    employees = add_employee_rows(session, 40)
    sendgrid_standin.delay = 0.1
    batch_id, moment, extra = schedule_ahead(context, employees, redis_server_url, redis_namespace)
    env = cli_env(context, sendgrid_standin, **extra)
    workers = [start_worker(env, tmp_path, name) for name in ("first", "second")]
    try:
        time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))  # the tick and the wake race it
        with context.sessions.begin() as change:
            schedule.cancel(change, batch_id, "cli:tester")
        wait_until(lambda: ended(context, batch_id), 180, "the batch to end")
    finally:
        for worker in workers:
            stop(worker)
    found = check_at_the_moment(context, sendgrid_standin, employees, moment)
    assert {status for status, _ in found.values()} <= {DeliveryStatus.SENT, DeliveryStatus.SKIPPED}
    skipped = [reason for status, reason in found.values() if status == DeliveryStatus.SKIPPED]
    assert skipped, "the cancel came before most could be sent"
    assert set(skipped) <= {schedule.CANCELLED, f"not sent: {schedule.CANCELLED}"}
    with context.sessions() as check:
        assert check.get_one(CredentialBatch, batch_id).status == BatchStatus.ABORTED
