"""The employee directory: CSV import from the HR export, search text, listing."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVarTuple, cast

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Select, and_, bindparam, func, select, text, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bot.admins import SLACK_USER_ID
from bot.audit import AuditAction, employee_target, record
from bot.leavers import record_leavers
from bot.time_zones import canonical_time_zone
from models import Account, Employee, name_sort_key, utcnow

# Their home is the model; imported from here too.
from models.directory import fold_accents as fold_accents
from models.directory import make_search_text as make_search_text

if TYPE_CHECKING:
    from _csv import Reader  # what csv.reader returns (the name exists in typeshed only)

REQUIRED_COLUMNS = ("employee_number", "first_name", "last_name", "email")
OPTIONAL_COLUMNS = (
    "department",
    "roles",
    "slack_user_id",
    "active",
    "start_date",
    "time_zone",
    "personal_email",
    "manager",
)
COLUMN_ALIASES = {
    "employee_number": (
        "employee_id",
        "employee_no",
        "employee_num",
        "employee",
        "emp_id",
        "emp_no",
        "emp_number",
        "staff_id",
        "staff_number",
        "staff_no",
        "personnel_number",
        "personnel_no",
        "worker_id",
        "id",
    ),
    "first_name": ("firstname", "first", "given_name", "givenname", "forename", "first_names"),
    "last_name": ("lastname", "last", "surname", "family_name", "familyname"),
    "email": (
        "e_mail",
        "email_address",
        "e_mail_address",
        "emailaddress",
        "mail",
        "work_email",
        "work_email_address",
        "business_email",
        "company_email",
    ),
    "department": ("dept", "department_name", "division"),
    "roles": ("role",),
    "slack_user_id": ("slack_id", "slack_user", "slack_member_id", "slack"),
    "active": ("is_active", "enabled", "status", "employment_status"),
    "start_date": ("hire_date", "date_of_joining"),
    "time_zone": ("timezone", "tz"),
    "personal_email": ("private_email", "home_email"),
    "manager": ("manager_id", "manager_employee_number", "reports_to", "line_manager", "supervisor"),
}
"""Other header names (as normalised by `_column_key`) that common HR exports use for each column."""
_COLUMN_NAMES = {alias: name for name, aliases in COLUMN_ALIASES.items() for alias in (name, *aliases)}
_FORBIDDEN_CHARACTERS = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Besides control characters: line and paragraph separators, and bidirectional overrides and isolates
(which make text display in an order other than it is stored)."""
MAX_LENGTHS = {
    "employee_number": 64,
    "first_name": 200,
    "last_name": 200,
    "email": 320,
    "personal_email": 320,
    "department": 200,
    "directory_roles": 1000,
}
MAX_ROLE_LENGTH = 100
ACTIVE_STATUSES = ("Active", "Hired", "Pre-hire", "Pending", "New", "On Leave")
INACTIVE_STATUSES = ("Terminated", "Inactive", "Left", "Leaver", "Resigned", "Retired")
"""Employment statuses of HR exports (the `active` column's words besides yes and no)."""


def _status_key(word: str) -> str:
    """A status as looked up: case, spaces, hyphens and underscores ignored ("Pre-hire" -> "prehire")."""
    return re.sub(r"[\s_-]+", "", word.lower())


TRUE_WORDS = frozenset(map(_status_key, ("1", "true", "yes", "y", *ACTIVE_STATUSES)))
FALSE_WORDS = frozenset(map(_status_key, ("0", "false", "no", "n", *INACTIVE_STATUSES)))
PROGRESS_EVERY = 1000
_Ts = TypeVarTuple("_Ts")


