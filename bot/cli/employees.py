"""`credbot employees`: import the HR directory and look people up."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli.common import cli_actor, context, print_more, print_table, printable
from bot.directory import ImportFileError, ImportResult, count_employees, import_employees, list_employees

PROGRESS_BAR_BYTES = 1_000_000
"""Files larger than this (about 10,000 rows) get a progress bar even when stdout is not a terminal."""
MAX_ERRORS_SHOWN = 200


@click.group()
def employees() -> None:
    """Import and list the employee directory."""


@employees.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-invalid", is_flag=True, help="Import the good rows even when some are bad.")
def import_command(file: Path, skip_invalid: bool) -> None:
    """Add or update employees from a CSV file.

    FILE is CSV in UTF-8; rows are matched by employee number.
    Columns: employee_number, first_name, last_name, email (required); department, roles
    (;-separated), slack_user_id, active (yes/no or a status such as Terminated), start_date,
    time_zone, personal_email, manager (an employee number) (optional). By default nothing is written
    if any row is bad. The accounts of inactive employees are disabled.
    """
    ctx = context()
    date_format = ctx.settings.date_format
    try:
        with ctx.sessions.begin() as session:
            if sys.stdout.isatty() or file.stat().st_size > PROGRESS_BAR_BYTES:
                with click.progressbar(length=_count_rows(file), label=f"Reading {file.name}") as bar:
                    result = import_employees(
                        session, file, cli_actor(), skip_invalid, bar.update, date_format=date_format
                    )
            else:
                result = import_employees(session, file, cli_actor(), skip_invalid, date_format=date_format)
    except ImportFileError as error:
        raise click.ClickException(printable(error)) from error
    _print_result(result)
    if result.errors and not result.written:
        sys.exit(1)


def _count_rows(file: Path) -> int:
    """Lines after the header: the row count, unless fields span lines."""
    with file.open("rb") as handle:
        return max(sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) - 1, 1)


def _print_result(result: ImportResult) -> None:
    if result.ignored_columns:
        click.echo(f"Ignored unknown column(s): {printable(', '.join(result.ignored_columns))}")
    if result.errors:
        verdict = "skipped" if result.written else "nothing was written; fix them or use --skip-invalid"
        click.echo(f"{len(result.errors)} bad row(s) ({verdict}):", err=not result.written)
        for line, reason in result.errors[:MAX_ERRORS_SHOWN]:
            click.echo(f"  line {line}: {printable(reason)}", err=not result.written)
        if len(result.errors) > MAX_ERRORS_SHOWN:
            click.echo(f"  ... and {len(result.errors) - MAX_ERRORS_SHOWN} more", err=not result.written)
    if not result.written:
        return
    counts = f"{result.created} created, {result.updated} updated, {result.unchanged} unchanged"
    if result.changed:
        click.echo(f"{printable(result.file_name)}: {counts}.")
    else:
        click.echo(f"{printable(result.file_name)}: nothing changed ({counts}).")
    if result.disabled:
        shown = result.disabled[:MAX_ERRORS_SHOWN]
        accounts = ", ".join(f"{username} ({number})" for number, username in shown)
        more = f" and {len(result.disabled) - len(shown)} more" if len(result.disabled) > len(shown) else ""
        click.echo(
            f"Disabled the accounts of {len(result.disabled)} inactive employee(s): {printable(accounts)}"
            + more
        )


@employees.command("list")
@click.option("--search", "-s", metavar="Q", help="Only employees matching every word (name, email, number).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
def list_command(search: str | None, limit: int) -> None:
    """List employees by employee number."""
    ctx = context()
    default_zone = f"{ctx.settings.default_time_zone} (default)"
    with ctx.sessions() as session:
        rows = [
            (
                e.employee_number,
                e.full_name,
                e.email,
                e.department,
                e.account.username if e.account else "",
                "yes" if e.active else "no",
                e.start_date or "",
                e.time_zone or default_zone,
            )
            for e in list_employees(session, search, limit)
        ]
        total = count_employees(session, search) if len(rows) == limit else len(rows)
    print_table(["NUMBER", "NAME", "EMAIL", "DEPARTMENT", "USERNAME", "ACTIVE", "STARTS", "TIME ZONE"], rows)
    print_more(len(rows), total)
