"""`credbot credentials send --on-start-date [HH:MM]` and `--at "YYYY-MM-DD HH:MM" [--tz ZONE]`: the
schedule the admin asks for, its preview (each moment, and who cannot be scheduled), and the batch."""

from __future__ import annotations

from collections.abc import Sequence

import click

from bot.cli.common import cli_actor, print_table, printable
from bot.context import Context
from bot.sending import schedule
from bot.sending.jobs import schedule_and_enqueue
from bot.sending.recipients import Recipient
from bot.sending.schedule import Moment, Schedule, When
from bot.settings import Settings
from models import BatchSource

MOMENTS_SHOWN = 20
"""Moment lines in the preview; the rest are counted."""


def chosen_schedule(
    settings: Settings, on_start_date: str | None, at: str | None, zone: str | None
) -> Schedule | None:
    """The schedule the options ask for; None: send now. UsageError for a bad or contradictory one."""
    if on_start_date is not None and at is not None:
        raise click.UsageError("give either --on-start-date or --at, not both")
    if zone is not None and at is None:
        raise click.UsageError("--tz goes with --at (on their start dates each employee's zone is used)")
    try:
        if on_start_date is not None:
            return Schedule(
                When.START_DATE, schedule.parse_time(on_start_date or settings.start_day_send_time)
            )
        if at is not None:
            day, time = schedule.parse_at(at)
            return Schedule(When.AT, time, day, schedule.parse_zone(zone) if zone else None)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    return None


def plan_moments(ctx: Context, plan: Schedule, mailable: Sequence[Recipient]) -> dict[int, Moment]:
    """Each mailable employee's moment (see `schedule.moments`), by the context's clock."""
    with ctx.sessions() as session:
        return schedule.moments(
            session, ctx.settings, plan, [r.employee_id for r in mailable], ctx.clock.now()
        )


def print_plan(plan: Schedule, mailable: Sequence[Recipient], planned: dict[int, Moment]) -> int:
    """The preview of the schedule: the moments (how many employees at each), the moments moved to now,
    and who cannot be scheduled. How many are scheduled."""
    click.echo(f"\nScheduled {plan.describe()}:")
    groups = schedule.moment_groups(planned.values())
    print_table(
        ["MOMENT (LOCAL)", "TIME ZONE", "EMPLOYEES"],
        ((g.local(), g.zone, f"{g.count:,}") for g in groups[:MOMENTS_SHOWN]),
    )
    if len(groups) > MOMENTS_SHOWN:
        rest = sum(g.count for g in groups[MOMENTS_SHOWN:])
        click.echo(f"… and {rest:,} employees at {len(groups) - MOMENTS_SHOWN:,} later moments")
    noted = [(r, planned[r.employee_id]) for r in mailable if planned[r.employee_id].note]
    now = [(r, m) for r, m in noted if m.due_at is not None]
    if now:
        click.echo(f"\nSent at once ({len(now):,}: their moment has passed):")
        print_table(["EMPLOYEE", "NAME", "NOTE"], ((r.employee_number, r.name, m.note) for r, m in now))
    cannot = [(r, m) for r, m in noted if m.due_at is None]
    if cannot:
        click.echo(f"\nCannot be scheduled ({len(cannot):,}, skipped):")
        print_table(["EMPLOYEE", "NAME", "REASON"], ((r.employee_number, r.name, m.note) for r, m in cannot))
    return sum(1 for m in planned.values() if m.due_at is not None)


def scheduled_warning(settings: Settings) -> str:
    """What a scheduled send makes, and when (instead of the send-now warning)."""
    what = (
        "single-use link to set their password"
        if settings.credential_mode == "link"
        else "temporary password"
    )
    return (
        f"At their moment each of them gets a new {what} (valid {settings.temp_password_ttl_hours} h from "
        "then) and, separately, their username. Nothing secret is made or stored before the moment."
    )


def start_scheduled(
    ctx: Context,
    plan: Schedule,
    recipients: Sequence[Recipient],
    mailable: Sequence[Recipient],
    planned: dict[int, Moment],
) -> None:
    """Commit the scheduled batch with what was shown, and say where it shows and how to cancel it."""
    batch_id, queued = schedule_and_enqueue(
        ctx,
        [r.employee_id for r in recipients],
        cli_actor(),
        BatchSource.CLI,
        plan,
        planned,
        confirmed={r.employee_id: r.address for r in recipients},
        confirmed_emailed={r.employee_id: r.last_emailed_at for r in recipients},
        bypass_bounce_list={r.employee_id for r in mailable if r.on_bounce_list},
    )
    click.echo(f"\nBatch {batch_id} scheduled: {printable(schedule.summary_line(plan, planned))}.")
    click.echo(
        "The worker (`credbot worker`) sends each employee at their moment, with a password made then. "
        f"`credbot batches` shows what waits; `credbot batches cancel {batch_id}` cancels what is not sent."
    )
    if not queued:
        click.echo("The job queue is unreachable now: the worker finds the batch in the database anyway.")
