"""Scheduled sends (issue 19, item 4): each employee's moment across daylight saving and odd offsets, the
scheduler releasing deliveries on a ManualClock, what changed before the moment, cancelling, leavers,
the CLI. The database is the source of truth: the scheduler's tick finds due deliveries there, whatever
happened to the job queue."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot import jobs
from bot.clock import ManualClock
from bot.context import Context
from bot.leavers import record_leavers
from bot.sending import schedule
from bot.sending.addresses import AddressRule
from bot.sending.jobs import release_scheduled, schedule_and_enqueue
from bot.sending.outcomes import ADDRESS_CHANGED
from bot.sending.recipients import EMPLOYEE_INACTIVE, preview
from bot.sending.schedule import Moment, Schedule, When
from bot.time_zones import local_moment
from models import Account, BatchSource, BatchStatus, CredentialBatch, Delivery, DeliveryStatus, Employee
from tests.builders import add_employee, audit_events
from tests.cli_helpers import RunCli
from tests.credentials_helpers import outbox_messages

T = time


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- the rule: a local time to a moment ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "at", "zone", "moment"),
    [
        # Europe/London springs forward on 29 Mar 2026 at 01:00 GMT to 02:00 BST: 01:30 does not exist.
        (date(2026, 3, 29), T(1, 30), "Europe/London", utc(2026, 3, 29, 1, 0)),
        (date(2026, 3, 29), T(8, 0), "Europe/London", utc(2026, 3, 29, 7, 0)),
        # ...and falls back on 25 Oct 2026 at 02:00 BST to 01:00 GMT: 01:30 happens twice, the first is BST.
        (date(2026, 10, 25), T(1, 30), "Europe/London", utc(2026, 10, 25, 0, 30)),
        (date(2026, 10, 25), T(8, 0), "Europe/London", utc(2026, 10, 25, 8, 0)),
        # America/New_York: 8 Mar 2026 02:00 EST -> 03:00 EDT; 1 Nov 2026 02:00 EDT -> 01:00 EST.
        (date(2026, 3, 8), T(2, 30), "America/New_York", utc(2026, 3, 8, 7, 0)),
        (date(2026, 3, 8), T(3, 0), "America/New_York", utc(2026, 3, 8, 7, 0)),
        (date(2026, 11, 1), T(1, 30), "America/New_York", utc(2026, 11, 1, 5, 30)),
        (date(2026, 11, 1), T(8, 0), "America/New_York", utc(2026, 11, 1, 13, 0)),
        # Asia/Kolkata is +05:30 all year.
        (date(2026, 12, 7), T(8, 0), "Asia/Kolkata", utc(2026, 12, 7, 2, 30)),
        # Pacific/Chatham: +12:45, +13:45 in summer (from 27 Sep 2026 02:45 to 03:45: 03:00 does not exist).
        (date(2026, 7, 6), T(8, 0), "Pacific/Chatham", utc(2026, 7, 5, 19, 15)),
        (date(2026, 12, 7), T(8, 0), "Pacific/Chatham", utc(2026, 12, 6, 18, 15)),
        (date(2026, 9, 27), T(3, 0), "Pacific/Chatham", utc(2026, 9, 26, 14, 0)),
        # A start date on 29 February.
        (date(2028, 2, 29), T(8, 0), "Asia/Kolkata", utc(2028, 2, 29, 2, 30)),
        (date(2028, 2, 29), T(8, 0), "America/New_York", utc(2028, 2, 29, 13, 0)),
    ],
)
def test_a_local_time_becomes_its_moment_across_daylight_saving(
    day: date, at: time, zone: str, moment: datetime
) -> None:
    assert local_moment(day, at, zone) == moment


def test_a_moment_shows_on_the_employees_wall_clock() -> None:
    assert schedule.local_text(utc(2026, 12, 7, 8, 0), "Europe/London") == "Mon 7 Dec 08:00 GMT"
    assert schedule.local_text(utc(2026, 12, 7, 2, 30), "Asia/Kolkata") == "Mon 7 Dec 08:00 IST"
    assert schedule.local_text(utc(2026, 12, 6, 18, 15), "Pacific/Chatham") == "Mon 7 Dec 08:00 +1345"


# --- the scheduler on a ManualClock ------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(utc(2026, 3, 4, 12, 0))  # a Wednesday, before both springs forward


@pytest.fixture
def ctx(context: Context, clock: ManualClock) -> Iterator[Context]:
    """The test's context on the ManualClock, with the job layer on the stub (an in-process worker)."""
    scheduled = Context(context.settings, context.sessions, clock)
    jobs.configure(scheduled, redis_url="")
    yield scheduled
    jobs.shutdown()


