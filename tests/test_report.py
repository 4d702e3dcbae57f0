"""The status report and the `report` / `audit` commands."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from bot.accounts import create_accounts
from bot.audit import AuditAction, record
from bot.directory import import_employees
from bot.reports import build_report
from bot.settings import Settings
from models import Account, AccountStatus, BatchStatus, DeliveryStatus, Employee, utcnow
from tests.builders import add_batch, add_delivery, employee_ids
from tests.cli_helpers import RunCli

CSV = (
    "employee_number,first_name,last_name,email,active\n"
    "1,Ann,Lee,ann@example.com,yes\n"
    "2,Bo,Ek,bo@example.com,yes\n"
    "3,Cy,Ox,,yes\n"
    "4,Di,Ng,di@example.com,no\n"
    "5,Ed,Po,ed@example.com,yes\n"
)


def populate(session: Session, settings: Settings, tmp_path: Path) -> None:
    """5 employees (1 inactive, 1 without email), accounts for 1-3, a batch with each delivery status."""
    (tmp_path / "e.csv").write_text(CSV, encoding="utf-8")
    import_employees(session, tmp_path / "e.csv", "tester")
    create_accounts(session, settings, "tester", employee_ids(session, "1", "2", "3"))
    session.commit()
    people = {e.employee_number: e for e in session.query(Employee)}
    ann = session.query(Account).filter_by(username="alee").one()
    ann.status, ann.credentials_emailed_at = AccountStatus.INVITED, utcnow()
    session.commit()
    yesterday = utcnow() - timedelta(days=1)
    old = add_batch(
        session, requested_by="U0OLD", source="slack", status=BatchStatus.RUNNING, created_at=yesterday
    )
    new = add_batch(session, requested_by="cli:hr")
    deliveries = [
        (new, "1", DeliveryStatus.SENT, None),
        (new, "2", DeliveryStatus.FAILED, "400: does not contain a valid address"),
        (new, "3", DeliveryStatus.SKIPPED, "no email address"),
        (old, "2", DeliveryStatus.FAILED, "503: gave up after 4 attempts"),
        (old, "1", DeliveryStatus.PENDING, None),
    ]
    for batch, number, status, error in deliveries:
        add_delivery(session, batch, people[number], status, error=error, updated_at=batch.created_at)


def test_build_report(session: Session, settings: Settings, tmp_path: Path) -> None:
    populate(session, settings, tmp_path)
    report = build_report(session)
    assert (report.employees, report.active_employees) == (5, 4)
    assert report.accounts_by_status == {"pending": 2, "invited": 1, "active": 0, "locked": 0, "disabled": 0}
    assert report.without_account == 1  # 5; 4 is inactive
    assert report.without_email == 1  # 3
    assert report.never_emailed == 2  # 2 and 3
    assert [(b.requested_by, b.sent, b.failed, b.skipped, b.pending) for b in report.batches] == [
        ("cli:hr", 1, 1, 1, 0),
        ("U0OLD", 0, 1, 0, 1),
    ]
    assert [(f.employee_number, f.name, f.address, f.error) for f in report.failures] == [
        ("2", "Bo Ek", "bo@example.com", "400: does not contain a valid address"),
        ("2", "Bo Ek", "bo@example.com", "503: gave up after 4 attempts"),
    ]
    limited = build_report(session, batches=1, failures=1)
    assert len(limited.batches) == 1 and len(limited.failures) == 1


def test_empty_report(session: Session) -> None:
    report = build_report(session)
    assert report.employees == 0 and report.batches == [] and report.failures == []
    assert set(report.accounts_by_status.values()) == {0}


def test_report_command(cli: RunCli, session: Session, settings: Settings, tmp_path: Path) -> None:
    populate(session, settings, tmp_path)
    result = cli("report")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Employees: 5 (4 active)" in out
    assert "2 pending, 1 invited, 0 active, 0 locked, 0 disabled" in out
    assert "Active employees without an account:   1" in out
    assert "Active employees without an email:     1" in out
    assert "Accounts never emailed their password: 2" in out
    batch_line = next(line for line in out.splitlines() if "cli:hr" in line).split()
    assert batch_line[-5:] == ["finished", "1", "1", "1", "0"]
    assert "503: gave up after 4 attempts" in out
    assert "400: does not contain a valid address" in out


def test_report_command_on_an_empty_database(cli: RunCli) -> None:
    result = cli("report")
    assert result.exit_code == 0
    assert result.output.count("  none") == 2


def test_audit_command(cli: RunCli, session: Session) -> None:
    record(session, "cli:hr", AuditAction.ADMIN_ADDED, "U123", name="Zoë")
    record(session, "U999", AuditAction.ACCESS_REFUSED, "/credbot")
    session.commit()
    out = cli("audit").output.splitlines()
    assert out[0].split() == ["WHEN", "(UTC)", "ACTOR", "ACTION", "TARGET", "DETAILS"]
    assert "access.refused" in out[2] and "admin.added" in out[3]
    assert out[3].endswith('{"name": "Zoë"}')
    filtered = cli("audit", "--action", "admin.added").output
    assert "admin.added" in filtered and "access.refused" not in filtered
    assert cli("audit", "--limit", "1").output.splitlines()[3:] == ["… and 1 more (use --limit)"]
    refused = cli("audit", "--action", "nonsense")
    assert refused.exit_code == 2 and "nonsense" in refused.output
