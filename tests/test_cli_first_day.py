"""An admin's first day with the command line (issue 22): each command tells the truth.

One test per finding: wording that fits what happened, the README's examples, unknown roles, a preview
and a question before changing several accounts, lists that say they stopped, names in the language's
order, employees by number, address or username, delivery events that are not tracked, and help texts
shown whole.
"""

from __future__ import annotations

import os
import pty
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from select import select as wait_readable

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import directory
from bot.settings import PROJECT_ROOT, Settings
from credbot.cli import main
from models import Account, Role
from tests.builders import add_batch, add_delivery, add_employee, audit_events
from tests.cli_helpers import RunCli
from tests.credentials_helpers import outbox_messages

SAMPLE = PROJECT_ROOT / "samples" / "employees.csv"
CREDBOT = str(Path(sys.executable).parent / "credbot")


@pytest.fixture
def sample(cli: RunCli) -> RunCli:
    """A fresh install with the sample directory imported and every account created."""
    assert cli("employees", "import", SAMPLE).exit_code == 0
    assert cli("accounts", "create", "--all-missing").exit_code == 0
    return cli


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if an admin sat at a terminal (CliRunner's stdin is not one); answers come as `input`."""
    monkeypatch.setattr("bot.cli.common.stdin_is_a_terminal", lambda: True)


def roles_of(session: Session, username: str) -> list[str]:
    session.expire_all()
    account = session.scalars(select(Account).where(Account.username == username)).one()
    return sorted(role.name for role in account.roles)


def role_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Role)) or 0


# --- the wording fits what happened ---------------------------------------------------------------------


def test_rename_of_an_employee_without_an_address_does_not_claim_an_email(
    cli: RunCli, session: Session, settings: Settings
) -> None:
    add_employee(session, "00218", "Mohammed", "Al-Rashid", email=None, username="malrashid")
    result = cli("accounts", "rename", "00218", "mohammed.alrashid")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "Renamed malrashid to mohammed.alrashid (00218).\n"
        "The employee has no email address, so nobody was emailed: tell them their new username yourself.\n"
    )
    assert not settings.outbox_dir.exists() or outbox_messages(settings.outbox_dir) == []
    assert audit_events(session, "account.rename_notice_failed") == []


# --- roles: the README's examples, unknown roles, what removal reports -----------------------------------


def readme_roles_examples() -> list[list[str]]:
    lines = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("    credbot accounts roles")]
    return [shlex.split(command)[1:] for command in commands]


def test_the_readmes_roles_examples_work_on_a_fresh_install(
    sample: RunCli, session: Session, terminal: None
) -> None:
    examples = readme_roles_examples()
    assert len(examples) >= 3
    for args in examples:
        result = sample(*args, input="y\n")
        assert result.exit_code == 0, f"credbot {shlex.join(args)}:\n{result.output}"
        assert "Changed the roles of" in result.output


def test_an_unknown_role_is_refused_unless_create_role(sample: RunCli, session: Session) -> None:
    roles = role_count(session)
    typo = sample("accounts", "roles", "--add", "Developr", "1001")
    assert typo.exit_code == 1 and typo.stdout == ""
    assert "No such role: Developr (did you mean Developer?)." in typo.stderr
    assert "To create it, add --create-role. Nothing was changed." in typo.stderr
    gone = sample("accounts", "roles", "--remove", "Legacy", "1001")
    assert (
        gone.exit_code == 1 and "No such role: Legacy." in gone.stderr and "--create-role" not in gone.stderr
    )
    assert role_count(session) == roles and roles_of(session, "jsmith") == ["Employee", "Finance Approver"]

    created = sample("accounts", "roles", "--add", "Approver", "--create-role", "1001")
    assert created.exit_code == 0 and created.output == "Changed the roles of 1 account(s).\n"
    assert role_count(session) == roles + 1 and "Approver" in roles_of(session, "jsmith")