def hire(session: Session, number: str, zone: str | None, start: date | None) -> Employee:
    employee = add_employee(session, number, "New", f"Hire{number}")
    employee.time_zone, employee.start_date = zone, start
    session.commit()
    return employee


def schedule_batch(
    ctx: Context, employees: Sequence[Employee], plan: Schedule
) -> tuple[int, dict[int, Moment]]:
    """Confirm `employees` under `plan` as the CLI does (what was shown is the snapshot)."""
    ids = [e.id for e in employees]
    with ctx.sessions() as session:
        shown = preview(session, ids, AddressRule.of(ctx.settings, ctx.clock.now()))
        planned = schedule.moments(session, ctx.settings, plan, ids, ctx.clock.now())
    batch_id, queued = schedule_and_enqueue(
        ctx,
        ids,
        "cli:tester",
        BatchSource.CLI,
        plan,
        planned,
        confirmed={r.employee_id: r.address for r in shown},
        confirmed_emailed={r.employee_id: r.last_emailed_at for r in shown},
    )
    assert queued
    jobs.join()
    return batch_id, planned


def tick(ctx: Context, clock: ManualClock, to: datetime) -> None:
    """Move the clock to `to` and run the scheduler's tick as the worker does; wait for what it queued."""
    clock.advance((to - clock.now()).total_seconds())
    release_scheduled(ctx)
    jobs.join()


def mailed(ctx: Context) -> list[str]:
    """The addresses of the welcome emails sent so far."""
    return sorted(
        m["To"].split("<")[-1].rstrip(">")
        for m in outbox_messages(ctx.settings.outbox_dir)
        if m["X-Credbot-Category"] == "credbot-welcome"
    )


def statuses(ctx: Context, batch_id: int) -> dict[str, tuple[str, str | None]]:
    """Each employee's delivery (status, reason) by employee number."""
    with ctx.sessions() as session:
        rows = session.execute(
            sa.select(Employee.employee_number, Delivery.status, Delivery.error)
            .join(Employee, Employee.id == Delivery.employee_id)
            .where(Delivery.batch_id == batch_id)
        )
        return {number: (str(status), error) for number, status, error in rows}


def batch_status(ctx: Context, batch_id: int) -> str:
    with ctx.sessions() as session:
        return session.get_one(CredentialBatch, batch_id).status


