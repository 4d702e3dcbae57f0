"""`credbot credentials`: email employees their Self-Service credentials."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence

import click
from sqlalchemy.exc import DBAPIError

from bot import credential_modes, jobs, outbox
from bot.cli.common import cli_actor, context, print_table, printable
from bot.cli.scheduling import chosen_schedule, plan_moments, print_plan, scheduled_warning, start_scheduled
from bot.context import Context
from bot.lookup import resolve_employees
from bot.mail import outbox_notice
from bot.outbox import RELAY_SECONDS
from bot.outside_text import inert
from bot.sending.addresses import AddressRule
from bot.sending.batches import (
    BatchSummary,
    DeliveryOutcome,
    delivery_counts,
    request_stop,
    summarise,
)
from bot.sending.jobs import start_and_enqueue
from bot.sending.outcomes import INTERRUPTED, MAY_HAVE_ARRIVED
from bot.sending.recipients import Recipient, never_emailed_employee_ids, preview, with_suppressions
from bot.sending.retry import db_retry
from bot.settings import Settings
from models import BatchSource, BatchStatus, CredentialBatch, DeliveryStatus

POLL_SECONDS = 0.2
NO_WORKER_HINT_SECONDS = 15.0
QUEUED_TEXT = (
    "The job queue is unreachable: batch {batch_id} is saved and queued; it starts when the job queue "
    "is back. Do not send again: this command shows the batch's progress once it runs."
)


@click.group()
def credentials() -> None:
    """Email employees their Self-Service credentials."""


@credentials.command("send")
@click.argument("keys", nargs=-1, metavar="[EMPLOYEE]...")
@click.option("--all-pending", is_flag=True, help="Every active employee whose account was never emailed.")
@click.option("--yes", "-y", is_flag=True, help="Send without asking for confirmation.")
@click.option(
    "--on-start-date",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[HH:MM]",
    help="Send each employee on their start date at this local time (default START_DAY_SEND_TIME).",
)
@click.option("--at", "at", metavar='"YYYY-MM-DD HH:MM"', help="Send at this date and local time.")
@click.option("--tz", "zone", metavar="ZONE", help="The time zone of --at (default: each employee's own).")
def send_command(
    keys: tuple[str, ...],
    all_pending: bool,
    yes: bool,
    on_start_date: str | None,
    at: str | None,
    zone: str | None,
) -> None:
    """Email employees new credentials, after a preview.

    Each gets a new temporary password (or link) and, separately, their username.
    Employees are given by employee number, email address or username, or chosen with --all-pending.
    The list of who will be mailed, and who cannot be and why, is shown before anything is sent.
    With --on-start-date or --at the batch is scheduled: the worker sends each employee at their moment.
    """
    if all_pending == bool(keys):
        raise click.UsageError("give either --all-pending or one or more employees")
    ctx = context()
    settings = ctx.settings
    plan = chosen_schedule(settings, on_start_date, at, zone)
    with ctx.sessions() as session:
        if all_pending:
            employee_ids = never_emailed_employee_ids(session)
        else:
            resolved = resolve_employees(session, keys)
            if problem := resolved.problem():
                raise click.ClickException(f"{printable(problem)}; nothing was sent")
            employee_ids = resolved.ids
        recipients = preview(session, employee_ids, AddressRule.of(settings, ctx.clock.now()))
    recipients, suppression_note = with_suppressions(settings, recipients)
    mailable = [r for r in recipients if r.problem is None]
    unmailable = [r for r in recipients if r.problem is not None]

    if not recipients:
        click.echo("Nobody to email: every active employee with an account has had credentials emailed.")
        return
    if mailable:
        click.echo(f"Will email {_count(mailable)}:")
        _recipient_table(mailable)
    if unmailable:
        click.echo(f"\nCannot email {_count(unmailable)} (skipped):")
        print_table(
            ["EMPLOYEE", "NAME", "USERNAME", "REASON"],
            ((r.employee_number, r.name, r.username, r.problem) for r in unmailable),
        )
    if not mailable:
        click.echo("\nNothing to send.")
        return

    planned = plan_moments(ctx, plan, mailable) if plan is not None else None
    if plan is not None and planned is not None and not print_plan(plan, mailable, planned):
        click.echo("\nNothing to schedule.")
        return

    if suppression_note:
        click.echo(f"\n{suppression_note}")
    click.echo("")
    click.echo(_transport_line(settings))
    click.echo(_warning(settings, mailable) if plan is None else scheduled_warning(settings))
    if plan is not None and planned is not None:
        _confirm(yes, f"Schedule {_count(mailable)} {plan.describe()}?")
        start_scheduled(ctx, plan, recipients, mailable, planned)
        return
    if not yes:
        try:
            click.confirm(f"Email {_count(mailable)} now?", abort=True)
        except click.Abort:
            raise click.ClickException(
                "not confirmed, nothing was sent (to send without a prompt, pass --yes)"
            ) from None

    batch_id, queued = start_and_enqueue(
        ctx,
        [r.employee_id for r in recipients],
        cli_actor(),
        BatchSource.CLI,
        # What was shown, fixed for the batch and checked again for each employee at send time.
        confirmed={r.employee_id: r.address for r in recipients},
        confirmed_emailed={r.employee_id: r.last_emailed_at for r in recipients},
        # Addresses confirmed while on SendGrid's bounce list: their emails bypass it.
        bypass_bounce_list={r.employee_id for r in mailable if r.on_bounce_list},
    )
    if not queued:
        click.echo(QUEUED_TEXT.format(batch_id=batch_id))
    summary = follow_batch(ctx, batch_id, "Sending")
    print_summary(summary)


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    try:
        click.confirm(question, abort=True)
    except click.Abort:
        raise click.ClickException(
            "not confirmed, nothing was sent (to send without a prompt, pass --yes)"
        ) from None


def follow_batch(ctx: Context, batch_id: int, label: str) -> BatchSummary:
    """Show a batch's progress until it ends (a worker runs it); Ctrl-C asks it to stop. Its summary.

    A short database or job queue outage is waited out: the progress holds, and jobs waiting in the
    outbox are handed to the queue once it is back.
    """
    settings = ctx.settings
    counts, _ = _progress(ctx, batch_id)
    total = sum(counts[s] for s in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)) + _done(counts)
    started, hinted, relay_at = time.monotonic(), False, 0.0
    try:
        with click.progressbar(length=total, label=label, show_pos=True) as bar:
            while True:
                try:
                    counts, status = _progress(ctx, batch_id)
                    bar.update(_done(counts) - bar.pos)
                    if status != BatchStatus.RUNNING:
                        break
                    # A job left in the outbox by a queue outage (without Redis there is no outage).
                    if settings.redis_url and time.monotonic() >= relay_at:
                        relay_at = time.monotonic() + RELAY_SECONDS
                        with contextlib.suppress(DBAPIError):  # the database away: waited out above
                            outbox.relay(ctx)
                    if (
                        not hinted
                        and settings.redis_url
                        and time.monotonic() - started > NO_WORKER_HINT_SECONDS
                    ):
                        if _done(counts) == 0:
                            click.echo("\nNo worker has taken the batch yet: is `credbot worker` running?")
                        hinted = True
                    time.sleep(POLL_SECONDS)
                except KeyboardInterrupt:
                    request_stop(ctx.sessions, batch_id, INTERRUPTED)
                    click.echo("\nStopping: emails in flight finish, the rest are not sent...", err=True)
    finally:
        jobs.shutdown()  # without Redis, the in-process worker ran it
    return _summary(ctx, batch_id)


@db_retry
def _progress(ctx: Context, batch_id: int) -> tuple[dict[str, int], str]:
    """The batch's delivery counts and status (a short database outage is waited out)."""
    with ctx.sessions() as session:
        return delivery_counts(session, batch_id), session.get_one(CredentialBatch, batch_id).status


