"""`credbot credentials send` through click's CliRunner."""

from __future__ import annotations

import click
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.passwords import verify_password
from bot.settings import Settings
from models import Account, AccountStatus, BatchSource, CredentialBatch
from tests.builders import add_employee, present
from tests.cli_helpers import RunCli
from tests.credentials_helpers import outbox_messages, outbox_text, password_in, standin_text
from tests.standins.sendgrid import SendGridStandIn


def batches(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(CredentialBatch)) or 0


def test_send_shows_the_list_then_sends_with_yes(cli: RunCli, session: Session, settings: Settings) -> None:
    ada = add_employee(session, "1", email="Ada@EXAMPLE.com")
    add_employee(session, "2", "Alan", "Turing", username=None)
    result = cli("credentials", "send", "1", "ada@example.com", "2", "--yes")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Will email 1 employee:" in out and "user1" in out and "Ada@example.com" in out
    assert "Cannot email 1 employee (skipped):" in out and "no account" in out
    assert out.count("SENDGRID_API_KEY is not set") == 1 and str(settings.outbox_dir) in out
    assert "can only be emailed now" in out
    assert "sent 1, failed 0, skipped 1" in out
    assert len(outbox_messages(settings.outbox_dir)) == 2
    session.expire_all()
    account = session.scalars(sa.select(Account).where(Account.employee_id == ada.id)).one()
    password = password_in(outbox_text(settings.outbox_dir, "Ada@example.com", "credbot-welcome"))
    assert verify_password(password, account.password_hash) and password not in out


def test_without_yes_and_without_input_nothing_is_sent(
    cli: RunCli, session: Session, settings: Settings
) -> None:
    add_employee(session, "1")
    result = cli("credentials", "send", "--all-pending")
    assert result.exit_code == 1
    assert "not confirmed, nothing was sent" in result.output and "--yes" in result.output
    assert outbox_messages(settings.outbox_dir) == [] and batches(session) == 0


@pytest.mark.parametrize(("answer", "sent"), [("y\n", 2), ("n\n", 0)])
def test_the_confirmation_prompt(
    cli: RunCli, session: Session, settings: Settings, answer: str, sent: int
) -> None:
    add_employee(session, "1")
    result = cli("credentials", "send", "--all-pending", input=answer)
    assert "Email 1 employee now? [y/N]" in result.output
    assert result.exit_code == (0 if sent else 1)
    assert len(outbox_messages(settings.outbox_dir)) == sent


def test_unknown_employees_are_an_error_and_nothing_is_sent(
    cli: RunCli, session: Session, settings: Settings
) -> None:
    add_employee(session, "1")
    result = cli("credentials", "send", "1", "404", "--yes")
    assert result.exit_code == 1
    assert "no employee has the number, email address or username 404; nothing was sent" in result.stderr
    assert batches(session) == 0


def test_usage_needs_either_all_pending_or_employees(cli: RunCli) -> None:
    assert cli("credentials", "send").exit_code == 2
    assert cli("credentials", "send", "--all-pending", "1").exit_code == 2


def test_nobody_to_email(cli: RunCli, session: Session) -> None:
    add_employee(session, "1", status=AccountStatus.DISABLED)
    result = cli("credentials", "send", "--all-pending", "--yes")
    assert result.exit_code == 0 and "Nobody to email" in result.output
    result = cli("credentials", "send", "1", "--yes")
    assert (
        result.exit_code == 0 and "account disabled" in result.output and "Nothing to send" in result.output
    )
    assert batches(session) == 0


