"""`credbot employees import` and `credbot employees list`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.settings import PROJECT_ROOT
from models import Employee
from tests.cli_helpers import RunCli

SAMPLE = PROJECT_ROOT / "samples" / "employees.csv"


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Employee)) or 0


def test_import_sample_twice(cli: RunCli, session: Session) -> None:
    first = cli("employees", "import", SAMPLE)
    assert first.exit_code == 0, first.output
    assert first.output == "employees.csv: 10 created, 0 updated, 0 unchanged.\n"
    again = cli("employees", "import", SAMPLE)
    assert again.exit_code == 0
    assert again.output == "employees.csv: nothing changed (0 created, 0 updated, 10 unchanged).\n"
    assert count(session) == 10


def test_bad_rows_fail_the_import(cli: RunCli, session: Session, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "Employee Number,First Name,Last Name,Email,Notes\n"
        '1,Ann,Lee,ann@example.com,"two\nlines"\n'
        "2,Bo,Ek,bo@@example.com,\n"
        "3,Cy,Ox,,\n",
        encoding="utf-8",
    )
    result = cli("employees", "import", path)
    assert result.exit_code == 1
    assert result.stdout == "Ignored unknown column(s): Notes\n"
    assert result.stderr.splitlines()[0] == (
        "1 bad row(s) (nothing was written; fix them or use --skip-invalid):"
    )
    assert result.stderr.splitlines()[1].startswith("  line 4: invalid email 'bo@@example.com'")
    assert count(session) == 0

    skipped = cli("employees", "import", "--skip-invalid", path)
    assert skipped.exit_code == 0
    assert "1 bad row(s) (skipped):\n  line 4: invalid email" in skipped.stdout
    assert skipped.stdout.endswith("bad.csv: 2 created, 0 updated, 0 unchanged.\n")
    assert count(session) == 2


def test_unusable_file_is_a_clear_error(cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("employee_number,first_name,last_name,email\n1,Zoë,Lee,\n".encode("latin-1"))
    result = cli("employees", "import", path)
    assert result.exit_code == 1
    assert "Error: latin1.csv is not UTF-8 text (undecodable byte on line 2)" in result.stderr
    assert cli("employees", "import", tmp_path / "missing.csv").exit_code == 2


def test_large_file_shows_progress(cli: RunCli, session: Session, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = "".join(f"E{i:06d},Firstname{i},Lastname{i},person{i}@example.com\n" for i in range(20_000))
    path.write_text("employee_number,first_name,last_name,email\n" + rows, encoding="utf-8")
    assert path.stat().st_size > 1_000_000
    result = cli("employees", "import", path)
    assert result.exit_code == 0
    assert result.stdout.startswith("Reading big.csv")  # click prints only the label when not a terminal
    assert result.stdout.endswith("big.csv: 20000 created, 0 updated, 0 unchanged.\n")
    assert count(session) == 20_000


def test_list_and_search(cli: RunCli) -> None:
    cli("employees", "import", SAMPLE)
    lines = cli("employees", "list", "--search", "smith").output.splitlines()
    assert lines[0].split() == [
        "NUMBER",
        "NAME",
        "EMAIL",
        "DEPARTMENT",
        "USERNAME",
        "ACTIVE",
        "STARTS",
        "TIME",
        "ZONE",
    ]
    assert [line.split()[0] for line in lines[2:]] == ["1001", "1002"]
    accented = cli("employees", "list", "-s", "nunez").output
    assert "Zoë Ñúñez-O'Brien" in accented and "zoe.nunez@example.com" in accented
    assert cli("employees", "list", "--limit", "3").output.splitlines()[5:] == ["… and 7 more (use --limit)"]


def test_an_hr_export_through_the_cli(cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATE_FORMAT", "%d/%m/%Y")
    monkeypatch.setenv("DEFAULT_TIME_ZONE", "europe/london")
    export = tmp_path / "hr.csv"
    header = "Employee ID,First Name,Last Name,Work Email,Start Date,TZ,Reports To,Employment Status\n"
    export.write_text(header + "1,Ada,Boss,ada@example.com,07/12/2026,,,Hired\n", encoding="utf-8")
    assert cli("employees", "import", export).exit_code == 0
    assert cli("accounts", "create", "1").exit_code == 0
    lines = cli("employees", "list").output.splitlines()
    assert lines[2].split()[-3:] == ["2026-12-07", "Europe/London", "(default)"]

    export.write_text(header + "1,Ada,Boss,ada@example.com,07/12/2026,,,Terminated\n", encoding="utf-8")
    result = cli("employees", "import", export)
    assert result.exit_code == 0
    assert result.output == (
        "hr.csv: 0 created, 1 updated, 0 unchanged.\n"
        + "Disabled the accounts of 1 inactive employee(s): aboss (1)\n"
    )
    assert cli("accounts", "list", "--status", "disabled").output.splitlines()[2].split()[:4] == [
        "aboss",
        "1",
        "Ada",
        "Boss",
    ]
    assert "Accounts:  0 pending, 0 invited, 0 active, 0 locked, 1 disabled\n" in cli("report").output


def test_a_bad_default_time_zone_is_refused(cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_TIME_ZONE", "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="DEFAULT_TIME_ZONE 'Mars/Olympus_Mons' is not an IANA time zone"):
        cli("employees", "list")
