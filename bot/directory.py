"""The employee directory: CSV import from the HR export, search text, listing."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVarTuple, cast

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import ColumnElement, Select, and_, bindparam, func, select, text, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bot.admins import SLACK_USER_ID
from bot.audit import AuditAction, employee_target, record
from models import Account, Employee, name_sort_key, utcnow
from models.directory import fold_accents as fold_accents  # its home is the model; imported from here too

if TYPE_CHECKING:
    from _csv import Reader  # what csv.reader returns (the name exists in typeshed only)

REQUIRED_COLUMNS = ("employee_number", "first_name", "last_name", "email")
OPTIONAL_COLUMNS = ("department", "manager", "roles", "slack_user_id", "active")
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
    "manager": ("manager_name", "line_manager", "reports_to", "supervisor"),
    "roles": ("role",),
    "slack_user_id": ("slack_id", "slack_user", "slack_member_id", "slack"),
    "active": ("is_active", "enabled"),
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
    "department": 200,
    "manager": 200,
    "directory_roles": 1000,
}
MAX_ROLE_LENGTH = 100
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "active"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "inactive"})
PROGRESS_EVERY = 1000
_Ts = TypeVarTuple("_Ts")


def make_search_text(
    first_name: str | None,
    last_name: str | None,
    email: str | None,
    employee_number: str | None,
    username: str | None,
) -> str:
    """What type-ahead search matches: the non-empty parts, lower-case, accent-folded, space-joined."""
    parts = (first_name, last_name, email, employee_number, username)
    return " ".join(fold_accents(part).lower() for part in parts if part)


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
) -> ImportResult:
    """Upsert the employees of a CSV file by employee number, in the caller's transaction.

    Nothing is written when a row is bad unless `skip_invalid`; then the good rows are imported.
    Employees missing from the file are left as they are. A column absent from the file leaves
    that field of existing employees unchanged. `progress(n)` is told about every `n` rows read.
    Raises ImportFileError when the file itself is unusable.
    """
    file_name, text = _read_text(path_or_stream)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns, width, result = _read_header(reader, file_name)
    existing = _existing_employees(session)

    rows = list(_parse_rows(reader, file_name, columns, width, existing, result.errors, progress))
    rows = _drop_duplicates(rows, result.errors)
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
        Employee.manager,
        Employee.slack_user_id,
        Employee.directory_roles,
        Employee.active,
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
        values, problems = _validate({name: value.strip() for name, value in raw.items()}, existing)
        problems = _control_character_problems(raw) + problems
        if problems:
            errors.append((line, "; ".join(problems)))
        else:
            yield _Row(line, values)
    if progress and count % PROGRESS_EVERY:
        progress(count % PROGRESS_EVERY)


def _validate(raw: dict[str, str], existing: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The row's stored values and a list of problems (empty when the row is good)."""
    problems: list[str] = []
    values: dict[str, Any] = {
        "employee_number": raw["employee_number"],
        "first_name": raw["first_name"],
        "last_name": raw["last_name"],
    }
    problems += [f"missing {name.replace('_', ' ')}" for name in REQUIRED_COLUMNS[:3] if not raw[name]]

    email = raw["email"]
    if not email:
        values["email"] = None
    elif email == (existing.get(raw["employee_number"]) or {}).get("email"):
        values["email"] = email  # stored addresses are already validated and normalised
    else:
        try:
            values["email"] = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError as error:
            problems.append(f"invalid email {email!r}: {error}")
    if "department" in raw:
        values["department"] = raw["department"] or None
    if "manager" in raw:
        values["manager"] = raw["manager"] or None
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
        word = raw["active"].lower()
        if word and word not in TRUE_WORDS | FALSE_WORDS:
            problems.append(f"invalid active value {raw['active']!r} (use yes or no)")
        values["active"] = word not in FALSE_WORDS
    for name, limit in MAX_LENGTHS.items():
        value = values.get(name)
        if value and len(value) > limit:
            problems.append(f"{name} is longer than {limit} characters")
    return values, problems


def _control_character_problems(raw: dict[str, str]) -> list[str]:
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


def _new_employee(values: dict[str, Any]) -> dict[str, Any]:
    employee = {
        "department": None,
        "manager": None,
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


def change_email(
    sessions: sessionmaker[Session], employee_id: int, address: str, actor: str, why: str
) -> str | None:
    """Set an employee's email address (already validated), audited with `why`; the old address.

    A bounced or dropped flag on the old address goes with it.
    """
    with sessions.begin() as session:
        employee = session.get_one(Employee, employee_id, options=[selectinload(Employee.account)])
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