class AddressTaken(ValueError):
    """The address is another active employee's."""


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (encoding, header, broken quoting)."""


@dataclass
class ImportResult:
    """What an import did; `errors` holds (CSV line number, reason) for every rejected row."""

    file_name: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    written: bool = False
    ignored_columns: list[str] = field(default_factory=list)
    disabled: list[tuple[str, str]] = field(default_factory=list)
    """(employee number, username) of the accounts disabled because the file says the employee left."""

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)


@dataclass
class _Row:
    line: int
    values: dict[str, Any]


def import_employees(
    session: Session,
    path_or_stream: str | Path | IO[bytes] | IO[str],
    actor: str,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
    date_format: str = "",
) -> ImportResult:
    """Upsert the employees of a CSV file by employee number, in the caller's transaction.

    Nothing is written when a row is bad unless `skip_invalid`; then the good rows are imported.
    Employees missing from the file are left as they are. A column absent from the file leaves
    that field of existing employees unchanged. `progress(n)` is told about every `n` rows read.
    Dates are ISO 8601, or in `date_format` (DATE_FORMAT). The accounts of employees the file shows
    as inactive are disabled. Raises ImportFileError when the file itself is unusable.
    """
    file_name, text = _read_text(path_or_stream)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns, width, result = _read_header(reader, file_name)
    existing = _existing_employees(session)

    parsed = _parse_rows(reader, file_name, columns, width, existing, date_format, result.errors, progress)
    rows = _drop_duplicates(list(parsed), result.errors)
    rows = _drop_shared_addresses(rows, existing, result.errors)
    rows = _drop_unknown_managers(rows, existing, result.errors)
    result.errors.sort()
    if result.errors and not skip_invalid:
        return result

    inserts, updates = [], []
    for row in rows:
        old = existing.get(row.values["employee_number"])
        if old is None:
            inserts.append(_new_employee(row.values))
            continue
        merged = {**old, **row.values}
        merged["search_text"] = _search_text(merged)
        merged["sort_name"] = name_sort_key(merged["first_name"], merged["last_name"])
        if any(merged[key] != old[key] for key in merged):
            merged["b_id"] = merged.pop("id")
            merged.pop("username")
            updates.append(merged)
    # Values common to every row are bound once, in the statement, not per row.
    now, table = utcnow(), Employee.__table__
    if inserts:
        _insert(session, inserts, created_at=now, updated_at=now)
    if updates:
        session.execute(update(table).where(table.c.id == bindparam("b_id")).values(updated_at=now), updates)
    result.created, result.updated = len(inserts), len(updates)
    result.unchanged = len(rows) - len(inserts) - len(updates)
    result.written = True
    record(
        session,
        actor,
        AuditAction.EMPLOYEES_IMPORTED,
        file_name,
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        rejected_rows=len(result.errors),
    )
    leavers = [row.values["employee_number"] for row in rows if row.values.get("active") is False]
    result.disabled = record_leavers(session, actor, leavers)
    return result


def _insert(session: Session, rows: list[dict[str, Any]], **common: Any) -> None:
    """Insert employee rows, plus the `common` values in each.

    PostgreSQL gets COPY in the session's transaction: psycopg's executemany runs one INSERT per row,
    about ten times slower.
    """
    table = Employee.__table__
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(table.insert().values(**common), rows)
        return
    from psycopg import Connection, sql

    keys = list(rows[0])
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, [*keys, *common]))
    )
    extra = list(common.values())
    # The dialect is postgresql+psycopg (checked above), so the DBAPI connection is psycopg's.
    driver = cast(Connection[Any], connection.connection.driver_connection)
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row([*(row[key] for key in keys), *extra])


def _read_text(source: str | Path | IO[bytes] | IO[str]) -> tuple[str, str]:
    data: bytes | str
    if isinstance(source, str | Path):
        name, data = Path(source).name, Path(source).read_bytes()
    else:
        name, data = Path(str(getattr(source, "name", "<stream>"))).name, source.read()
    if isinstance(data, str):
        return name, data.removeprefix("\ufeff")
    try:
        return name, data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ImportFileError(
            f"{name} is not UTF-8 text (undecodable byte on line {line}); export it as 'CSV UTF-8'"
        ) from error


def _read_header(reader: Iterator[list[str]], file_name: str) -> tuple[dict[str, int], int, ImportResult]:
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError(f"{file_name} is empty; expected a header line") from None
    except csv.Error as error:
        raise ImportFileError(f"{file_name}, line 1: broken CSV quoting ({error})") from error
    result = ImportResult(file_name=file_name)
    columns: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = _COLUMN_NAMES.get(_column_key(raw))
        if name is not None:
            if name in columns:
                raise ImportFileError(
                    f"{file_name}: columns {header[columns[name]].strip()!r} and {raw.strip()!r} "
                    f"both give the {name}; keep one of them"
                )
            columns[name] = index
        elif raw.strip():
            result.ignored_columns.append(raw.strip())
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        hint = " (is the file comma-separated?)" if len(header) == 1 and re.search("[;\t]", header[0]) else ""
        found = ", ".join(repr(raw.strip()) for raw in header if raw.strip()) or "none"
        raise ImportFileError(
            f"{file_name}: missing required column(s) {', '.join(missing)}{hint}. "
            f"Columns found: {found}. Expected {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)} "
            "(common names such as 'Employee ID', 'E-mail' or 'Surname' work too)"
        )
    return columns, len(header), result


def _column_key(header: str) -> str:
    """A header as looked up in COLUMN_ALIASES: "E-mail address" -> "e_mail_address"."""
    return re.sub(r"[^a-z0-9]+", "_", fold_accents(header).strip().lower()).strip("_")


def _existing_employees(session: Session) -> dict[str, dict[str, Any]]:
    """Every employee's compared fields (and username, for search text), by employee number."""
    query = select(
        Employee.id,
        Employee.employee_number,
        Employee.first_name,
        Employee.last_name,
        Employee.email,
        Employee.department,
        Employee.slack_user_id,
        Employee.directory_roles,
        Employee.active,
        Employee.start_date,
        Employee.time_zone,
        Employee.personal_email,
        Employee.manager,
        Employee.search_text,
        Employee.sort_name,
        Account.username,
    ).outerjoin(Account, Account.employee_id == Employee.id)
    return {row.employee_number: row._asdict() for row in session.execute(query)}