def test_each_employee_is_sent_at_08_00_on_their_start_date_in_their_zone(
    ctx: Context, clock: ManualClock, session: Session
) -> None:
    london = hire(session, "L1", "Europe/London", date(2026, 3, 30))  # Monday after spring forward
    new_york = hire(session, "N1", "America/New_York", date(2026, 3, 9))  # Monday after spring forward
    kolkata = hire(session, "K1", "Asia/Kolkata", date(2026, 3, 9))
    chatham = hire(session, "C1", "Pacific/Chatham", date(2026, 3, 9))
    leap = hire(session, "F1", None, date(2028, 2, 29))  # DEFAULT_TIME_ZONE: UTC
    nobody = hire(session, "X1", "Europe/London", None)
    plan = Schedule(When.START_DATE, T(8, 0))
    batch_id, planned = schedule_batch(ctx, [london, new_york, kolkata, chatham, leap, nobody], plan)

    expected = {
        "C1": utc(2026, 3, 8, 18, 15),  # 08:00 +13:45 (Chatham summer time until 5 Apr)
        "K1": utc(2026, 3, 9, 2, 30),
        "N1": utc(2026, 3, 9, 12, 0),  # EDT since the day before
        "L1": utc(2026, 3, 30, 7, 0),  # BST since the day before
        "F1": utc(2028, 2, 29, 8, 0),
    }
    with ctx.sessions() as check:
        due = dict(
            check.execute(
                sa.select(Employee.employee_number, Delivery.due_at).join(
                    Employee, Employee.id == Delivery.employee_id
                )
            ).all()
        )
    assert {n: d for n, d in due.items() if d is not None} == expected
    assert statuses(ctx, batch_id)["X1"] == ("skipped", "cannot be scheduled: no start date")
    assert planned[nobody.id].note == "cannot be scheduled: no start date"
    assert batch_status(ctx, batch_id) == BatchStatus.SCHEDULED
    line = schedule.summary_line(plan, planned)
    assert (
        line == "5 employees, on their start dates at 08:00 in their time zones; first Mon 9 Mar 08:00 +1345"
    )

    tick(ctx, clock, expected["C1"] - timedelta(seconds=1))
    assert mailed(ctx) == []
    tick(ctx, clock, expected["C1"])
    assert mailed(ctx) == [chatham.email]
    assert batch_status(ctx, batch_id) == BatchStatus.SCHEDULED, "more moments wait: the batch waits again"
    tick(ctx, clock, expected["K1"] + timedelta(seconds=3))
    assert mailed(ctx) == sorted([str(chatham.email), str(kolkata.email)])
    tick(ctx, clock, expected["L1"])
    assert mailed(ctx) == sorted(str(e.email) for e in (chatham, kolkata, new_york, london))
    with ctx.sessions() as check:
        assert check.get_one(Account, london.account.id).credentials_emailed_at is not None  # type: ignore[union-attr]
    tick(ctx, clock, expected["F1"])
    assert len(mailed(ctx)) == 5
    assert batch_status(ctx, batch_id) == BatchStatus.FINISHED
    assert {s for s, _ in statuses(ctx, batch_id).values()} == {"sent", "skipped"}


def test_a_moment_in_the_past_is_now_with_a_note(ctx: Context, clock: ManualClock, session: Session) -> None:
    started = hire(session, "P1", "Europe/London", date(2026, 3, 2))  # Monday, two days ago
    later = hire(session, "P2", "Europe/London", date(2026, 3, 9))
    batch_id, planned = schedule_batch(ctx, [started, later], Schedule(When.START_DATE, T(8, 0)))
    assert planned[started.id] == Moment(
        clock.now(), "Europe/London", "Mon 2 Mar 08:00 GMT has passed: sent at once"
    )
    assert mailed(ctx) == [started.email], "the wake queued with the batch sent what was due"
    assert statuses(ctx, batch_id)["P2"] == ("scheduled", None)


def test_at_a_date_and_time_in_a_chosen_zone_or_each_ones_own(
    ctx: Context, clock: ManualClock, session: Session
) -> None:
    london = hire(session, "A1", "Europe/London", None)
    kolkata = hire(session, "A2", "Asia/Kolkata", None)
    ids = [london.id, kolkata.id]
    at = Schedule(When.AT, T(9, 0), date(2026, 3, 10), "America/New_York")
    own = Schedule(When.AT, T(9, 0), date(2026, 3, 10))
    with ctx.sessions() as check:
        one = schedule.moments(check, ctx.settings, at, ids, clock.now())
        each = schedule.moments(check, ctx.settings, own, ids, clock.now())
    assert {m.due_at for m in one.values()} == {utc(2026, 3, 10, 13, 0)}
    assert each[london.id].due_at == utc(2026, 3, 10, 9, 0)
    assert each[kolkata.id].due_at == utc(2026, 3, 10, 3, 30)
    assert at.describe() == "on Tue 10 Mar 2026 at 09:00 (America/New_York)"
    assert Schedule.from_json(at.as_json()) == at