def test_removal_reports_who_did_not_have_the_role(sample: RunCli) -> None:
    result = sample("accounts", "roles", "--remove", "Team Lead", "1003")
    assert result.exit_code == 0
    assert result.output == "Changed the roles of 0 account(s); 1 did not have Team Lead.\n"
    both = sample("accounts", "roles", "--add", "Developer", "--remove", "Payroll", "1003")
    assert (
        both.output
        == "Changed the roles of 0 account(s); 1 already had Developer and did not have Payroll.\n"
    )


# --- several accounts: shown, then asked, unless --yes ---------------------------------------------------


def test_a_department_is_shown_and_asked_before_its_roles_change(
    sample: RunCli, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("accounts", "roles", "--add", "Developer", "--remove", "On-call", "--department", "Engineering")
    no_terminal = sample(*args)  # cron, CI, a pipe: who it would be is shown, and nothing is done
    assert no_terminal.exit_code == 1 and len(no_terminal.stdout.splitlines()) == 5
    assert no_terminal.stderr == (
        "Error: this changes 3 accounts and there is no terminal to ask for confirmation: pass --yes to go "
        "ahead; nothing was changed\n"
    )
    monkeypatch.setattr("bot.cli.common.stdin_is_a_terminal", lambda: True)
    declined = sample(*args, input="n\n")
    assert declined.exit_code == 1 and "not confirmed; nothing was changed" in declined.stderr
    shown = declined.stdout.splitlines()
    assert shown[0].split() == ["EMPLOYEE", "NAME", "USERNAME"]
    assert [line.split()[0] for line in shown[2:5]] == ["1003", "1005", "1009"]
    assert "Zoë Ñúñez-O'Brien" in shown[2]
    assert shown[5] == "Change the roles of these 3 accounts? [y/N]: n"
    assert roles_of(session, "znunez-obrien") == ["Developer", "Employee", "On-call"]
    assert audit_events(session, "account.roles_edited") == []

    confirmed = sample(*args, input="y\n")
    assert confirmed.exit_code == 0
    assert confirmed.stdout.endswith(
        "Changed the roles of 1 account(s); 2 already had Developer and did not have On-call.\n"
    )
    assert roles_of(session, "znunez-obrien") == ["Developer", "Employee"]
    quiet = sample("accounts", "roles", "--add", "On-call", "--department", "engineering", "--yes")
    assert quiet.output == "Changed the roles of 3 account(s).\n"


def test_unlock_disable_and_enable_of_several_accounts_ask_first(sample: RunCli, session: Session) -> None:
    for command in ("unlock", "disable", "enable"):
        refused = sample("accounts", command, "1001", "1002")
        assert refused.exit_code == 1 and "this changes 2 accounts" in refused.stderr, command
    one = sample("accounts", "disable", "1001")  # one account: nothing to confirm
    assert one.exit_code == 0 and "Disabled 1 account(s)." in one.output
    session.expire_all()
    assert [a.username for a in session.scalars(select(Account).where(Account.status == "disabled"))] == [
        "jsmith"
    ]


# --- lists say that they stopped ------------------------------------------------------------------------


def test_lists_end_with_how_many_more(sample: RunCli) -> None:
    employees = sample("employees", "list", "--limit", "4").output.splitlines()
    assert len(employees) == 7 and employees[-1] == "… and 6 more (use --limit)"
    accounts = sample("accounts", "list", "--limit", "9").output.splitlines()
    assert len(accounts) == 12 and accounts[-1] == "… and 1 more (use --limit)"
    assert "more" not in sample("accounts", "list", "--limit", "10").output
    assert "more" not in sample("employees", "list").output  # default 50: everyone fits
    assert sample("audit", "--limit", "2").output.splitlines()[-1].startswith("… and ")


def test_report_lists_say_how_many_batches_and_failures_are_left_out(cli: RunCli, session: Session) -> None:
    employee = add_employee(session, "1")
    for _ in range(3):
        add_delivery(session, add_batch(session), employee, "failed", error="550 no such mailbox")
    output = cli("report", "--batches", "2", "--failures", "1").output
    assert "… and 1 more (use --batches)" in output and "… and 2 more (use --failures)" in output


# --- names in the language's order ---------------------------------------------------------------------

NAMES = [  # in the order a reader expects
    ("Aisha", "Al-Farsi"),
    ("Mei", "Chen"),
    ("Emre", "İbrahimoğlu"),
    ("Ann", "Ibsen"),
    ("Zoë", "Ñúñez-O'Brien"),
    ("Siobhán", "Ó Briain"),
    ("Rory", "Oakley"),
    ("Søren", "Østergaard"),
    ("Jane", "Smith"),
    ("John", "Smith"),
    ("Ann", "Smith-Jones"),
    ("Mary Ann", "van der Berg"),
    ("Zed", "Zimmer"),
]


def preview_names(cli: RunCli) -> list[str]:
    """The names `credentials send --all-pending` lists before asking (answered no)."""
    result = cli("credentials", "send", "--all-pending", input="n\n")
    rows = result.output.split("Will email", 1)[1].splitlines()[3:]
    return [re.split(r"\s{2,}", row)[1] for row in rows if re.match(r"\d{4}\s", row)]


def test_names_sort_as_a_reader_expects_not_by_code_point(
    cli: RunCli, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number, (first, last) in reversed(list(enumerate(NAMES, 1001))):
        add_employee(session, str(number), first, last)
    expected = [f"{first} {last}" for first, last in NAMES]
    assert preview_names(cli) == expected
    if session.get_bind().dialect.name == "postgresql":  # without ICU: the folded key, the same order
        monkeypatch.setattr(directory, "ICU_COLLATION", "no-such-collation")
        assert preview_names(cli) == expected


# --- employees by number, address or username ------------------------------------------------------------


def test_every_command_takes_a_number_an_address_or_a_username(
    cli: RunCli, session: Session, settings: Settings
) -> None:
    add_employee(session, "2001", "Grace", "Hopper", email="grace.hopper@example.com", username="ghopper")
    add_employee(session, "2002", "Alan", "Turing", email="alan@example.com", username="2001")
    add_employee(session, "2003", "Ada", "Lovelace", email="ada@example.com", username=None)
    locked = session.scalars(select(Account).where(Account.username == "ghopper")).one()
    locked.failed_login_count, locked.status = 5, "locked"
    session.commit()
    assert cli("accounts", "unlock", "ghopper").output == "Unlocked 2001 (ghopper).\n"
    assert "Disabled ghopper (2001)" in cli("accounts", "disable", "Grace.Hopper@example.com").output
    assert "Enabled ghopper (2001)" in cli("accounts", "enable", "GHOPPER").output
    assert "Renamed ghopper to grace (2001)." in cli("accounts", "rename", "ghopper", "grace").output
    assert (
        "Changed the roles of 1 account(s)."
        in cli("accounts", "roles", "--add", "X", "--create-role", "grace").output
    )
    assert "Created 1 account(s)." in cli("accounts", "create", "ada@example.com").output
    preview = cli("credentials", "send", "grace", "--yes")
    assert preview.exit_code == 0 and "grace.hopper@example.com" in preview.output

    unknown = cli("accounts", "unlock", "ghoper")
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr == (
        "Error: no employee has the number, email address or username ghoper; nothing was changed\n"
    )
    ambiguous = cli("accounts", "disable", "2001")  # Grace's number, and Alan's username
    assert ambiguous.exit_code == 1
    assert "2001 could be employee 2001 or 2002 (give the employee number)" in ambiguous.stderr
    send = cli("credentials", "send", "ghoper", "--yes")
    assert send.exit_code == 1 and "username ghoper; nothing was sent" in send.stderr


# --- delivery events that never come -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "shown"),
    [
        ({}, "not tracked (outbox)"),
        ({"SENDGRID_API_KEY": "SG.key"}, "not tracked (SENDGRID_WEBHOOK_PUBLIC_KEY is not set)"),
        (
            {"SENDGRID_API_KEY": "SG.key", "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkw"},
            "0 bounced · 0 dropped · 1 waiting",
        ),
    ],
)
def test_report_says_when_delivery_is_not_tracked(
    cli: RunCli, session: Session, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], shown: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    employee = add_employee(session, "1")
    add_delivery(session, add_batch(session), employee, "sent", mail_state="waiting")
    output = cli("report").output
    line = re.search(r"^Delivery \(SendGrid's events\): +(.*)$", output, re.MULTILINE)
    assert line is not None and line.group(1).endswith(shown)
    assert ("Delivery of the recent batches" in output) == ("waiting" in shown)


# --- help texts shown whole, notices printed once ---------------------------------------------------------


def help_pages(command: click.Command, path: list[str]) -> list[tuple[list[str], str]]:
    page = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
    assert page.exit_code == 0, page.output
    pages = [(path, page.output)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            pages += help_pages(sub, [*path, name])
    return pages


def test_help_texts_are_shown_whole() -> None:
    pages = help_pages(main, [])
    assert len(pages) > 30
    for path, page in pages:
        where = "credbot " + " ".join(path)
        assert all(len(line) <= 80 for line in page.splitlines()), f"{where} --help has lines over 80"
        listed = page.split("Commands:\n", 1)[1].splitlines() if "Commands:\n" in page else []
        for line in listed:
            summary = line.split(None, 1)[1]
            assert not summary.endswith("..."), f"{where} cuts: {line}"
            assert summary.count("(") == summary.count(")") and summary.endswith("."), f"{where} cuts: {line}"
    admins = dict((" ".join(path), page) for path, page in pages)["admins"]
    assert "add     Allow a Slack user to use credbot." in admins


@pytest.mark.slow
def test_the_outbox_notice_is_printed_once_per_send(
    settings: Settings, session: Session, tmp_path: Path
) -> None:
    add_employee(session, "1")
    env = {**os.environ, "DATABASE_URL": settings.database_url, "OUTBOX_DIR": str(settings.outbox_dir)}
    env.update({"SENDGRID_API_KEY": "", "REDIS_URL": ""})
    sent = subprocess.run(
        [CREDBOT, "credentials", "send", "1", "--yes"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert (sent.stdout + sent.stderr).count("SENDGRID_API_KEY is not set") == 1
    assert len(outbox_messages(settings.outbox_dir)) == 2


def read_until(fd: int, wanted: str, seconds: float = 30) -> str:
    """What the terminal `fd` shows until `wanted` appears (or the program ends)."""
    seen = b""
    deadline = time.monotonic() + seconds
    while wanted.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted!r} never came; the terminal showed:\n{seen.decode(errors='replace')}"
        if wait_readable([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the program ended and closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen.decode(errors="replace")


@pytest.mark.slow
def test_at_a_terminal_several_accounts_are_listed_and_asked_about(
    settings: Settings, session: Session, tmp_path: Path
) -> None:
    add_employee(session, "1", "Grace", "Hopper", username="ghopper")
    add_employee(session, "2", "Alan", "Turing", username="aturing")
    env = {**os.environ, "DATABASE_URL": settings.database_url, "OUTBOX_DIR": str(settings.outbox_dir)}
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [CREDBOT, "accounts", "disable", "ghopper", "2"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        cwd=tmp_path,
    )
    os.close(secondary)
    try:
        asked = read_until(primary, "Disable these 2 accounts? [y/N]: ")
        assert "Grace Hopper" in asked and "Alan Turing" in asked
        os.write(primary, b"y\n")
        done = read_until(primary, "Disabled 2 account(s).")
        assert process.wait(timeout=30) == 0, done
    finally:
        process.kill()
        os.close(primary)
    session.expire_all()
    assert sorted(a.status for a in session.scalars(select(Account))) == ["disabled", "disabled"]