def _parse_rows(
    reader: Reader,
    file_name: str,
    columns: dict[str, int],
    width: int,
    existing: dict[str, dict[str, Any]],
    date_format: str,
    errors: list[tuple[int, str]],
    progress: Callable[[int], None] | None,
) -> Iterator[_Row]:
    last_line, count = 1, 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            # Reported where the broken record starts: an unclosed quote only fails at the end of the file.
            raise ImportFileError(
                f"{file_name}, line {last_line + 1}: broken CSV quoting ({error}); check that every "
                'field opened with " on this line is closed, and that quotes inside a field are doubled ("")'
            ) from error
        line, last_line = last_line + 1, reader.line_num
        count += 1
        if progress and count % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != width:
            errors.append((line, f"has {len(cells)} fields but the header has {width} (unquoted comma?)"))
            continue
        raw = {name: cells[i] for name, i in columns.items()}
        stripped = {name: value.strip() for name, value in raw.items()}
        values, problems = validate_values(stripped, existing.get(stripped["employee_number"]), date_format)
        problems = control_character_problems(raw) + problems
        if problems:
            errors.append((line, "; ".join(problems)))
        else:
            yield _Row(line, values)
    if progress and count % PROGRESS_EVERY:
        progress(count % PROGRESS_EVERY)


