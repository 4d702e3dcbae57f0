"""`credbot accounts`: create and list Self-Service accounts."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from sqlalchemy.orm import Session

from bot import jobs
from bot.accounts import (
    AccountChangeError,
    ChangeAccounts,
    LeftAlone,
    UnknownRoles,
    UsernamePatternError,
    count_accounts,
    create_accounts,
    disable_accounts,
    edit_roles,
    enable_accounts,
    list_accounts,
    rename_account,
    role_targets,
    shown_status,
    unlock_accounts,
)
from bot.cli.common import (
    cli_actor,
    confirm_many,
    context,
    employees_named,
    print_more,
    print_table,
    printable,
)
from bot.lookup import NamedEmployee
from bot.notices import notify_renamed, rename_notice_text
from models import AccountStatus


@click.group()
def accounts() -> None:
    """Create and list Self-Service accounts."""


YES = click.option("--yes", "-y", is_flag=True, help="Change several accounts without asking first.")


@accounts.command("create")
@click.argument("employees", nargs=-1, metavar="[EMPLOYEE]...")
@click.option("--all-missing", is_flag=True, help="Every active employee without an account.")
def create_command(employees: tuple[str, ...], all_missing: bool) -> None:
    """Create accounts (existing ones are left alone).

    \b
    For each EMPLOYEE, or every active employee without one (--all-missing).
    EMPLOYEE: an employee number, email address or username.
    Usernames follow USERNAME_PATTERN.
    Roles: DEFAULT_ROLES plus the roles from the import.
    """
    if all_missing == bool(employees):
        raise click.UsageError("give either --all-missing or one or more employees")
    ctx = context()
    try:
        with ctx.sessions.begin() as session:
            employee_ids = None if all_missing else _ids(session, employees, "no account was created")
            result = create_accounts(session, ctx.settings, cli_actor(), employee_ids, all_missing)
    except UsernamePatternError as error:
        raise click.ClickException(str(error)) from error
    if result.created:
        print_table(
            ["USERNAME", "EMPLOYEE", "NAME", "ROLES"],
            ((a.username, a.employee_number, a.name, ", ".join(a.roles)) for a in result.created),
        )
    click.echo(f"Created {len(result.created)} account(s).")
    if result.existing:
        existing = ", ".join(
            f"{printable(number)} ({printable(username)})" for number, username in result.existing
        )
        click.echo(f"Already had an account: {existing}")
    for number, reason in result.skipped:
        click.echo(f"Skipped {printable(number)}: {reason}")


def _ids(session: Session, employees: Sequence[str], nothing_done: str) -> list[int]:
    """The employee ids of EMPLOYEE arguments (numbers, addresses or usernames)."""
    return [named.employee_id for named in employees_named(session, employees, nothing_done)]


@accounts.command("list")
@click.option("--status", type=click.Choice([s.value for s in AccountStatus]), help="Only this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="At most this many.")
def list_command(status: str | None, limit: int) -> None:
    """List accounts by username."""
    with context().sessions() as session:
        rows = [
            (
                a.username,
                a.employee.employee_number,
                a.employee.full_name,
                shown_status(a),
                ", ".join(role.name for role in a.roles),
                f"{a.credentials_emailed_at:%Y-%m-%d %H:%M}" if a.credentials_emailed_at else "never",
            )
            for a in list_accounts(session, status, limit)
        ]
        total = count_accounts(session, status) if len(rows) == limit else len(rows)
    print_table(["USERNAME", "EMPLOYEE", "NAME", "STATUS", "ROLES", "LAST EMAILED (UTC)"], rows)
    print_more(len(rows), total)


def _named_accounts(employees: Sequence[str], question: str, yes: bool) -> list[NamedEmployee]:
    """The employees of EMPLOYEE arguments, after showing who and asking when there are several."""
    with context().sessions() as session:
        named = employees_named(session, employees, "nothing was changed")
    with_account = sum(1 for n in named if n.username is not None)
    if with_account > 1 and not yes:
        print_table(
            ["EMPLOYEE", "NAME", "USERNAME", "STATUS"],
            ((n.employee_number, n.name, n.username or "", n.status or "no account") for n in named),
        )
    confirm_many(question.format(count=with_account), with_account, yes)
    return named


@accounts.command("unlock")
@click.argument("employees", nargs=-1, required=True, metavar="EMPLOYEE...")
@YES
def unlock_command(employees: tuple[str, ...], yes: bool) -> None:
    """Unlock accounts that failed sign-ins locked (audited).

    \b
    EMPLOYEE: an employee number, email address or username.
    """
    named = _named_accounts(employees, "Unlock these {count} accounts?", yes)
    with context().sessions.begin() as session:
        result = unlock_accounts(session, cli_actor(), [n.employee_id for n in named])
    for number, username in result.changed:
        click.echo(f"Unlocked {printable(number)} ({printable(username)}).")
    usernames = {n.employee_number: n.username for n in named}
    for number, why in result.unchanged:
        if why == LeftAlone.NOT_LOCKED:
            click.echo(f"Not locked: {printable(number)} ({printable(usernames[number])}).")
    gone = [number for number, why in result.unchanged if why == LeftAlone.NO_ACCOUNT]
    gone += _numbers_of(named, result.unknown)
    if gone:
        click.echo(f"No account: {printable(', '.join(gone))}", err=True)
        sys.exit(1)


def _numbers_of(named: Sequence[NamedEmployee], employee_ids: Sequence[int]) -> list[str]:
    """The employee numbers of some of the `named` employees, by id."""
    numbers = {n.employee_id: n.employee_number for n in named}
    return [numbers[employee_id] for employee_id in employee_ids]


def _change(
    employees: Sequence[str],
    yes: bool,
    question: str,
    done: str,
    change: ChangeAccounts,
) -> None:
    """Disable or enable the accounts of EMPLOYEE arguments (asking first when there are several), and
    print what was done; exit 1 when an employee vanished meanwhile."""
    named = _named_accounts(employees, question, yes)
    with context().sessions.begin() as session:
        result = change(session, cli_actor(), [n.employee_id for n in named])
    for number, username in result.changed:
        click.echo(f"{done} {printable(username)} ({printable(number)})")
    for number, why in result.unchanged:
        click.echo(f"Left {printable(number)} alone: {why}")
    click.echo(f"{done} {len(result.changed)} account(s).")
    if result.unknown:
        unknown = ", ".join(_numbers_of(named, result.unknown))
        click.echo(f"Unknown employee number(s): {printable(unknown)}", err=True)
        sys.exit(1)


@accounts.command("disable")
@click.argument("employees", nargs=-1, required=True, metavar="EMPLOYEE...")
@YES
def disable_command(employees: tuple[str, ...], yes: bool) -> None:
    """Disable accounts: no sign-in, no credentials emailed.

    \b
    EMPLOYEE: an employee number, email address or username.
    """
    _change(employees, yes, "Disable these {count} accounts?", "Disabled", disable_accounts)


@accounts.command("enable")
@click.argument("employees", nargs=-1, required=True, metavar="EMPLOYEE...")
@YES
def enable_command(employees: tuple[str, ...], yes: bool) -> None:
    """Enable disabled accounts again.

    \b
    EMPLOYEE: an employee number, email address or username.
    """
    _change(employees, yes, "Enable these {count} accounts?", "Enabled", enable_accounts)


@accounts.command("rename")
@click.argument("employee")
@click.argument("new_username")
def rename_command(employee: str, new_username: str) -> None:
    """Give an account a new username, and email the employee.

    \b
    The account of EMPLOYEE gets NEW_USERNAME.
    EMPLOYEE: an employee number, email address or username.
    Sign-in accepts only the new username from then on.
    """
    ctx = context()
    try:
        with ctx.sessions.begin() as session:
            (employee_id,) = _ids(session, [employee], "nothing was renamed")
            renamed = rename_account(session, cli_actor(), employee_id, new_username)
    except AccountChangeError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"Renamed {renamed.old_username} to {renamed.new_username} ({printable(renamed.employee_number)})."
    )
    if notify_renamed(ctx, renamed, cli_actor()):
        jobs.join()
    click.echo(rename_notice_text(renamed))


@accounts.command("roles")
@click.argument("employees", nargs=-1, metavar="[EMPLOYEE]...")
@click.option("--add", "add", multiple=True, metavar="ROLE", help="A role to give (repeatable).")
@click.option("--remove", "remove", multiple=True, metavar="ROLE", help="A role to take away (repeatable).")
@click.option("--department", help="Every active employee of this department instead of EMPLOYEEs.")
@click.option("--create-role", is_flag=True, help="Create the roles to add that do not exist yet.")
@YES
def roles_command(
    employees: tuple[str, ...],
    add: tuple[str, ...],
    remove: tuple[str, ...],
    department: str | None,
    create_role: bool,
    yes: bool,
) -> None:
    """Add and remove roles on accounts, in one action.

    \b
    The accounts of EMPLOYEEs, or of every active employee of --department.
    EMPLOYEE: an employee number, email address or username.
    Every role named must exist (--create-role: create the roles to add).
    Several accounts are listed and confirmed first (--yes: without asking).
    Audited as one action, and one event per account whose roles changed.
    """
    if bool(employees) == bool(department):
        raise click.UsageError("give either --department or one or more employees")
    if not add and not remove:
        raise click.UsageError("give at least one role to --add or to --remove")
    ctx = context()
    try:
        with ctx.sessions() as session:
            employee_ids = _ids(session, employees, "nothing was changed") if employees else ()
            targets, _ = role_targets(session, employee_ids, department)
        reached = [t for t in targets if t.username is not None]
        if len(reached) > 1 and not yes:
            print_table(
                ["EMPLOYEE", "NAME", "USERNAME"], ((t.employee_number, t.name, t.username) for t in reached)
            )
        confirm_many(f"Change the roles of these {len(reached)} accounts?", len(reached), yes)
        with ctx.sessions.begin() as session:
            result = edit_roles(
                session,
                cli_actor(),
                add,
                remove,
                employee_ids,
                department,
                create_roles=create_role,
                confirmed=[t.employee_id for t in targets],
            )
    except UnknownRoles as error:
        them = "it" if len(error.to_add) == 1 else "them"
        hint = f" To create {them}, add --create-role." if error.to_add else ""
        raise click.ClickException(f"{error}{hint} Nothing was changed.") from error
    except AccountChangeError as error:
        raise click.ClickException(str(error)) from error
    unchanged = f"; {printable(result.unchanged_text())}" if result.unchanged else ""
    click.echo(f"Changed the roles of {result.changed} account(s){unchanged}.")
    if result.without_account:
        click.echo(f"No account (left alone): {printable(', '.join(result.without_account))}")