@db_retry
def _summary(ctx: Context, batch_id: int) -> BatchSummary:
    with ctx.sessions() as session:
        return summarise(session, batch_id)


def _done(counts: dict[str, int]) -> int:
    return (
        sum(counts[s] for s in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.IN_DOUBT))
        + (counts[DeliveryStatus.SKIPPED])
    )


def print_summary(summary: BatchSummary) -> None:
    """The summary of an ended batch; exits with 1 if anything failed, is in doubt, or it stopped."""
    doubt = f", in doubt {len(summary.in_doubt)}" if summary.in_doubt else ""
    click.echo(
        f"\nBatch {summary.batch_id}: sent {len(summary.sent)}, failed {len(summary.failed)}{doubt}, "
        f"skipped {len(summary.skipped)}."
    )
    if summary.failed:
        click.echo("Failed:")
        _outcome_table(summary.failed)
    if summary.in_doubt:
        click.echo(f"In doubt: the mail service {MAY_HAVE_ARRIVED}. Ask before sending again:")
        _outcome_table(summary.in_doubt)
    if summary.skipped:
        click.echo("Skipped:")
        _outcome_table(summary.skipped)
    if summary.error:
        click.echo(f"Stopped: {printable(summary.error)}", err=True)
    if summary.failed or summary.in_doubt or summary.error:
        sys.exit(1)


