"""The employee CSV import: validation report, all-or-nothing, upserts, encodings."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.accounts import create_accounts, list_accounts
from bot.directory import ImportFileError, ImportResult, import_employees
from bot.reports import build_report
from bot.settings import Settings
from models import Account, AccountStatus, Employee
from tests.builders import audit_events, employee_ids

HEADER = "employee_number,first_name,last_name,email,department,roles,slack_user_id\n"


def write(tmp_path: Path, text: str, name: str = "people.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def employees(session: Session) -> dict[str, Employee]:
    session.expire_all()
    return {e.employee_number: e for e in session.scalars(select(Employee))}


def run(session: Session, source: Path | IO[bytes] | IO[str], **kw: Any) -> ImportResult:
    result = import_employees(session, source, "tester", **kw)
    session.commit()
    return result


def test_imports_rows_with_normalised_values(session: Session, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + "1001,John,Smith,John.Smith@EXAMPLE.com,Finance,Approver; Staff ;Approver,u01abc\n"
        + "1002,  Zoë ,Ñúñez-O'Brien,,,,\n",
    )
    result = run(session, path)
    assert (result.created, result.updated, result.unchanged, result.errors) == (2, 0, 0, [])
    assert result.written and result.changed
    people = employees(session)
    john, zoe = people["1001"], people["1002"]
    assert john.email == "John.Smith@example.com"
    assert john.directory_roles == "Approver;Staff"
    assert john.slack_user_id == "U01ABC"
    assert john.department == "Finance"
    assert john.active is True
    assert zoe.first_name == "Zoë"
    assert zoe.email is None and zoe.department is None and zoe.slack_user_id is None
    assert zoe.directory_roles == ""
    assert zoe.search_text == "zoe nunez-o'brien 1002"
    assert john.search_text == "john smith john.smith@example.com 1001"


def test_same_file_twice_changes_nothing(session: Session, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "1,Ann,Lee,ann@example.com,HR,,\n2,Bo,Ek,BO@Example.com,,,\n")
    run(session, path)
    before = {n: e.updated_at for n, e in employees(session).items()}
    again = run(session, path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert not again.changed
    assert {n: e.updated_at for n, e in employees(session).items()} == before
    audits = audit_events(session, "employees.imported")
    assert [a.details for a in audits] == [
        {"created": 2, "updated": 0, "unchanged": 0, "rejected_rows": 0},
        {"created": 0, "updated": 0, "unchanged": 2, "rejected_rows": 0},
    ]
    assert audits[0].target == "people.csv" and audits[0].actor == "tester"


def test_updates_changed_rows_and_leaves_missing_employees(session: Session, tmp_path: Path) -> None:
    run(session, write(tmp_path, HEADER + "1,Ann,Lee,ann@example.com,HR,,\n2,Bo,Ek,,,,\n"))
    before = employees(session)["1"].updated_at
    result = run(session, write(tmp_path, HEADER + "1,Ann,Lee-Smith,ann@example.com,Legal,Boss,\n", "b.csv"))
    assert (result.created, result.updated, result.unchanged) == (0, 1, 0)
    people = employees(session)
    assert people["1"].last_name == "Lee-Smith" and people["1"].department == "Legal"
    assert people["1"].directory_roles == "Boss"
    assert people["1"].updated_at > before and people["1"].created_at < people["1"].updated_at
    assert "lee-smith" in people["1"].search_text
    assert people["2"].first_name == "Bo" and people["2"].active  # not in the file: untouched


def test_absent_optional_columns_keep_stored_values(session: Session, tmp_path: Path) -> None:
    run(session, write(tmp_path, HEADER + "1,Ann,Lee,ann@example.com,HR,Boss,U123\n"))
    result = run(
        session, write(tmp_path, "employee_number,first_name,last_name,email\n1,Ann,Lee,\n", "b.csv")
    )
    assert result.updated == 1
    ann = employees(session)["1"]
    assert ann.email is None  # present column, empty cell: cleared
    assert (ann.department, ann.directory_roles, ann.slack_user_id) == ("HR", "Boss", "U123")


def test_active_column(session: Session, tmp_path: Path) -> None:
    header = "employee_number,first_name,last_name,email,active\n"
    result = run(session, write(tmp_path, header + "1,A,B,,no\n2,C,D,,Yes\n3,E,F,,\n4,G,H,,maybe\n"))
    assert result.errors == [
        (
            5,
            "unknown status 'maybe' (active: yes, Active, Hired, Pre-hire, Pending, New, On Leave; "
            "inactive: no, Terminated, Inactive, Left, Leaver, Resigned, Retired)",
        )
    ]
    assert not result.written
    run(session, write(tmp_path, header + "1,A,B,,no\n2,C,D,,Yes\n3,E,F,,\n"))
    assert {n: e.active for n, e in employees(session).items()} == {"1": False, "2": True, "3": True}


def test_bad_rows_are_reported_with_line_numbers_and_nothing_is_written(
    session: Session, tmp_path: Path
) -> None:
    text = (
        HEADER
        + "1,Ann,Lee,not-an-email,,,\n"  # line 2
        + ',"Multi\nline",Name,ok@example.com,,,\n'  # lines 3-4: missing number
        + "3,,Lee,,,,\n"  # line 5
        + "4,Cy,,,,,\n"  # line 6
        + "5,Di,Ng,,,,bad id\n"  # line 7
        + "6,Ed,Ox,,,,\n"  # line 8: duplicate of line 10
        + "7,Fa,Py,,,\n"  # line 9: too few fields
        + "6,Ed,Ox,,,,\n"  # line 10
        + f"8,{'x' * 201},Q,,,,\n"  # line 11
        + "9,Good,Row,good@example.com,,,\n"  # line 12
        + "10,Nul,Char\x00,,,,\n"  # line 13
    )
    result = run(session, write(tmp_path, text))
    lines = {line: reason for line, reason in result.errors}
    assert sorted(lines) == [2, 3, 5, 6, 7, 8, 9, 10, 11, 13]
    assert lines[2].startswith("invalid email 'not-an-email'")
    assert lines[3].startswith("first_name contains a control character (U+000A) at character 6; remove it")
    assert lines[3].endswith("; missing employee number")
    assert lines[5] == "missing first name"
    assert lines[6] == "missing last name"
    assert lines[7] == "invalid slack_user_id 'bad id' (expected e.g. U012AB3CD)"
    assert lines[8] == "duplicate employee number '6' (also on line 10)"
    assert lines[10] == "duplicate employee number '6' (also on line 8)"
    assert lines[9] == "has 6 fields but the header has 7 (unquoted comma?)"
    assert lines[11] == "first_name is longer than 200 characters"
    assert lines[13].startswith("last_name contains a control character (U+0000) at character 5")
    assert not result.written and result.created == 0
    assert employees(session) == {}
    assert audit_events(session) == []


def test_several_problems_in_one_row_are_all_reported(session: Session, tmp_path: Path) -> None:
    result = run(session, write(tmp_path, HEADER + ",,,x@,,,\n"))
    assert len(result.errors) == 1
    line, reason = result.errors[0]
    assert line == 2
    assert "missing employee number" in reason and "missing first name" in reason
    assert "missing last name" in reason and "invalid email 'x@'" in reason


def test_skip_invalid_imports_the_good_rows(session: Session, tmp_path: Path) -> None:
    text = (
        HEADER
        + "1,Ann,Lee,bad@,,,\n"
        + "2,Bo,Ek,bo@example.com,,,U22\n"
        + "3,Cy,Ox,,,,\n"
        + "3,Cy,Ox,,,,\n"
        + "4,Di,Ng,,,,u77\n"
        + "5,Ed,Po,,,,U77\n"
    )
    result = run(session, write(tmp_path, text), skip_invalid=True)
    assert result.written
    assert result.errors[1:] == [
        (4, "duplicate employee number '3' (also on line 5)"),
        (5, "duplicate employee number '3' (also on line 4)"),
        (6, "duplicate slack_user_id 'U77' (also on line 7)"),
        (7, "duplicate slack_user_id 'U77' (also on line 6)"),
    ]
    assert result.errors[0][0] == 2
    assert result.created == 1
    assert list(employees(session)) == ["2"]
    [audit] = audit_events(session)
    assert audit.details["rejected_rows"] == 5


def test_header_is_matched_ignoring_case_spaces_and_order(session: Session, tmp_path: Path) -> None:
    text = " Email ,LAST NAME,First-Name,Employee_Number,Cost Centre\nann@example.com,Lee,Ann,7,CC1\n"
    result = run(session, write(tmp_path, text))
    assert result.created == 1 and result.ignored_columns == ["Cost Centre"]
    ann = employees(session)["7"]
    assert (ann.first_name, ann.last_name, ann.email) == ("Ann", "Lee", "ann@example.com")


def test_utf8_with_bom(session: Session, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "1,Zoë,Müller,,,,\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert run(session, path).created == 1
    assert employees(session)["1"].first_name == "Zoë"


def test_streams_of_bytes_and_text(session: Session) -> None:
    assert run(session, io.BytesIO(("\ufeff" + HEADER + "1,A,B,,,,\n").encode())).created == 1
    assert run(session, io.StringIO(HEADER + "2,C,D,,,,\n")).created == 1
    assert sorted(employees(session)) == ["1", "2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"employee_number,first_name,email\n1,A,a@example.com\n", "missing required column(s) last_name"),
        (b"employee_number;first_name;last_name;email\n", "(is the file comma-separated?)"),
        (HEADER.encode() + b"1,Zo\xeb,M\xfcller,,,,\n", "is not UTF-8 text (undecodable byte on line 2)"),
        (b"", "is empty"),
        (b"employee_number,first_name,last_name,email,EMAIL\n", "columns 'email' and 'EMAIL' both give"),
        (b"Employee ID,Given name,Surname,E-mail,Mail\n", "columns 'E-mail' and 'Mail' both give the email"),
        (HEADER.encode() + b'1,"unclosed,B,,,,\n', "line 2: broken CSV quoting"),
    ],
)
def test_unusable_files_raise_a_clear_error(
    session: Session, tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=r"^bad\.csv") as raised:
        run(session, path)
    assert message in str(raised.value)
    assert employees(session) == {}


def test_progress_is_reported_for_every_row(session: Session, tmp_path: Path) -> None:
    rows = "".join(f"{i},A,B,,,,\n" for i in range(2500))
    seen: list[int] = []
    result = run(session, write(tmp_path, HEADER + rows), progress=seen.append)
    assert result.created == 2500
    assert seen == [1000, 1000, 500]


def test_search_text_includes_the_username_on_update(
    session: Session, tmp_path: Path, settings: Settings
) -> None:
    run(session, write(tmp_path, HEADER + "1,Ann,Lee,,,,\n"))
    create_accounts(session, settings, "tester", employee_ids(session, "1"))
    session.commit()
    run(session, write(tmp_path, HEADER + "1,Ann,Lee,ann@example.com,,,\n"))
    assert employees(session)["1"].search_text == "ann lee ann@example.com 1 alee"


def test_special_characters_survive(session: Session, tmp_path: Path) -> None:
    department = 'R&D\\North "Lab", Floor 2 \u200d'
    text = HEADER + '1,Ann,Lee,,"R&D\\North ""Lab"", Floor 2 \u200d",,\n2,Bo,Ek,,,,\n'
    result = run(session, write(tmp_path, text))
    assert result.created == 2 and result.errors == []
    assert employees(session)["1"].department == department
    assert run(session, write(tmp_path, text)).unchanged == 2


@pytest.mark.parametrize(
    ("cells", "field", "code"),
    [
        ('"Eve\r\nBcc: attacker@evil.example",Smith,eve@example.com,,,', "first_name", "U+000D"),
        ('Eve,"Smith\nJones",eve@example.com,,,', "last_name", "U+000A"),
        ("Eve\tTab,Smith,eve@example.com,,,", "first_name", "U+0009"),
        ("Eve,Smith\x1b[2K\x1b[1A,eve@example.com,,,", "last_name", "U+001B"),
        ("Eve,Smith,eve@example.com,Sales\x00,,", "department", "U+0000"),
        ("Eve,Smith,eve@example.com,,Payroll\x85,", "roles", "U+0085"),
        ("Eve\u202e,Smith,eve@example.com,,,", "first_name", "U+202E"),
        ("Eve,Smith,eve@example.com,\u2028,,", "department", "U+2028"),
    ],
)
def test_control_characters_are_refused_with_the_line_and_field(
    session: Session, tmp_path: Path, cells: str, field: str, code: str
) -> None:
    text = HEADER + "1,Ann,Lee,ann@example.com,,,\n" + f"2,{cells}\n" + "3,Bo,Ek,bo@example.com,,,\n"
    result = run(session, write(tmp_path, text))
    [(line, reason)] = result.errors
    assert line == 3
    assert reason.startswith(f"{field} contains a control character ({code}) at character ")
    assert not result.written and employees(session) == {}
    assert run(session, write(tmp_path, text), skip_invalid=True).created == 2
    assert "2" not in employees(session)


@pytest.mark.parametrize(
    "header",
    [
        "Employee ID,First Name,Last Name,E-mail",
        "Employee Number,Given name,Surname,Email address",
        "Emp No,Forename,Family Name,Work Email",
        "Staff ID,FirstName,LastName,E-Mail Address",
    ],
)
def test_common_export_headers_are_accepted(session: Session, tmp_path: Path, header: str) -> None:
    result = run(session, write(tmp_path, f"{header},Dept,Role\n7,Ann,Lee,ann@example.com,HR,Payroll\n"))
    assert result.created == 1 and result.ignored_columns == []
    ann = employees(session)["7"]
    assert (ann.first_name, ann.last_name, ann.email, ann.department) == (
        "Ann",
        "Lee",
        "ann@example.com",
        "HR",
    )
    assert ann.directory_roles == "Payroll"


def test_a_missing_column_lists_the_columns_found(session: Session, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError) as raised:
        run(session, write(tmp_path, "Personnel No,Name,Surname,Phone\n1,Ann,Lee,123\n"))
    message = str(raised.value)
    assert "missing required column(s) first_name, email" in message
    assert "Columns found: 'Personnel No', 'Name', 'Surname', 'Phone'" in message


def test_broken_quoting_is_reported_where_the_quote_opened(session: Session, tmp_path: Path) -> None:
    rows = "".join(f"{i},A,B,,,,\n" for i in range(1, 40))
    text = HEADER + rows + '40,"Ann,Lee,,,,\n' + rows.replace(",A,", ",C,")
    with pytest.raises(ImportFileError) as raised:
        run(session, write(tmp_path, text))
    assert "line 41: broken CSV quoting" in str(raised.value)


# Issue 19: directory fields, one address per active employee, leavers' accounts disabled.

EXPORT = "Employee ID,First Name,Last Name,Work Email,Personal Email,Start Date,Time Zone,Manager,Status\n"


def test_an_hr_export_with_the_directory_fields(session: Session, tmp_path: Path) -> None:
    text = (
        EXPORT
        + "1,Ada,Boss,ada@example.com,,2020-01-06,Europe/London,,Active\n"
        + "2,Bo,Ek,bo@example.com,Bo.Ek@Home.example,2026-12-07,america/new_york,1,Pre-hire\n"
        + "3,Cy,Ox,cy@example.com,,,,2,\n"
    )
    result = run(session, write(tmp_path, text))
    assert (result.created, result.errors, result.ignored_columns) == (3, [], [])
    people = employees(session)
    bo = people["2"]
    assert (bo.start_date, bo.time_zone, bo.manager) == (date(2026, 12, 7), "America/New_York", "1")
    assert bo.personal_email == "Bo.Ek@home.example" and bo.active
    cy = people["3"]
    assert (cy.start_date, cy.time_zone, cy.personal_email, cy.manager) == (None, None, None, "2")
    assert run(session, write(tmp_path, text)).unchanged == 3
    # Columns absent from the next file keep what is stored.
    run(session, write(tmp_path, "employee_number,first_name,last_name,email\n2,Bo,Ek,bo@example.com\n"))
    bo = employees(session)["2"]
    assert (bo.start_date, bo.time_zone, bo.personal_email, bo.manager) == (
        date(2026, 12, 7),
        "America/New_York",
        "Bo.Ek@home.example",
        "1",
    )


@pytest.mark.parametrize(
    "header",
    [
        "employee_number,first_name,last_name,email,Hire Date,Private Email,Timezone,Manager ID,"
        "Employment Status",
        "employee_number,first_name,last_name,email,Date of Joining,Home Email,TZ,Reports To,Status",
        "employee_number,first_name,last_name,email,Start Date,Personal Email,Time Zone,"
        "Manager Employee Number,Status",
    ],
)
def test_the_usual_export_names_of_the_directory_fields(
    session: Session, tmp_path: Path, header: str
) -> None:
    text = f"{header}\n1,Ada,Boss,,,,,,\n2,Bo,Ek,,2026-12-07,bo@home.example,Asia/Kolkata,1,Terminated\n"
    result = run(session, write(tmp_path, text))
    assert (result.created, result.errors, result.ignored_columns) == (2, [], [])
    bo = employees(session)["2"]
    assert (bo.start_date, bo.personal_email, bo.time_zone, bo.manager, bo.active) == (
        date(2026, 12, 7),
        "bo@home.example",
        "Asia/Kolkata",
        "1",
        False,
    )


@pytest.mark.parametrize(
    ("status", "active"),
    [
        *((word, True) for word in ("Active", "Hired", "Pre-hire", "Pending", "New", "On Leave")),
        *((word, False) for word in ("Terminated", "Inactive", "Left", "Leaver", "Resigned", "Retired")),
        ("PRE HIRE", True),
        ("on_leave", True),
        ("terminated", False),
        ("", True),
    ],
)
def test_each_status_spelling(session: Session, tmp_path: Path, status: str, active: bool) -> None:
    result = run(session, write(tmp_path, f"{EXPORT}1,Ann,Lee,,,,,,{status}\n"))
    assert (result.created, result.errors) == (1, [])
    assert employees(session)["1"].active is active


@pytest.mark.parametrize("status", ["Contractor", "Suspended", "Left company", "Prehired"])
def test_an_unknown_status_is_a_line_numbered_error(session: Session, tmp_path: Path, status: str) -> None:
    result = run(session, write(tmp_path, f"{EXPORT}1,Ann,Lee,,,,,,Active\n2,Bo,Ek,,,,,,{status}\n"))
    [(line, reason)] = result.errors
    assert line == 3 and reason.startswith(f"unknown status {status!r} (active: yes, Active, Hired")
    assert not result.written and employees(session) == {}


def test_dates_are_iso_8601_unless_date_format_says_otherwise(session: Session, tmp_path: Path) -> None:
    text = EXPORT + "1,Ann,Lee,,,2026-12-07,,,\n2,Bo,Ek,,,03/04/2026,,,\n3,Cy,Ox,,,2026-02-30,,,\n"
    result = run(session, write(tmp_path, text))
    assert result.errors == [
        (
            3,
            "start date '03/04/2026' is not a date (expected YYYY-MM-DD; set DATE_FORMAT (e.g. %d/%m/%Y) "
            "to read the export's own format)",
        ),
        (4, "start date '2026-02-30' is not a date (expected YYYY-MM-DD; set DATE_FORMAT (e.g. %d/%m/%Y) "
         "to read the export's own format)"),
    ]  # fmt: skip
    assert not result.written

    text = EXPORT + "1,Ann,Lee,,,2026-12-07,,,\n2,Bo,Ek,,,03/04/2026,,,\n3,Cy,Ox,,,29/02/2028,,,\n"
    result = run(session, write(tmp_path, text), date_format="%d/%m/%Y")
    assert (result.created, result.errors) == (3, [])
    assert {n: e.start_date for n, e in employees(session).items()} == {
        "1": date(2026, 12, 7),  # ISO still works
        "2": date(2026, 4, 3),
        "3": date(2028, 2, 29),
    }
    result = run(session, write(tmp_path, EXPORT + "4,Di,Ng,,,12/31/2026,,,\n"), date_format="%d/%m/%Y")
    assert result.errors == [
        (2, "start date '12/31/2026' is not a date (expected %d/%m/%Y (DATE_FORMAT) or YYYY-MM-DD)")
    ]


def test_time_zones_are_iana_names(session: Session, tmp_path: Path) -> None:
    text = (
        EXPORT
        + "1,Ann,Lee,,,,Pacific/Chatham,,\n"
        + "2,Bo,Ek,,,,EUROPE/LONDON,,\n"
        + "3,Cy,Ox,,,,CET+1,,\n"
        + "4,Di,Ng,,,,localtime,,\n"
        + "5,Ed,Po,,,,../../etc/passwd,,\n"
    )
    result = run(session, write(tmp_path, text))
    expected = "(expected an IANA name such as Europe/London)"
    assert result.errors == [
        (4, f"unknown time zone 'CET+1' {expected}"),
        (5, f"unknown time zone 'localtime' {expected}"),
        (6, f"unknown time zone '../../etc/passwd' {expected}"),
    ]
    run(session, write(tmp_path, text), skip_invalid=True)
    assert {n: e.time_zone for n, e in employees(session).items()} == {
        "1": "Pacific/Chatham",
        "2": "Europe/London",
    }


def test_a_manager_must_be_in_the_file_or_the_directory(session: Session, tmp_path: Path) -> None:
    run(session, write(tmp_path, EXPORT + "1,Ada,Boss,,,,,,\n"))
    text = EXPORT + "2,Bo,Ek,,,,,1,\n3,Cy,Ox,,,,,4,\n4,Di,Ng,,,,,4,\n5,Ed,Po,,,,,99,\n"
    result = run(session, write(tmp_path, text))
    assert result.errors == [(5, "manager '99' is neither in the file nor in the directory")]
    assert not result.written
    assert run(session, write(tmp_path, text), skip_invalid=True).created == 3
    assert {n: e.manager for n, e in employees(session).items()} == {"1": None, "2": "1", "3": "4", "4": "4"}


def test_two_active_employees_cannot_share_an_address_in_the_file(session: Session, tmp_path: Path) -> None:
    text = (
        EXPORT
        + "1,Grace,Hopper,grace.hopper@example.com,,,,,\n"  # line 2
        + "2,Grace,Hopper,Grace.Hopper@EXAMPLE.com,,,,,\n"  # line 3: the same address in another case
        + "3,Ann,Lee,ann@example.com,ann@home.example,,,,\n"  # line 4
        + "4,Bo,Ek,bo@example.com,ANN@home.example,,,,\n"  # line 5: Ann's personal address
        + "5,Cy,Ox,ann@example.com,,,,,Terminated\n"  # line 6: a leaver may keep an address in use
        + "6,Di,Ng,di@example.com,,,,,\n"  # line 7
    )
    result = run(session, write(tmp_path, text))
    assert result.errors == [
        (2, "work email 'grace.hopper@example.com' is also that of employee 2 (line 3)"),
        (3, "work email 'Grace.Hopper@example.com' is also that of employee 1 (line 2)"),
        (4, "personal email 'ann@home.example' is also that of employee 4 (line 5)"),
        (5, "personal email 'ANN@home.example' is also that of employee 3 (line 4)"),
    ]
    assert not result.written and employees(session) == {}
    assert run(session, write(tmp_path, text), skip_invalid=True).created == 2
    assert sorted(employees(session)) == ["5", "6"]


def test_two_active_employees_cannot_share_an_address_with_the_directory(
    session: Session, tmp_path: Path
) -> None:
    run(session, write(tmp_path, EXPORT + "1,Grace,Hopper,grace@example.com,g@home.example,,,,\n"))
    text = (
        EXPORT
        + "2,Grace,Brewster,GRACE@example.com,,,,,\n"  # line 2: employee 1's work address
        + "3,Bo,Ek,bo@example.com,g@HOME.example,,,,\n"  # line 3: employee 1's personal address
        + "4,Cy,Ox,grace@example.com,,,,,Left\n"  # line 4: inactive, no clash
    )
    result = run(session, write(tmp_path, text))
    assert result.errors == [
        (2, "work email 'GRACE@example.com' is also that of employee 1 (in the directory)"),
        (3, "personal email 'g@home.example' is also that of employee 1 (in the directory)"),
    ]
    assert not result.written
    # Grace 1 leaves and Grace 2 takes the address in the same file; then Grace 1 cannot come back with it.
    moved = (
        EXPORT
        + "1,Grace,Hopper,grace@example.com,g@home.example,,,,Left\n2,Grace,Brewster,grace@example.com,,,,,\n"
    )
    assert run(session, write(tmp_path, moved)).errors == []
    back = run(session, write(tmp_path, EXPORT + "1,Grace,Hopper,grace@example.com,,,,,Active\n"))
    assert back.errors == [
        (2, "work email 'grace@example.com' is also that of employee 2 (in the directory)")
    ]


def test_a_rejected_row_keeps_the_stored_address_which_may_clash_in_turn(
    session: Session, tmp_path: Path
) -> None:
    run(session, write(tmp_path, EXPORT + "1,Ann,Lee,x@example.com,,,,,\n2,Bo,Ek,y@example.com,,,,,\n"))
    # Ann moves from x to z, which Cy holds, so her row is refused and she keeps x; Bo then cannot take x.
    text = EXPORT + "1,Ann,Lee,z@example.com,,,,,\n2,Bo,Ek,x@example.com,,,,,\n3,Cy,Ox,z@example.com,,,,,\n"
    result = run(session, write(tmp_path, text), skip_invalid=True)
    assert result.errors == [
        (2, "work email 'z@example.com' is also that of employee 3 (line 4)"),
        (3, "work email 'x@example.com' is also that of employee 1 (in the directory)"),
        (4, "work email 'z@example.com' is also that of employee 1 (line 2)"),
    ]
    assert {n: e.email for n, e in employees(session).items()} == {"1": "x@example.com", "2": "y@example.com"}


def test_a_leavers_account_is_disabled_at_import(
    session: Session, tmp_path: Path, settings: Settings
) -> None:
    run(session, write(tmp_path, EXPORT + "1,Ann,Lee,ann@example.com,,,,,\n2,Bo,Ek,bo@example.com,,,,,\n"))
    create_accounts(session, settings, "tester", employee_ids(session, "1", "2"))
    session.commit()
    ann = session.scalars(select(Account).filter_by(username="alee")).one()
    ann.status, version = AccountStatus.INVITED, ann.session_version
    session.commit()
    assert build_report(session).accounts_by_status["disabled"] == 0

    text = EXPORT + "1,Ann,Lee,ann@example.com,,,,,Terminated\n2,Bo,Ek,bo@example.com,,,,,Active\n"
    result = run(session, write(tmp_path, text))
    assert result.disabled == [("1", "alee")] and result.updated == 1
    session.expire_all()
    ann = session.scalars(select(Account).filter_by(username="alee")).one()
    assert ann.status == AccountStatus.DISABLED
    assert ann.session_version == version + 1  # the portal's sessions of the account end
    assert session.scalars(select(Account).filter_by(username="bek")).one().status != AccountStatus.DISABLED
    [event] = audit_events(session, "account.disabled")
    assert (event.actor, event.target, event.details["previous_status"]) == (
        "tester",
        "account:alee",
        "invited",
    )
    report = build_report(session)
    assert report.accounts_by_status["disabled"] == 1 and report.active_employees == 1
    assert [row.status for row in list_accounts(session, "disabled")] == [AccountStatus.DISABLED]
    # The same file again: nothing more to disable, nothing audited twice.
    assert run(session, write(tmp_path, text)).disabled == []
    assert len(audit_events(session, "account.disabled")) == 1