def test_what_changed_before_the_moment_is_skipped_with_its_reason(
    ctx: Context, clock: ManualClock, session: Session
) -> None:
    moved = hire(session, "M1", "UTC", date(2026, 3, 9))
    left = hire(session, "M2", "UTC", date(2026, 3, 9))
    fired = hire(session, "M3", "UTC", date(2026, 3, 9))
    stays = hire(session, "M4", "UTC", date(2026, 3, 9))
    batch_id, _ = schedule_batch(ctx, [moved, left, fired, stays], Schedule(When.START_DATE, T(8, 0)))
    with ctx.sessions.begin() as change:
        change.execute(
            sa.update(Employee).where(Employee.id == moved.id).values(email="new.address@example.com")
        )
        change.execute(sa.update(Employee).where(Employee.id.in_([left.id, fired.id])).values(active=False))
        record_leavers(change, "cli:hr", [left.employee_number])  # the import's path; M3 only turned inactive
    assert statuses(ctx, batch_id)["M2"] == ("skipped", schedule.LEFT)
    tick(ctx, clock, utc(2026, 3, 9, 8, 0))
    found = statuses(ctx, batch_id)
    assert found["M1"] == ("skipped", ADDRESS_CHANGED)
    assert found["M3"] == ("skipped", EMPLOYEE_INACTIVE)
    assert found["M4"] == ("sent", None)
    assert mailed(ctx) == [stays.email]


def test_cancel_skips_what_waits_and_ends_the_batch(
    ctx: Context, clock: ManualClock, session: Session
) -> None:
    first = hire(session, "Z1", "UTC", date(2026, 3, 9))
    second = hire(session, "Z2", "UTC", date(2026, 3, 10))
    batch_id, _ = schedule_batch(ctx, [first, second], Schedule(When.START_DATE, T(8, 0)))
    tick(ctx, clock, utc(2026, 3, 9, 8, 0))
    with ctx.sessions.begin() as change:
        assert schedule.cancel(change, batch_id, "cli:tester") == 1
    assert statuses(ctx, batch_id) == {"Z1": ("sent", None), "Z2": ("skipped", schedule.CANCELLED)}
    assert batch_status(ctx, batch_id) == BatchStatus.ABORTED
    tick(ctx, clock, utc(2026, 3, 10, 9, 0))
    assert mailed(ctx) == [first.email]
    assert [e.target for e in audit_events(ctx.sessions, "credentials.batch_cancelled")] == [
        f"batch:{batch_id}"
    ]
    with ctx.sessions.begin() as change, pytest.raises(LookupError):
        schedule.cancel(change, batch_id + 1, "cli:tester")


def test_a_leaver_with_the_only_scheduled_send_ends_the_waiting_batch(
    ctx: Context, clock: ManualClock, session: Session
) -> None:
    leaver = hire(session, "Q1", "UTC", date(2026, 3, 9))
    batch_id, _ = schedule_batch(ctx, [leaver], Schedule(When.START_DATE, T(8, 0)))
    with ctx.sessions.begin() as change:
        change.execute(sa.update(Employee).where(Employee.id == leaver.id).values(active=False))
        record_leavers(change, "scim:okta", [leaver.employee_number])
    assert batch_status(ctx, batch_id) == BatchStatus.FINISHED
    assert statuses(ctx, batch_id) == {"Q1": ("skipped", schedule.LEFT)}


def test_the_tick_finds_due_deliveries_in_the_database_without_any_queued_job(
    ctx: Context, clock: ManualClock, session: Session
) -> None:
    """What a flushed Redis leaves: the batch and its moments in the database, no job anywhere."""
    employee = hire(session, "R1", "UTC", date(2026, 3, 9))
    batch_id, _ = schedule_batch(ctx, [employee], Schedule(When.START_DATE, T(8, 0)))
    jobs.shutdown()  # every queued job gone
    jobs.configure(ctx, redis_url="")
    tick(ctx, clock, utc(2026, 3, 9, 8, 0, 4))
    assert mailed(ctx) == [employee.email]
    assert batch_status(ctx, batch_id) == BatchStatus.FINISHED


