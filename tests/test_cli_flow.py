"""The issue's "done when" flow through the CLI: upgrade, import, create accounts, email credentials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.passwords import verify_password
from bot.settings import PROJECT_ROOT, Settings
from models import Account, Delivery, DeliveryStatus, Employee
from tests.builders import present
from tests.cli_helpers import RunCli
from tests.credentials_helpers import body_text, dump_database, outbox_messages, password_in
from tests.standins.sendgrid import SendGridStandIn

SAMPLE = PROJECT_ROOT / "samples" / "employees.csv"


def run_flow(cli: RunCli) -> str:
    for args in (
        ("db", "upgrade"),
        ("employees", "import", SAMPLE),
        ("accounts", "create", "--all-missing"),
        ("credentials", "send", "--all-pending", "--yes"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)
    return result.output


def accounts_by_address(session: Session) -> dict[str, Account]:
    """Accounts of the sample employees, by the lower-case address their credentials went to (the work
    one, or the personal one before their start date under CREDENTIAL_ADDRESS=auto)."""
    session.expire_all()
    rows = session.execute(
        sa.select(Delivery.email_address, Account).join(Account, Account.id == Delivery.account_id)
    )
    return {present(email).lower(): account for email, account in rows}


def test_flow_leaves_two_eml_per_employee_whose_passwords_work(
    cli: RunCli, session: Session, settings: Settings
) -> None:
    run_flow(cli)
    accounts = accounts_by_address(session)
    assert len(accounts) == session.scalar(sa.select(sa.func.count(Employee.id))) == 10
    messages = outbox_messages(settings.outbox_dir)
    assert len(messages) == 2 * len(accounts)
    for address, account in accounts.items():
        mine = {m["X-Credbot-Category"]: m for m in messages if address in m["To"].lower()}
        assert set(mine) == {"credbot-welcome", "credbot-username"}
        password = password_in(body_text(mine["credbot-welcome"]))
        assert verify_password(password, account.password_hash)
        assert account.username in body_text(mine["credbot-username"])
    statuses = session.scalars(sa.select(Delivery.status)).all()
    assert statuses == [DeliveryStatus.SENT] * 10


def test_flow_sends_the_same_mail_to_sendgrid(
    cli: RunCli,
    session: Session,
    settings: Settings,
    sendgrid_standin: SendGridStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", sendgrid_standin.api_key)
    monkeypatch.setenv("SENDGRID_API_HOST", sendgrid_standin.url)
    output = run_flow(cli)
    assert "Mail goes through SendGrid" in output
    assert outbox_messages(settings.outbox_dir) == []
    accounts = accounts_by_address(session)
    assert len(sendgrid_standin.messages) == 2 * len(accounts) == 20 and sendgrid_standin.invalid == []
    for address, account in accounts.items():
        sent = {m["categories"][0]: m for m in sendgrid_standin.sent_to(address)}
        assert set(sent) == {"credbot-welcome", "credbot-username"}
        password = password_in(sent["credbot-welcome"]["content"][0]["value"])
        assert verify_password(password, account.password_hash)
        assert re.search(
            rf"\b{re.escape(account.username)}\b", sent["credbot-username"]["content"][0]["value"]
        )
        assert password not in dump_database(session)


def test_db_upgrade_says_what_it_did(cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    first = cli("db", "upgrade").output
    assert first.startswith("Created the database schema (revision ")
    assert "tables account_roles, accounts, admins, audit_events" in first and "up to date" not in first
    again = cli("db", "upgrade").output
    assert again.startswith("Database is up to date (revision ")