def validate_values(
    raw: dict[str, str], stored: dict[str, Any] | None, date_format: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """An employee's values to store, from the text of each field given (stripped; employee_number,
    first_name and last_name always), and a list of problems (empty when they are good).

    The one home of the directory's field rules, for the CSV importer and SCIM alike; `stored` is the
    employee's stored values, if any. Control characters are `control_character_problems`' to find.
    """
    problems: list[str] = []
    values: dict[str, Any] = {
        "employee_number": raw["employee_number"],
        "first_name": raw["first_name"],
        "last_name": raw["last_name"],
    }
    problems += [f"missing {name.replace('_', ' ')}" for name in REQUIRED_COLUMNS[:3] if not raw[name]]

    stored = stored or {}
    for name in ("email", "personal_email"):
        address = raw.get(name)
        if address is None:
            continue
        if not address:
            values[name] = None
        elif address == stored.get(name):
            values[name] = address  # stored addresses are already validated and normalised
        else:
            try:
                values[name] = validate_email(address, check_deliverability=False).normalized
            except EmailNotValidError as error:
                problems.append(f"invalid {name.replace('_', ' ')} {address!r}: {error}")
    if "start_date" in raw:
        values["start_date"], problem = _parse_date(raw["start_date"], date_format)
        problems += [problem] if problem else []
    if "time_zone" in raw:
        values["time_zone"] = canonical_time_zone(raw["time_zone"]) if raw["time_zone"] else None
        if raw["time_zone"] and values["time_zone"] is None:
            problems.append(
                f"unknown time zone {raw['time_zone']!r} (expected an IANA name such as Europe/London)"
            )
    if "manager" in raw:
        values["manager"] = raw["manager"] or None
    if "department" in raw:
        values["department"] = raw["department"] or None
    if "roles" in raw:
        roles = list(dict.fromkeys(role.strip() for role in raw["roles"].split(";") if role.strip()))
        if any(len(role) > MAX_ROLE_LENGTH for role in roles):
            problems.append(f"a role name is longer than {MAX_ROLE_LENGTH} characters")
        values["directory_roles"] = ";".join(roles)
    if "slack_user_id" in raw:
        slack_id = raw["slack_user_id"].upper()
        if slack_id and not SLACK_USER_ID.fullmatch(slack_id):
            problems.append(f"invalid slack_user_id {raw['slack_user_id']!r} (expected e.g. U012AB3CD)")
        values["slack_user_id"] = slack_id or None
    if "active" in raw:
        word = _status_key(raw["active"])
        if word and word not in TRUE_WORDS | FALSE_WORDS:
            problems.append(
                f"unknown status {raw['active']!r} (active: yes, {', '.join(ACTIVE_STATUSES)}; "
                f"inactive: no, {', '.join(INACTIVE_STATUSES)})"
            )
        values["active"] = word not in FALSE_WORDS
    for name, limit in MAX_LENGTHS.items():
        value = values.get(name)
        if value and len(value) > limit:
            problems.append(f"{name} is longer than {limit} characters")
    return values, problems


def _parse_date(text: str, date_format: str) -> tuple[date | None, str | None]:
    """The date in `text` (ISO 8601, else `date_format` when set) and the problem, if any."""
    if not text:
        return None, None
    try:
        return date.fromisoformat(text), None
    except ValueError:
        pass
    if date_format:
        try:
            return datetime.strptime(text, date_format).date(), None
        except ValueError:
            pass
    expected = f"{date_format} (DATE_FORMAT) or " if date_format else ""
    hint = "" if date_format else "; set DATE_FORMAT (e.g. %d/%m/%Y) to read the export's own format"
    return None, f"start date {text!r} is not a date (expected {expected}YYYY-MM-DD{hint})"


def control_character_problems(raw: dict[str, str]) -> list[str]:
    """One problem per field holding a control character (tab and line breaks included)."""
    problems = []
    for name, value in raw.items():
        if value.isprintable():
            continue
        for position, char in enumerate(value, start=1):
            if unicodedata.category(char) == "Cc" or char in _FORBIDDEN_CHARACTERS:
                problems.append(
                    f"{name} contains a control character (U+{ord(char):04X}) at character {position}; "
                    "remove it (names and addresses cannot hold tabs, line breaks or terminal codes)"
                )
                break
    return problems


def _drop_duplicates(rows: list[_Row], errors: list[tuple[int, str]]) -> list[_Row]:
    """Reject all rows sharing an employee number or Slack user id: which one is right is unknown."""
    rejected: set[int] = set()
    for key, label in (("employee_number", "employee number"), ("slack_user_id", "slack_user_id")):
        lines: dict[str, list[int]] = {}
        for row in rows:
            if row.values.get(key):
                lines.setdefault(row.values[key], []).append(row.line)
        for value, found in lines.items():
            for line in found if len(found) > 1 else ():
                others = ", ".join(str(other) for other in found if other != line)
                errors.append((line, f"duplicate {label} {value!r} (also on line {others})"))
                rejected.add(line)
    return [row for row in rows if row.line not in rejected]


def _drop_shared_addresses(
    rows: list[_Row], existing: dict[str, dict[str, Any]], errors: list[tuple[int, str]]
) -> list[_Row]:
    """Reject rows that would give two active employees one work (or one personal) address, ignoring case,
    whether the other is in the file or only in the directory. A rejected row leaves that employee's
    stored address, which may clash in turn, so this repeats until nothing more is rejected."""
    while True:
        lines = {row.values["employee_number"]: row.line for row in rows}
        after = dict(existing)
        after.update((number, {**existing.get(number, {}), **row.values}) for number, row in _by_number(rows))
        rejected: set[int] = set()
        for key, label in (("email", "work email"), ("personal_email", "personal email")):
            holders: dict[str, list[str]] = {}
            for number, values in after.items():
                if values.get(key) and values.get("active", True):
                    holders.setdefault(values[key].lower(), []).append(number)
            for numbers in (numbers for numbers in holders.values() if len(numbers) > 1):
                where = {n: f"line {lines[n]}" if n in lines else "in the directory" for n in numbers}
                for number in (number for number in numbers if number in lines):
                    others = ", ".join(f"employee {n} ({where[n]})" for n in numbers if n != number)
                    errors.append((lines[number], f"{label} {after[number][key]!r} is also that of {others}"))
                    rejected.add(lines[number])
        if not rejected:
            return rows
        rows = [row for row in rows if row.line not in rejected]


def _by_number(rows: list[_Row]) -> Iterator[tuple[str, _Row]]:
    return ((row.values["employee_number"], row) for row in rows)


def _drop_unknown_managers(
    rows: list[_Row], existing: dict[str, dict[str, Any]], errors: list[tuple[int, str]]
) -> list[_Row]:
    """Reject rows whose manager is neither an employee of the file nor of the directory."""
    known = existing.keys() | {row.values["employee_number"] for row in rows}
    kept = []
    for row in rows:
        manager = row.values.get("manager")
        if manager and manager not in known:
            errors.append((row.line, f"manager {manager!r} is neither in the file nor in the directory"))
        else:
            kept.append(row)
    return kept


def _new_employee(values: dict[str, Any]) -> dict[str, Any]:
    employee = {
        "email": None,
        "personal_email": None,
        "start_date": None,
        "time_zone": None,
        "manager": None,
        "department": None,
        "slack_user_id": None,
        "directory_roles": "",
        "active": True,
        **values,
    }
    employee["search_text"] = _search_text({**employee, "username": None})
    employee["sort_name"] = name_sort_key(employee["first_name"], employee["last_name"])
    return employee


def _search_text(values: dict[str, Any]) -> str:
    return make_search_text(
        values["first_name"],
        values["last_name"],
        values["email"],
        values["employee_number"],
        values["username"],
    )


def list_employees(session: Session, search: str | None = None, limit: int = 50) -> list[Employee]:
    """Employees by employee number; with `search`, those whose search text holds every word of it."""
    query = (
        select(Employee)
        .options(selectinload(Employee.account))
        .order_by(Employee.employee_number)
        .limit(limit)
    )
    return list(session.scalars(_matching(query, search)))


def count_employees(session: Session, search: str | None = None) -> int:
    """How many employees `list_employees` would list without a limit."""
    return session.scalar(_matching(select(func.count()).select_from(Employee), search)) or 0


def _matching(query: Select[*_Ts], search: str | None) -> Select[*_Ts]:
    words = fold_accents(search or "").lower().split()
    if not words:
        return query
    return query.where(and_(*(Employee.search_text.contains(word, autoescape=True) for word in words)))


ICU_COLLATION = "und-x-icu"
"""PostgreSQL's ICU root collation (CLDR's language-neutral order), where the server was built with ICU."""
_icu_found: dict[tuple[str, str], bool] = {}


def name_order(session: Session) -> tuple[ColumnElement[str], ...]:
    """ORDER BY for employees by name, last name first, as a reader expects (not by code point).

    PostgreSQL with ICU: its root collation over the names. Elsewhere the folded `sort_name`, which puts
    Latin names in the same order. Ties go by employee number.
    """
    if _has_icu(session):
        return (
            Employee.last_name.collate(ICU_COLLATION),
            Employee.first_name.collate(ICU_COLLATION),
            Employee.employee_number.expression,
        )
    return (Employee.sort_name.expression, Employee.employee_number.expression)


def _has_icu(session: Session) -> bool:
    """Whether the database has ICU_COLLATION (asked once per database and process)."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    key = (bind.engine.url.render_as_string(), ICU_COLLATION)
    if key not in _icu_found:
        query = text("SELECT 1 FROM pg_collation WHERE collname = :name")
        _icu_found[key] = session.scalar(query, {"name": ICU_COLLATION}) is not None
    return _icu_found[key]


def address_holder(session: Session, field: str, address: str, employee_id: int | None = None) -> str | None:
    """The employee number of the active employee, other than `employee_id`, whose `field` (`email` or
    `personal_email`) is `address` ignoring case; None when nobody's is. Each active employee needs their
    own addresses (the importer's `_drop_shared_addresses` applies the same rule to a whole file)."""
    column = Employee.email if field == "email" else Employee.personal_email
    return session.scalar(
        select(Employee.employee_number)
        .where(func.lower(column) == address.lower(), Employee.active, Employee.id != (employee_id or 0))
        .limit(1)
    )


def change_email(
    sessions: sessionmaker[Session], employee_id: int, address: str, actor: str, why: str
) -> str | None:
    """Set an employee's email address (already validated), audited with `why`; the old address.

    A bounced or dropped flag on the old address goes with it. Raises AddressTaken when the address
    (ignoring case) is another active employee's and this one is active, as the import refuses it.
    """
    with sessions.begin() as session:
        employee = session.get_one(Employee, employee_id, options=[selectinload(Employee.account)])
        holder = address_holder(session, "email", address, employee.id)
        if holder is not None and employee.active:
            raise AddressTaken(
                f"Employee {holder} already has this address; each active employee needs their own"
            )
        old = employee.email
        if old != address:
            employee.email = address
            employee.search_text = make_search_text(
                employee.first_name,
                employee.last_name,
                address,
                employee.employee_number,
                employee.account.username if employee.account else None,
            )
            employee.bad_address = employee.bad_address_event = employee.bad_address_reason = None
            employee.bad_address_at = None
        record(
            session,
            actor,
            AuditAction.ADDRESS_CHANGED,
            employee_target(employee.employee_number),
            old_address=old,
            new_address=address,
            why=why,
        )
        return old
