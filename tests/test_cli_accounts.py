"""`credbot accounts create` and `credbot accounts list`."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from bot.settings import PROJECT_ROOT
from models import Account, utcnow
from tests.builders import audit_events
from tests.cli_helpers import RunCli

SAMPLE = PROJECT_ROOT / "samples" / "employees.csv"


def test_create_all_missing_from_the_sample(cli: RunCli) -> None:
    assert cli("employees", "import", SAMPLE).exit_code == 0
    result = cli("accounts", "create", "--all-missing")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["USERNAME", "EMPLOYEE", "NAME", "ROLES"]
    rows = {line.split()[1]: line.split()[0] for line in lines[2:-1]}
    assert rows["1001"] == "jsmith" and rows["1002"] == "jsmith2"
    assert rows["1003"] == "znunez-obrien" and rows["1005"] == "sostergaard"
    assert lines[-1] == "Created 10 account(s)."
    assert "Employee, Developer, On-call" in result.output

    again = cli("accounts", "create", "--all-missing")
    assert again.output == "Created 0 account(s).\n"


def test_create_named_accounts_reports_existing_and_refuses_unknown(cli: RunCli) -> None:
    cli("employees", "import", SAMPLE)
    assert cli("accounts", "create", "1001").exit_code == 0
    refused = cli("accounts", "create", "1001", "1002", "4242")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr == (
        "Error: no employee has the number, email address or username 4242; no account was created\n"
    )
    result = cli("accounts", "create", "john.smith@example.com", "1002")
    assert result.exit_code == 0
    assert "Created 1 account(s)." in result.stdout
    assert "Already had an account: 1001 (jsmith)" in result.stdout


def test_create_needs_a_selection(cli: RunCli) -> None:
    for args in ([], ["--all-missing", "1001"]):
        result = cli("accounts", "create", *args)
        assert result.exit_code == 2
        assert "give either --all-missing or one or more employees" in result.output


def test_bad_username_pattern(cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERNAME_PATTERN", "{nick}")
    cli("employees", "import", SAMPLE)
    result = cli("accounts", "create", "--all-missing")
    assert result.exit_code == 1
    assert "USERNAME_PATTERN '{nick}' must use only the fields" in result.stderr


def test_list_accounts(cli: RunCli) -> None:
    cli("employees", "import", SAMPLE)
    cli("accounts", "create", "1003", "1001")
    lines = cli("accounts", "list").output.splitlines()
    assert lines[0].split() == ["USERNAME", "EMPLOYEE", "NAME", "STATUS", "ROLES", "LAST", "EMAILED", "(UTC)"]
    assert re.split(r"\s{2,}", lines[2]) == [
        "jsmith",
        "1001",
        "John Smith",
        "pending",
        "Employee, Finance Approver",
        "never",
    ]
    assert lines[3].startswith("znunez-obrien  1003      Zoë Ñúñez-O'Brien")
    assert len(lines) == 4
    limited = cli("accounts", "list", "--status", "pending", "--limit", "1").output.splitlines()
    assert limited[3:] == ["… and 1 more (use --limit)"]
    assert len(cli("accounts", "list", "--status", "active").output.splitlines()) == 2
    assert cli("accounts", "list", "--status", "sleeping").exit_code == 2


def lock(session: Session, *usernames: str, minutes: float = 10) -> None:
    """Lock accounts as failed sign-ins do (only `locked_until` is set)."""
    for username in usernames:
        session.query(Account).filter_by(username=username).one().locked_until = utcnow() + timedelta(
            minutes=minutes
        )
    session.commit()


def test_locked_accounts_show_as_locked_and_can_be_unlocked(cli: RunCli, session: Session) -> None:
    cli("employees", "import", SAMPLE)
    cli("accounts", "create", "1001", "1002", "1003")
    lock(session, "jsmith", "znunez-obrien")
    lock(session, "jsmith2", minutes=-1)  # a lock that is over
    locked = cli("accounts", "list", "--status", "locked").output.splitlines()[2:]
    assert [line.split()[0] for line in locked] == ["jsmith", "znunez-obrien"]
    assert all(re.split(r"\s{2,}", line)[3] == "locked" for line in locked)
    assert "0 locked" not in cli("report").output and "2 locked" in cli("report").output

    unknown = cli("accounts", "unlock", "1001", "1002", "9999", "--yes")
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert "no employee has the number, email address or username 9999; nothing was changed" in unknown.stderr
    result = cli("accounts", "unlock", "1001", "1002", "--yes")
    assert result.exit_code == 0
    assert "Unlocked 1001 (jsmith)." in result.output
    assert "Not locked: 1002 (jsmith2)." in result.output
    assert [
        line.split()[0] for line in cli("accounts", "list", "--status", "locked").output.splitlines()[2:]
    ] == ["znunez-obrien"]
    session.expire_all()
    jsmith = session.query(Account).filter_by(username="jsmith").one()
    assert (jsmith.locked_until, jsmith.failed_login_count) == (None, 0)
    [unlocked] = audit_events(session, "account.unlocked")
    assert unlocked.target == "account:jsmith" and unlocked.actor.startswith("cli:")


def test_unlock_tells_which_employees_have_no_account(cli: RunCli, session: Session) -> None:
    """Unlock reports through the one result of account changes: the locked account is unlocked, the
    unlocked one named with its username, and an employee without an account makes the command fail."""
    cli("employees", "import", SAMPLE)
    cli("accounts", "create", "1001", "1002")
    lock(session, "jsmith")
    result = cli("accounts", "unlock", "1003", "1001", "1002", "--yes")
    assert result.exit_code == 1
    assert result.stdout == "Unlocked 1001 (jsmith).\nNot locked: 1002 (jsmith2).\n"
    assert result.stderr == "No account: 1003\n"
    assert [event.target for event in audit_events(session, "account.unlocked")] == ["account:jsmith"]