def _count(recipients: Sequence[Recipient]) -> str:
    return f"{len(recipients):,} employee{'s' if len(recipients) != 1 else ''}"


def _recipient_table(recipients: Sequence[Recipient]) -> None:
    warnings = any(r.address_warning or r.suppression for r in recipients)
    print_table(
        ["EMPLOYEE", "NAME", "USERNAME", "ADDRESS", "WHICH ADDRESS", "LAST EMAILED (UTC)"]
        + (["ADDRESS WARNING"] if warnings else []),
        (
            (
                r.employee_number,
                r.name,
                r.username,
                r.address,
                r.address_reason,
                f"{r.last_emailed_at:%Y-%m-%d %H:%M}" if r.last_emailed_at else "never",
            )
            + ((_address_warning(r),) if warnings else ())
            for r in recipients
        ),
    )
    if warnings:
        click.echo(
            "Addresses with a warning bounced, were dropped or are on SendGrid's suppression lists: correct "
            "them first (credbot employees import)."
        )
    if any(r.on_bounce_list for r in recipients):
        click.echo(
            "Emails to an address on SendGrid's bounce list bypass it this once if you send: send only if "
            "the mailbox exists now."
        )


def _address_warning(recipient: Recipient) -> str:
    """What SendGrid's events and suppression lists say of the address (their words made inert)."""
    parts = [
        inert(recipient.address_warning) if recipient.address_warning else "",
        recipient.suppression or "",
    ]
    return "; ".join(part for part in parts if part)


def _outcome_table(outcomes: Sequence[DeliveryOutcome]) -> None:
    print_table(
        ["EMPLOYEE", "NAME", "ADDRESS", "REASON"],
        ((o.employee_number, o.name, o.address, o.error) for o in outcomes),
    )


def _transport_line(settings: Settings) -> str:
    if settings.uses_outbox:
        return outbox_notice(settings)
    sandbox = (
        " in sandbox mode: SendGrid checks each message but delivers nothing"
        if settings.sendgrid_sandbox
        else ""
    )
    return f"Mail goes through SendGrid ({settings.sendgrid_api_host}){sandbox}."


def _warning(settings: Settings, mailable: Sequence[Recipient]) -> str:
    mode = credential_modes.of(settings.credential_mode)
    lines = [line.format(hours=settings.temp_password_ttl_hours) for line in mode.gets]
    before = sum(1 for r in mailable if r.last_emailed_at)
    if before:
        lines.append(
            f"{before:,} of them had credentials emailed before: their {mode.replaced} working once sent."
        )
    return "\n".join(lines)