def test_two_ticks_at_the_moment_release_each_delivery_once(
    ctx: Context, clock: ManualClock, session: Session
) -> None:
    employees = [hire(session, f"W{n}", "UTC", date(2026, 3, 9)) for n in range(5)]
    batch_id, _ = schedule_batch(ctx, employees, Schedule(When.START_DATE, T(8, 0)))
    clock.advance((utc(2026, 3, 9, 8, 0) - clock.now()).total_seconds())
    with ctx.sessions.begin() as first:
        released = schedule.release_due(first, clock.now())
    with ctx.sessions.begin() as second:
        again = schedule.release_due(second, clock.now())
    assert released == [(batch_id, "cli")]
    assert again == []


# --- the CLI ----------------------------------------------------------------------------------------------


def test_cli_schedules_on_start_dates_lists_and_cancels(
    cli: RunCli, session: Session, tmp_path: Path
) -> None:
    start = datetime.now(UTC).date() + timedelta(days=5)
    hire(session, "S1", "Europe/London", start)
    hire(session, "S2", "Asia/Kolkata", start)
    hire(session, "S3", "Europe/London", None)
    result = cli("credentials", "send", "S1", "S2", "S3", "--on-start-date", "09:30", "--yes")
    assert result.exit_code == 0, result.output
    assert "Scheduled on their start dates at 09:30 in their time zones:" in result.output
    assert "Europe/London" in result.output and "Asia/Kolkata" in result.output
    assert "Cannot be scheduled (1, skipped):" in result.output
    assert "cannot be scheduled: no start date" in result.output
    assert "valid 72 h from then" in result.output and "can only be emailed now" not in result.output
    assert (
        "Batch 1 scheduled: 2 employees, on their start dates at 09:30 in their time zones; first"
        in result.output
    )
    listed = cli("batches")
    assert "scheduled" in listed.output and "WAITING" in listed.output
    assert f"{start:%Y-%m-%d} 04:00" in listed.output, listed.output  # 09:30 in Kolkata, the first moment
    cancelled = cli("batches", "cancel", "1")
    assert "Batch 1: 2 not yet sent cancelled." in cancelled.output
    assert not list((tmp_path / "outbox").glob("*.eml"))


def test_cli_schedules_at_a_time_in_a_zone(cli: RunCli, session: Session) -> None:
    day = datetime.now(UTC).date() + timedelta(days=3)
    hire(session, "S1", "Asia/Kolkata", None)
    result = cli("credentials", "send", "S1", "--at", f"{day} 08:00", "--tz", "europe/london", "--yes")
    assert result.exit_code == 0, result.output
    assert f"on {day:%a %-d %b %Y} at 08:00 (Europe/London)" in result.output
    with session.get_bind().connect() as check:  # type: ignore[union-attr]
        assert check.scalar(sa.select(Delivery.status)) == DeliveryStatus.SCHEDULED


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--at", "2026-12-07"], "is not a date and time as YYYY-MM-DD HH:MM"),
        (["--at", "2026-12-07 25:00"], "is not a time as HH:MM"),
        (["--at", "2026-12-07 08:00", "--tz", "Mars/Olympus"], "is not an IANA time zone"),
        (["--tz", "UTC"], "--tz goes with --at"),
        (["--on-start-date", "--at", "2026-12-07 08:00"], "either --on-start-date or --at"),
    ],
)
def test_cli_refuses_a_bad_schedule(cli: RunCli, session: Session, args: list[str], error: str) -> None:
    hire(session, "S1", "UTC", None)
    result = cli("credentials", "send", "S1", *args, "--yes")
    assert result.exit_code == 2
    assert error in result.output