def test_failures_are_listed_and_exit_non_zero(
    cli: RunCli,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", sendgrid_standin.api_key)
    monkeypatch.setenv("SENDGRID_API_HOST", sendgrid_standin.url)
    ada = add_employee(session, "1")
    alan = add_employee(session, "2", "Alan", "Turing")
    sendgrid_standin.answer(400, to=alan.email, errors=[{"message": "Mailbox unavailable"}])
    result = cli("credentials", "send", "--all-pending", "--yes")
    assert result.exit_code == 1
    assert f"Mail goes through SendGrid ({sendgrid_standin.url})" in result.output
    assert "sent 1, failed 1, skipped 0" in result.output
    assert "welcome email not sent: SendGrid 400: Mailbox unavailable" in result.output
    password = password_in(standin_text(sendgrid_standin, present(ada.email), "credbot-welcome"))
    session.expire_all()
    stored = session.scalar(sa.select(Account.password_hash).where(Account.employee_id == ada.id))
    assert verify_password(password, stored)


def test_a_refused_api_key_stops_with_one_error(
    cli: RunCli,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.not-the-key")
    monkeypatch.setenv("SENDGRID_API_HOST", sendgrid_standin.url)
    monkeypatch.setenv("MAIL_CONCURRENCY", "1")
    for n in range(3):
        add_employee(session, str(n), "Ada", f"Lovelace{n}")
    result = cli("credentials", "send", "--all-pending", "--yes")
    assert result.exit_code == 1
    assert "sent 0, failed 1, skipped 2" in result.output
    assert result.output.count("Stopped: SendGrid 401") == 1
    assert len(sendgrid_standin.requests) == 1


def test_terminal_escapes_in_names_are_shown_escaped(cli: RunCli, session: Session) -> None:
    """Names stored before the importer refused control characters (or written by other tools)."""
    add_employee(session, "1", "Eve\x1b[2K\x1b[1A", "Hacker\x1b]0;pwned\x07")
    add_employee(session, "2", "Mallory\u202e", "Tab\tNew\nLine", email=None)
    result = cli("credentials", "send", "--all-pending", input="n\n")
    out = result.output
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\t" not in out
    assert "Eve\\x1b[2K\\x1b[1A Hacker\\x1b]0;pwned\\x07" in out
    assert "Mallory\\u202e Tab\\tNew\\nLine" in out
    listed = cli("employees", "list").output
    assert "\x1b" not in listed and "Eve\\x1b[2K" in listed


def test_outbox_file_names_say_whose_message_it_is(cli: RunCli, session: Session, settings: Settings) -> None:
    add_employee(session, "E-1042")
    add_employee(session, "../7 x", "Alan", "Turing", email="alan@example.com")
    assert cli("credentials", "send", "--all-pending", "--yes").exit_code == 0
    names = sorted(path.name for path in settings.outbox_dir.iterdir())
    assert len(names) == 4
    assert sum("-credbot-welcome-E_1042-" in name for name in names) == 1
    assert sum("-credbot-username-E_1042-" in name for name in names) == 1
    assert sum("-credbot-welcome-.._7_x-" in name for name in names) == 1


def test_an_address_changed_between_the_preview_and_yes_is_skipped(
    cli: RunCli, session: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = add_employee(session, "1", email="ada@example.com")
    add_employee(session, "2", "Alan", "Turing")

    def import_then_yes(*args: object, **kwargs: object) -> bool:
        ada.email = "ada.new@example.com"  # an import while the admin reads the list
        session.commit()
        return True

    monkeypatch.setattr(click, "confirm", import_then_yes)
    result = cli("credentials", "send", "--all-pending")
    assert result.exit_code == 0, result.output
    assert "ada@example.com" in result.output.split("Email 2")[0]
    assert "sent 1, failed 0, skipped 1" in result.output
    assert "address changed since the batch was confirmed" in result.output
    assert all("ada" not in m["To"] for m in outbox_messages(settings.outbox_dir))


def test_batches_lists_counts_and_resume_takes_up_a_stalled_batch(
    cli: RunCli, session: Session, settings: Settings
) -> None:
    from bot.cli.common import context
    from bot.sending.batches import start_batch

    add_employee(session, "1")
    assert "sent 1" in cli("credentials", "send", "--all-pending", "--yes").output
    stalled = start_batch(
        context(), [add_employee(session, "2", "Alan", "Turing").id], "cli:gone", BatchSource.CLI
    )
    listing = cli("batches").output
    assert "BATCH" in listing and "IN DOUBT" in listing
    lines = {line.split()[0]: line for line in listing.splitlines()[2:]}
    assert " finished " in lines["1"] and lines["1"].split()[-5:] == ["1", "0", "0", "0", "0"]
    assert " running " in lines[str(stalled)] and lines[str(stalled)].split()[-1] == "1"

    resumed = cli("batches", "resume", str(stalled))
    assert resumed.exit_code == 0, resumed.output
    assert f"Batch {stalled}: sent 1, failed 0, skipped 0." in resumed.output
    assert "resumed 1x" in cli("batches").output
    again = cli("batches", "resume", str(stalled))
    assert "is finished: nothing to resume" in again.output
    assert "no credential batch 99" in cli("batches", "resume", "99").output
