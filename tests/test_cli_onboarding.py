"""`credbot accounts rename|roles|unlock|disable|enable`, `credbot report --csv` and `credbot digest`."""

from __future__ import annotations

import csv
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.settings import PROJECT_ROOT, Settings
from models import Account, Employee, utcnow
from tests.builders import audit_events
from tests.cli_helpers import RunCli
from tests.credentials_helpers import body_text, outbox_messages

SAMPLE = PROJECT_ROOT / "samples" / "employees.csv"


@pytest.fixture
def sample(cli: RunCli) -> RunCli:
    assert cli("employees", "import", SAMPLE).exit_code == 0
    assert cli("accounts", "create", "--all-missing").exit_code == 0
    return cli


def actions(session: Session) -> list[str]:
    session.expire_all()
    return [event.action for event in audit_events(session)]


def test_rename_emails_the_employee_and_refuses_bad_names(
    sample: RunCli, session: Session, settings: Settings
) -> None:
    result = sample("accounts", "rename", "1001", "john.smith")
    assert result.exit_code == 0, result.output
    assert "Renamed jsmith to john.smith (1001)." in result.output
    assert "An email with the new username was queued for john.smith@example.com" in result.output
    (mail,) = outbox_messages(settings.outbox_dir)
    assert mail["To"] == "John Smith <john.smith@example.com>"
    assert "john.smith" in body_text(mail)
    assert actions(session)[-1] == "account.renamed"
    for args, message in [
        (("1002", "john.smith"), "already taken"),
        (("1002", "jane smith"), "A username must be"),
        (("4242", "nobody"), "no employee has the number, email address or username 4242"),
    ]:
        refused = sample("accounts", "rename", *args)
        assert refused.exit_code == 1 and message in refused.stderr
    assert len(outbox_messages(settings.outbox_dir)) == 1


def test_roles_for_numbers_and_a_department(sample: RunCli, session: Session) -> None:
    result = sample(
        "accounts", "roles", "--add", "Auditor", "--create-role", "--department", "engineering", "--yes"
    )
    assert result.exit_code == 0, result.output
    assert result.output == "Changed the roles of 3 account(s).\n"
    result = sample("accounts", "roles", "--remove", "Auditor", "--remove", "Developer", "1003", "4242")
    assert result.exit_code == 1 and "username 4242; nothing was changed" in result.stderr
    result = sample("accounts", "roles", "--remove", "Auditor", "--remove", "Developer", "1003")
    assert result.output == "Changed the roles of 1 account(s).\n"
    roles = {
        a.username: sorted(r.name for r in a.roles)
        for a in session.scalars(
            select(Account).where(Account.username.in_(["znunez-obrien", "sostergaard"]))
        )
    }
    assert roles == {
        "znunez-obrien": ["Employee", "On-call"],
        "sostergaard": ["Auditor", "Developer", "Employee"],
    }
    assert actions(session).count("account.roles_edited") == 2
    assert actions(session).count("account.roles_changed") == 4
    verified = sample("audit", "verify")  # the per-employee events, written in bulk, are sealed too
    assert verified.exit_code == 0, verified.output
    for args in (("--add", "X"), ("1001",), ("--add", "X", "--department", "Sales", "1001")):
        assert sample("accounts", "roles", *args).exit_code == 2


def test_unlock_disable_enable(sample: RunCli, session: Session) -> None:
    account = session.scalars(select(Account).where(Account.username == "jsmith")).one()
    account.locked_until = utcnow() + timedelta(minutes=5)
    session.commit()
    result = sample("accounts", "unlock", "1001", "1002", "--yes")
    assert "Unlocked 1001 (jsmith)." in result.output and "Not locked: 1002 (jsmith2)." in result.output
    assert "Disabled 2 account(s)." in sample("accounts", "disable", "1001", "1002", "-y").output
    assert "Enabled 1 account(s)." in sample("accounts", "enable", "1002").output
    unknown = sample("accounts", "enable", "999")
    assert unknown.exit_code == 1 and "username 999; nothing was changed" in unknown.stderr
    session.expire_all()
    statuses = {a.username: a.status for a in session.scalars(select(Account))}
    assert statuses["jsmith"] == "disabled" and statuses["jsmith2"] == "pending"
    assert actions(session)[-4:] == [
        "account.unlocked",
        "account.disabled",
        "account.disabled",
        "account.enabled",
    ]


def test_report_csv(sample: RunCli, session: Session, tmp_path: Path) -> None:
    employee = session.scalars(select(Employee).where(Employee.employee_number == "1004")).one()
    employee.first_name = "=HYPERLINK(evil)"
    session.commit()
    target = tmp_path / "accounts.csv"
    result = sample("report", "--csv", target)
    assert result.exit_code == 0 and "Wrote 10 account(s)" in result.output
    assert target.read_bytes().startswith(b"\xef\xbb\xbfemployee_number,name,email,department,username,")
    with target.open(newline="", encoding="utf-8-sig") as file:  # what Excel reads as UTF-8
        rows = list(csv.DictReader(file))
    assert len(rows) == 10
    by_number = {row["employee_number"]: row for row in rows}
    assert by_number["1004"]["name"] == "'=HYPERLINK(evil) Lefèvre"
    assert by_number["1003"]["email"] == "zoe.nunez@example.com"
    assert by_number["1003"]["department"] == "Engineering"
    assert by_number["1003"]["roles"] == "Developer, Employee, On-call"
    assert by_number["1001"]["status"] == "pending" and by_number["1001"]["last_emailed_utc"] == ""
    assert actions(session)[-1] == "report.accounts_exported"


def test_digest_prints_expiring_expired_and_locked(sample: RunCli, session: Session) -> None:
    now = utcnow()
    accounts = {a.username: a for a in session.scalars(select(Account))}
    for username, hours in (("jsmith", 3), ("jsmith2", -5)):
        accounts[username].credentials_emailed_at = now - timedelta(days=2)
        accounts[username].must_change_password = True
        accounts[username].temp_password_expires_at = now + timedelta(hours=hours)
    accounts["mchen"].locked_until = now + timedelta(minutes=9)
    session.commit()
    output = sample("digest").output
    expiring, expired, locked = output.split("\n\n")[1:4]
    assert (
        expiring.startswith("Credentials expiring within 24 hours: 1")
        and "John Smith (1001, jsmith)" in expiring
    )
    assert expired.startswith("Expired unused in the last 24 hours: 1") and "jsmith2" in expired
    assert locked.startswith("Locked accounts: 1") and "Mei Chen (1006, mchen): locked until" in locked
    posted = sample("digest", "--post")
    assert posted.exit_code == 1 and "AUDIT_CHANNEL_ID is not set" in posted.stderr
