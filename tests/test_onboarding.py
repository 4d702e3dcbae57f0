"""Onboarding state, the funnel, the digest, and the account changes behind App Home and the CLI."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.account_report import HEADER, neutralise, write_accounts_csv
from bot.accounts import (
    AccountChangeError,
    LeftAlone,
    NoAccount,
    UnknownRoles,
    disable_accounts,
    edit_roles,
    enable_accounts,
    rename_account,
    unlock_accounts,
)
from bot.digest import build_digest
from bot.onboarding import Stage, desk, stage_count, stage_employee_ids, stage_page
from models import Account, AccountStatus, AuditEvent, DeliveryStatus, Employee, Role, utcnow
from tests.builders import add_batch, add_delivery, add_employee, audit_events, employee_ids, present


def emailed(session: Session, number: str, hours_left: float, **account: object) -> Employee:
    """An employee whose temporary password was emailed and expires in `hours_left` hours."""
    now = utcnow()
    employee = add_employee(session, number, "Emma", f"Mailed{number}", status="invited")
    assert employee.account is not None
    employee.account.credentials_emailed_at = now - timedelta(hours=1)
    employee.account.must_change_password = True
    employee.account.temp_password_expires_at = now + timedelta(hours=hours_left)
    for name, value in account.items():
        setattr(employee.account, name, value)
    session.flush()
    return employee


@pytest.fixture
def directory(session: Session) -> Session:
    """Two without an account, one never emailed, one waiting, one expiring, two expired, one signed in,
    one locked, one disabled, one inactive."""
    now = utcnow()
    add_employee(session, "100", "Nora", "Noaccount", username=None)
    add_employee(session, "101", "Nils", "Noaccount", username=None)
    add_employee(session, "102", "Ivy", "Inactive", username=None, active=False)
    add_employee(session, "200", "Nev", "Neveremailed")
    emailed(session, "300", 48)
    emailed(session, "301", 5)
    emailed(session, "302", -2)
    emailed(session, "303", -100)
    emailed(session, "304", 48, first_sign_in_at=now, status="active")
    emailed(session, "305", 48, locked_until=now + timedelta(minutes=10), first_sign_in_at=now)
    add_employee(session, "400", "Dee", "Disabled", status="disabled")
    session.commit()
    return session


def numbers(session: Session, stage: Stage) -> list[str]:
    return [person.employee_number for person in stage_page(session, stage, 0, 100)]


def test_each_stage_holds_the_right_people(directory: Session) -> None:
    assert numbers(directory, Stage.NO_ACCOUNT) == ["101", "100"]  # by name: Nils before Nora
    assert numbers(directory, Stage.NEVER_EMAILED) == ["200"]
    assert numbers(directory, Stage.AWAITING_SIGN_IN) == ["301", "300"]  # soonest deadline first
    assert numbers(directory, Stage.EXPIRING) == ["301"]
    assert numbers(directory, Stage.EXPIRED) == ["303", "302"]
    assert numbers(directory, Stage.LOCKED) == ["305"]
    assert numbers(directory, Stage.DISABLED) == ["400"]
    assert stage_count(directory, Stage.EXPIRED) == 2
    assert len(stage_employee_ids(directory, Stage.NO_ACCOUNT)) == 2


def test_desk_counts_agree_with_the_lists_and_give_the_funnel(directory: Session) -> None:
    state = desk(directory)
    for stage in Stage:
        assert state.counts[stage] == len(numbers(directory, stage)), stage
        assert len(state.samples[stage]) == min(5, state.counts[stage])
    assert state.employees == 11
    assert (state.funnel.accounts, state.funnel.emailed, state.funnel.signed_in) == (8, 6, 2)
    assert state.funnel.password_changed == 0
    assert state.samples[Stage.EXPIRING][0].deadline is not None


def test_paging_walks_the_whole_list(session: Session) -> None:
    for n in range(23):
        add_employee(session, f"{n:03d}", username=None)
    session.commit()
    pages = [stage_page(session, Stage.NO_ACCOUNT, page, 10) for page in range(3)]
    assert [len(page) for page in pages] == [10, 10, 3]
    assert len({p.employee_id for page in pages for p in page}) == 23


def test_digest_lists_expiring_recently_expired_and_locked(directory: Session) -> None:
    digest = build_digest(directory)
    assert [p.employee_number for p in digest.expiring] == ["301"]
    assert [p.employee_number for p in digest.expired_recently] == ["302"]  # 303 expired days ago
    assert digest.expired_total == 2
    assert [p.employee_number for p in digest.locked] == ["305"]


def test_unlock_disable_enable_are_audited(directory: Session) -> None:
    unknown = 1 + max(directory.scalars(select(Employee.id)))
    result = unlock_accounts(
        directory,
        "cli:test",
        [*employee_ids(directory, "305", "300"), unknown, *employee_ids(directory, "100")],
    )
    assert result.changed == [("305", "user305")]
    assert result.unchanged == [("300", LeftAlone.NOT_LOCKED), ("100", LeftAlone.NO_ACCOUNT)]
    assert result.unknown == [unknown]
    disabled = disable_accounts(directory, "cli:test", employee_ids(directory, "300", "400"))
    assert disabled.changed == [("300", "user300")]
    enabled = enable_accounts(directory, "cli:test", employee_ids(directory, "300", "400", "200"))
    assert enabled.changed == [("300", "user300"), ("400", "user400")]
    assert enabled.unchanged == [("200", "not disabled")]
    directory.commit()
    statuses = {name: status for name, status in directory.execute(select(Account.username, Account.status))}
    assert statuses["user300"] == AccountStatus.INVITED  # back at its funnel step
    assert statuses["user400"] == AccountStatus.PENDING
    assert numbers(directory, Stage.LOCKED) == []
    assert [event.action for event in audit_events(directory)] == [
        "account.unlocked",
        "account.disabled",
        "account.enabled",
        "account.enabled",
    ]


def test_rename_checks_rules_and_uniqueness(directory: Session) -> None:
    nev, nora = employee_ids(directory, "200", "100")
    for bad, problem in [
        ("-ada", "must be 1 to 100 characters"),
        ("ada lovelace", "must be"),
        ("a" * 101, "must be"),
        ("User300", "already taken"),
        ("user200", "already"),
    ]:
        with pytest.raises(AccountChangeError, match=problem):
            rename_account(directory, "cli:test", nev, bad)
    with pytest.raises(NoAccount, match="has no account"):
        rename_account(directory, "cli:test", nora, "nora")
    renamed = rename_account(directory, "cli:test", nev, "  Nev.Neveremailed ")
    directory.commit()
    assert (renamed.old_username, renamed.new_username) == ("user200", "nev.neveremailed")
    [event] = audit_events(directory, "account.renamed")
    assert event.details["old_username"] == "user200" and event.target == "account:nev.neveremailed"
    employee = directory.scalars(select(Employee).where(Employee.employee_number == "200")).one()
    assert "nev.neveremailed" in employee.search_text and "user200" not in employee.search_text


def test_bulk_roles_one_event_per_employee_under_one_action(session: Session) -> None:
    for n in range(3):
        employee = add_employee(session, f"{n}", username=f"u{n}")
        employee.department = "Finance" if n < 2 else "Sales"
    add_employee(session, "9", username=None).department = "Finance"
    session.add(Role(name="Auditor"))
    session.commit()
    with pytest.raises(UnknownRoles, match=r"No such role: Approver, employee\. The roles are: Auditor\."):
        edit_roles(session, "cli:test", add=["Approver", "employee"], department="finance")
    result = edit_roles(
        session, "cli:test", add=["Approver", "employee"], department="finance", create_roles=True
    )
    session.commit()
    assert (result.changed, result.unchanged, result.without_account) == (2, 0, ["9"])
    roles = {a.username: sorted(r.name for r in a.roles) for a in session.scalars(select(Account))}
    assert roles == {"u0": ["Approver", "employee"], "u1": ["Approver", "employee"], "u2": []}
    unknown = 1 + max(session.scalars(select(Employee.id)))
    again = edit_roles(
        session,
        "cli:test",
        add=["approver"],
        remove=["Employee"],
        employee_ids=[*employee_ids(session, "0", "2"), unknown],
    )
    session.commit()
    assert (again.changed, again.unchanged, again.unknown) == (2, 0, [unknown])
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    groups = [e for e in events if e.action == "account.roles_edited"]
    per_account = [e for e in events if e.action == "account.roles_changed"]
    assert [e.details["group"] for e in per_account] == [
        groups[0].id,
        groups[0].id,
        groups[1].id,
        groups[1].id,
    ]
    assert per_account[2].details == {
        "group": groups[1].id,
        "employee_number": "0",
        "added": [],
        "removed": ["employee"],
    }
    assert per_account[3].details["added"] == ["Approver"]  # the stored spelling
    (first,) = employee_ids(session, "0")
    cases: list[tuple[dict[str, Any], str]] = [  # keyword arguments for edit_roles, the error
        ({"add": [], "remove": []}, "at least one role"),
        ({"add": ["X"], "remove": ["x"]}, "both added and removed"),
        ({"remove": ["Ghost"], "employee_ids": [first]}, "No such role"),
        (
            {"add": ["Aprover"], "employee_ids": [first]},
            r"No such role: Aprover \(did you mean Approver\?\)",
        ),
        ({"add": ["X"], "department": "Finance", "confirmed": [first]}, "changed since it was shown"),
        ({"add": ["X"]}, "Pick employees, or give a department"),
        ({"add": ["X"], "department": "Nowhere"}, "Nobody active"),
    ]
    for bad, message in cases:
        with pytest.raises(AccountChangeError, match=message):
            edit_roles(session, "cli:test", **bad)


def test_csv_report_neutralises_formulas(session: Session) -> None:
    evil = add_employee(
        session,
        "=1+1",
        "@SUM(A1)",
        "-2+3",
        username="+cmd",
        email="-x@example.com",
        department="=cmd|' /C calc'!A0",
    )
    present(evil.account).roles = [Role(name="=HYPERLINK(x)"), Role(name="Employee")]
    tab = add_employee(session, "1001", "Tab", "Return", username="\tplain")
    add_employee(session, "1003", "Carriage", "Return", username="\rplain")
    add_employee(session, "1002", username=None)
    session.commit()
    batch = add_batch(session, requested_by="t")
    add_delivery(session, batch, evil, DeliveryStatus.FAILED)
    add_delivery(session, batch, tab, mail_state="bounced")
    out = io.StringIO(newline="")
    assert write_accounts_csv(session, out) == 3
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert tuple(rows[0]) == HEADER
    assert rows[3][:9] == [
        "'=1+1",
        "'@SUM(A1) -2+3",
        "'-x@example.com",
        "'=cmd|' /C calc'!A0",
        "'+cmd",
        "pending",
        "'=HYPERLINK(x), Employee",
        "",
        "failed",
    ]
    assert rows[1][:5] == ["1001", "Tab Return", "e1001@example.com", "", "'\tplain"]
    assert rows[1][8] == "bounced" and rows[2][4] == "'\rplain"
    for cell in (cell for row in rows[1:] for cell in row):
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert neutralise("2026-01-01") == "2026-01-01" and neutralise("-") == "'-"
