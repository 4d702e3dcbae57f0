"""`credbot deliveries BATCH`: what SendGrid did with each employee's emails in a batch."""

from __future__ import annotations

import click
from sqlalchemy import select

from bot.cli.common import context, print_table
from bot.delivery_events import batch_deliveries, describe_counts, state_counts
from bot.outside_text import inert
from models import CredentialBatch

TIME = "%Y-%m-%d %H:%M"


@click.command()
@click.argument("batch_id", type=int, metavar="BATCH")
def deliveries(batch_id: int) -> None:
    """List each employee of a batch with the delivery state.

    Sent or not, the delivery state from SendGrid's events, and the last event.
    """
    with context().sessions() as session:
        if session.scalar(select(CredentialBatch.id).where(CredentialBatch.id == batch_id)) is None:
            raise click.ClickException(f"no credential batch {batch_id} (`credbot report` lists recent ones)")
        rows = [
            (
                line.employee_number,
                line.name,
                line.address,
                line.status,
                line.state or "-",
                f"{line.last_event} {line.last_event_at:{TIME}}"
                if line.last_event and line.last_event_at
                else "-",
                inert(line.reason) if line.reason else None,
            )
            for line in batch_deliveries(session, batch_id)
        ]
        counts = state_counts(session, batch_id)
    print_table(["EMPLOYEE", "NAME", "ADDRESS", "SENT", "DELIVERY", "LAST EVENT (UTC)", "REASON"], rows)
    click.echo(f"\nBatch {batch_id}: {describe_counts(counts)}.")
