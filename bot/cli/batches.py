"""`credbot batches`: credential batches with their counts (and what waits in a scheduled one), resuming
one by hand, and cancelling what is not yet sent."""

from __future__ import annotations

import click
from sqlalchemy import func, select

from bot.cli.common import cli_actor, context, print_more, print_table
from bot.cli.credentials import follow_batch, print_summary
from bot.sending.batches import list_batches, summarise
from bot.sending.jobs import resume_batch
from bot.sending.schedule import cancel, waiting
from models import CredentialBatch, DeliveryStatus


@click.group(invoke_without_command=True)
@click.option("--limit", default=20, show_default=True, help="How many of the newest batches to list.")
@click.pass_context
def batches(click_ctx: click.Context, limit: int) -> None:
    """List credential batches, newest first, with their counts.

    Each batch with how many of its deliveries are in each state, and for a scheduled one how many wait
    and its next moment; `batches resume BATCH` takes one up, `batches cancel BATCH` cancels what is not
    yet sent.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    with context().sessions() as session:
        rows = list_batches(session, limit)
        total = session.scalar(select(func.count()).select_from(CredentialBatch)) or 0
        waits = waiting(session, [row.batch_id for row in rows])
    if not rows:
        click.echo("No batches yet.")
        return
    print_table(
        [
            "BATCH",
            "STARTED (UTC)",
            "BY",
            "FROM",
            "STATUS",
            "SENT",
            "FAILED",
            "IN DOUBT",
            "SKIPPED",
            "LEFT",
            "WAITING",
            "NEXT MOMENT (UTC)",
        ],
        (
            (
                row.batch_id,
                f"{row.created_at:%Y-%m-%d %H:%M}",
                row.requested_by,
                row.source,
                row.status + (f" (resumed {row.resumed}x)" if row.resumed else ""),
                row.counts[DeliveryStatus.SENT],
                row.counts[DeliveryStatus.FAILED],
                row.counts[DeliveryStatus.IN_DOUBT],
                row.counts[DeliveryStatus.SKIPPED],
                row.counts[DeliveryStatus.PENDING] + row.counts[DeliveryStatus.SENDING],
                waits[row.batch_id].count if row.batch_id in waits else "",
                f"{waits[row.batch_id].next_at:%Y-%m-%d %H:%M}" if row.batch_id in waits else "",
            )
            for row in rows
        ),
    )
    print_more(len(rows), total)


@batches.command("resume")
@click.argument("batch_id", type=int)
def resume_command(batch_id: int) -> None:
    """Take up a running batch whose worker stopped.

    Follows it to its end. Workers resume such batches by themselves once their lease runs out
    (SEND_LEASE_SECONDS); this does it now. Employees whose email was in flight may get it again;
    nobody else does.
    """
    ctx = context()
    try:
        resumed = resume_batch(ctx, batch_id, cli_actor())
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    if not resumed:
        with ctx.sessions() as session:
            summary = summarise(session, batch_id)
        click.echo(f"Batch {batch_id} is {summary.status}: nothing to resume.")
        print_summary(summary)
        return
    print_summary(follow_batch(ctx, batch_id, "Resuming"))


@batches.command("cancel")
@click.argument("batch_id", type=int)
def cancel_command(batch_id: int) -> None:
    """Cancel what of a batch is not yet sent.

    Employees waiting for their moment (a scheduled batch), and those not yet taken up by a worker, are
    skipped; emails already on their way finish.
    """
    ctx = context()
    try:
        with ctx.sessions.begin() as session:
            cancelled = cancel(session, batch_id, cli_actor())
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Batch {batch_id}: {cancelled:,} not yet sent cancelled.")
