"""`credbot report` and `credbot audit`: where things stand, and what happened."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bot.account_report import CSV_ENCODING, write_accounts_csv
from bot.audit import AuditAction, count_events, recent, record_now
from bot.audit_chain import verify_chain
from bot.cli.common import cli_actor, context, print_more, print_table
from bot.delivery_events import MailState, describe_counts, untracked_reason
from bot.reports import BatchLine, build_report

TIME = "%Y-%m-%d %H:%M"


@click.command()
@click.option("--batches", default=10, show_default=True, type=click.IntRange(min=0), help="Recent batches.")
@click.option(
    "--failures", default=20, show_default=True, type=click.IntRange(min=0), help="Recent failures."
)
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Instead, write every account (number, name, email, department, username, status, roles, funnel "
    "dates) to this CSV file (UTF-8 with a byte-order mark, for Excel).",
)
def report(batches: int, failures: int, csv_file: Path | None) -> None:
    """Show where things stand, or write the account report.

    Accounts by status, gaps in the directory, recent credential batches and failed deliveries.
    With --csv FILE: the account report as a CSV file, the same as App Home's "Account report".
    """
    if csv_file is not None:
        ctx = context()
        with ctx.sessions() as session, csv_file.open("w", newline="", encoding=CSV_ENCODING) as out:
            count = write_accounts_csv(session, out)
        record_now(ctx.sessions, cli_actor(), AuditAction.ACCOUNTS_REPORTED, str(csv_file), accounts=count)
        click.echo(f"Wrote {count} account(s) to {csv_file}.")
        return
    ctx = context()
    with ctx.sessions() as session:
        data = build_report(session, batches, failures)
    untracked = untracked_reason(ctx.settings)
    click.echo(f"Employees: {data.employees} ({data.active_employees} active)")
    click.echo("Accounts:  " + ", ".join(f"{n} {status}" for status, n in data.accounts_by_status.items()))
    click.echo(f"Active employees without an account:   {data.without_account}")
    click.echo(f"Active employees without an email:     {data.without_email}")
    click.echo(f"Accounts never emailed their password: {data.never_emailed}")
    delivery = f"not tracked ({untracked})" if untracked else describe_counts(data.delivery_states)
    click.echo(f"Delivery (SendGrid's events):          {delivery}")
    click.echo("\nRecent credential batches:")
    if data.batches:
        headers = ["BATCH", "BY", "SOURCE", "WHEN (UTC)", "STATUS", "SENT", "FAILED", "SKIPPED", "PENDING"]
        print_table(headers, (_batch_row(b) for b in data.batches))
        print_more(len(data.batches), data.all_batches, "--batches")
    else:
        click.echo("  none")
    tracked = [b for b in data.batches if any(b.delivery.values())] if not untracked else []
    if tracked:
        click.echo(
            "\nDelivery of the recent batches (SendGrid events; `credbot deliveries BATCH` lists employees):"
        )
        print_table(
            ["BATCH", *(state.upper().replace("_", " ") for state in MailState)],
            ((b.batch_id, *(b.delivery[state] for state in MailState)) for b in tracked),
        )
    click.echo("\nRecent failed deliveries:")
    if data.failures:
        print_table(
            ["WHEN (UTC)", "BATCH", "EMPLOYEE", "NAME", "ADDRESS", "REASON"],
            (
                (f"{f.at:{TIME}}", f.batch_id, f.employee_number, f.name, f.address, f.error)
                for f in data.failures
            ),
        )
        print_more(len(data.failures), data.all_failures, "--failures")
    else:
        click.echo("  none")


def _batch_row(b: BatchLine) -> tuple[object, ...]:
    when = f"{b.created_at:{TIME}}"
    return (b.batch_id, b.requested_by, b.source, when, b.status, b.sent, b.failed, b.skipped, b.pending)


@click.group(invoke_without_command=True)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--action",
    type=click.Choice([a.value for a in AuditAction]),
    metavar="ACTION",
    help="Only this action, like account.created (a wrong one lists them all).",
)
@click.pass_context
def audit(click_ctx: click.Context, limit: int, action: str | None) -> None:
    """List the newest audit events, newest first.

    `audit verify` checks the hash chain.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    with context().sessions() as session:
        rows = [
            (
                f"{event.created_at:{TIME}}",
                event.actor,
                event.action,
                event.target,
                json.dumps(event.details, ensure_ascii=False, sort_keys=True),
            )
            for event in recent(session, limit, action)
        ]
        total = count_events(session, action) if len(rows) == limit else len(rows)
    print_table(["WHEN (UTC)", "ACTOR", "ACTION", "TARGET", "DETAILS"], rows)
    print_more(len(rows), total)


@audit.command("verify")
def verify_command() -> None:
    """Check the audit log's hash chain.

    Checks that no audit event was changed, removed or inserted since it was sealed.
    Seals any unsealed events first, then checks every link of the hash chain. Exits with 1 and names
    the first event that does not fit when the log was tampered with.
    """
    chain = verify_chain(context().sessions.kw["bind"])
    if chain.problem is not None:
        raise click.ClickException(
            f"the audit log was tampered with: {chain.problem.message} ({chain.problem.kind})"
        )
    click.echo(f"Audit log intact: {chain.events:,} events in the chain.")
    click.echo(f"Head: position {chain.head_seq}, hash {chain.head_hash} (keep it to compare later).")
