"""SCIM Users: the directory's active employees, read and written by the identity provider.

A user's `id` is the employee's id; `userName` is their Self-Service username (the account's, or the one
waiting for an account when SCIM_CREATE_ACCOUNTS is false). Writes go through the directory's own rules
(`validate_values`, `address_holder`, `valid_username`): SCIM refuses what the CSV importer refuses.
Deactivated users (`active: false`, DELETE) are leavers (`record_leavers`) and hidden from SCIM from then
on; nothing of theirs is erased.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from scim2_models import Context, PatchOp, SCIMException
from sqlalchemy import ColumnElement, Row, Select, func, select, union_all
from sqlalchemy.orm import Session

from bot.accounts import USERNAME_RULES, AccountChangeError, create_accounts, rename_account, valid_username
from bot.audit import AuditAction, employee_target, record
from bot.directory import address_holder, control_character_problems, validate_values
from bot.leavers import record_leavers
from bot.scim.errors import ScimError, from_library, invalid_value, not_found, uniqueness
from bot.scim.paging import RESUMES, Listing
from bot.scim.schemas import CREDBOT_USER_SCHEMA, POLICY, CredbotUser, Enterprise, UserResource
from bot.settings import Settings
from models import Account, Employee, name_sort_key

CORE_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_EXTERNAL_ID = 255
_STORED = ("first_name", "last_name", "email", "personal_email", "department", "time_zone", "start_date")


@dataclass(frozen=True)
class Writer:
    """Who writes through SCIM (the audit actor, `scim:NAME`), under which settings."""

    actor: str
    settings: Settings


def _rows(where: ColumnElement[bool]) -> Select[Employee, str | None]:
    return (
        select(Employee, Account.username)
        .outerjoin(Account, Account.employee_id == Employee.id)
        .where(Employee.active, where)
    )


def user_document(employee: Employee, username: str | None, manager_id: int | None) -> dict[str, Any]:
    """The employee as a SCIM User (a JSON object), without `meta.location` (the web layer adds it)."""
    document: dict[str, Any] = {
        "schemas": [CORE_SCHEMA, ENTERPRISE_SCHEMA],
        "id": str(employee.id),
        "userName": username or employee.pending_username or employee.employee_number,
        "name": {"givenName": employee.first_name, "familyName": employee.last_name},
        "displayName": employee.full_name,
        "active": employee.active,
        "meta": {
            "resourceType": "User",
            "created": employee.created_at.isoformat(),
            "lastModified": employee.updated_at.isoformat(),
        },
    }
    if employee.external_id is not None:
        document["externalId"] = employee.external_id
    emails = []
    if employee.email:
        emails.append({"value": employee.email, "type": "work", "primary": True})
    if employee.personal_email:
        emails.append({"value": employee.personal_email, "type": "home"})
    if emails:
        document["emails"] = emails
    if employee.time_zone:
        document["timezone"] = employee.time_zone
    enterprise: dict[str, Any] = {"employeeNumber": employee.employee_number}
    if employee.department:
        enterprise["department"] = employee.department
    if manager_id is not None:
        enterprise["manager"] = {"value": str(manager_id)}
    document[ENTERPRISE_SCHEMA] = enterprise
    if employee.start_date is not None:
        document["schemas"].append(CREDBOT_USER_SCHEMA)
        document[CREDBOT_USER_SCHEMA] = {"startDate": employee.start_date.isoformat()}
    return document


def _documents(session: Session, rows: Sequence[Row[Employee, str | None]]) -> list[dict[str, Any]]:
    numbers = {employee.manager for employee, _ in rows if employee.manager}
    managers: dict[str, int] = {}
    if numbers:
        query = select(Employee.employee_number, Employee.id).where(Employee.employee_number.in_(numbers))
        managers = {number: employee_id for number, employee_id in session.execute(query)}
    return [
        user_document(employee, username, managers.get(employee.manager or "")) for employee, username in rows
    ]


def _parse_id(user_id: str) -> int:
    if not (user_id.isascii() and user_id.isdigit() and len(user_id) < 18):
        raise not_found(f"User {user_id}")
    return int(user_id)


def _load(session: Session, user_id: str) -> tuple[Employee, str | None]:
    row = session.execute(_rows(Employee.id == _parse_id(user_id))).first()
    if row is None:
        raise not_found(f"User {user_id}")
    return row[0], row[1]


def _reloaded(session: Session, employee: Employee) -> dict[str, Any]:
    """The user as stored now, read back in one query (what create_accounts changed included)."""
    query = _rows(Employee.id == employee.id).execution_options(populate_existing=True)
    row = session.execute(query).one()
    return _documents(session, [row])[0]


def get_user(session: Session, user_id: str) -> dict[str, Any]:
    employee, username = _load(session, user_id)
    return _documents(session, [(employee, username)])[0]  # type: ignore[list-item]


def list_users(
    session: Session,
    where: ColumnElement[bool],
    start_index: int,
    count: int,
    listing: Listing | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, the page's users) of the active employees matching `where`, by id.

    A page that is not full tells the total by itself: a filter by userName makes one query, not two. With
    `listing`, the page after one served lately resumes from its last id (`paging`), and only the users
    after that id are counted.
    """
    page = select(Employee.id).where(Employee.active, where).order_by(Employee.id).limit(count)
    after = RESUMES.after(listing, start_index) if listing else None
    # ids only: an index-only scan up to the page, or from the id it resumes after
    page = page.offset(start_index - 1) if after is None else page.where(Employee.id > after)
    rows = list(session.execute(_rows(Employee.id.in_(page.scalar_subquery())).order_by(Employee.id)))
    if listing and rows and len(rows) == count:
        RESUMES.note(listing, start_index + count, rows[-1][0].id)
    if 0 < len(rows) < count or (start_index == 1 and len(rows) < count):
        return start_index - 1 + len(rows), _documents(session, rows)
    counted = select(func.count()).select_from(Employee).where(Employee.active, where)
    if after is None:
        total = session.scalar(counted) or 0
    else:
        total = start_index - 1 + (session.scalar(counted.where(Employee.id > after)) or 0)
    return total, _documents(session, rows)


def _resource(payload: Any, context: Context) -> Any:
    """The payload read as a User (scim2-models checks schemas, types and required attributes)."""
    try:
        with POLICY:
            return UserResource.model_validate(payload, scim_ctx=context)
    except (ValidationError, SCIMException) as error:
        raise from_library(error) from error


def create_user(session: Session, writer: Writer, payload: Any) -> dict[str, Any]:
    """POST /Users: a new employee (and their account, with SCIM_CREATE_ACCOUNTS); audited."""
    resource = _resource(payload, Context.RESOURCE_CREATION_REQUEST)
    values = _checked_values(session, resource, None)
    if session.scalar(select(Employee.id).where(Employee.employee_number == values["employee_number"])):
        raise uniqueness(f"employee number {values['employee_number']} is another employee's already")
    employee = Employee(
        employee_number=values["employee_number"],
        first_name=values["first_name"],
        last_name=values["last_name"],
        directory_roles="",
        active=True,
    )
    _apply(employee, values)
    employee.pending_username = values["username"]
    employee.refresh_search_text(values["username"])
    session.add(employee)
    session.flush()
    account = False
    if writer.settings.scim_create_accounts:
        account = bool(create_accounts(session, writer.settings, writer.actor, [employee.id]).created)
    record(
        session,
        writer.actor,
        AuditAction.SCIM_USER_CREATED,
        employee_target(employee.employee_number),
        employee_id=employee.id,
        username=values["username"],
        external_id=employee.external_id,
        account_created=account,
    )
    if resource.active is False:  # provisioned as someone who already left: recorded, then a leaver at once
        session.expire(employee)  # as create_accounts left it
        return deactivate_user(session, writer, str(employee.id))
    return _reloaded(session, employee)


def replace_user(session: Session, writer: Writer, user_id: str, payload: Any) -> dict[str, Any]:
    """PUT /Users/{id}: every attribute as given (those left out are cleared); audited."""
    employee, username = _load(session, user_id)
    resource = _resource(payload, Context.RESOURCE_REPLACEMENT_REQUEST)
    return _update(session, writer, employee, username, resource)


def patch_user(session: Session, writer: Writer, user_id: str, payload: Any) -> dict[str, Any]:
    """PATCH /Users/{id}: the operations applied to the user as it is, then stored as a PUT would."""
    employee, username = _load(session, user_id)
    current = _resource(_documents(session, [(employee, username)])[0], Context.RESOURCE_QUERY_RESPONSE)  # type: ignore[list-item]
    try:
        with POLICY:
            patch = PatchOp[UserResource].model_validate(payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST)
            patch.patch(current)
    except (ValidationError, SCIMException) as error:
        raise from_library(error) from error
    return _update(session, writer, employee, username, current)


def _update(
    session: Session, writer: Writer, employee: Employee, username: str | None, resource: Any
) -> dict[str, Any]:
    values = _checked_values(session, resource, employee)
    if values["employee_number"] != employee.employee_number:
        raise ScimError(400, "employeeNumber cannot change (it identifies the employee)", "mutability")
    if resource.active is False:
        return deactivate_user(session, writer, str(employee.id))
    before = {name: getattr(employee, name) for name in (*_STORED, "manager", "external_id")}
    changed = [name for name, value in before.items() if values.get(name, value) != value]
    _apply(employee, values)
    new_username = values["username"]
    if new_username != (username or employee.pending_username):
        changed.append("username")
        if username is None:
            employee.pending_username = new_username
        else:
            try:
                rename_account(session, writer.actor, employee.id, new_username)
            except AccountChangeError as error:
                raise uniqueness(str(error)) from error
    employee.refresh_search_text(new_username)
    if changed:
        record(
            session,
            writer.actor,
            AuditAction.SCIM_USER_UPDATED,
            employee_target(employee.employee_number),
            employee_id=employee.id,
            changed=changed,
        )
    session.flush()
    return get_user(session, str(employee.id))


def deactivate_user(session: Session, writer: Writer, user_id: str) -> dict[str, Any]:
    """`active: false` or DELETE: the employee left. Their account is disabled and its sessions end
    (`record_leavers`); they are hidden from SCIM from now on. Audited; nothing is erased."""
    employee, username = _load(session, user_id)
    document = _documents(session, [(employee, username)])[0]  # type: ignore[list-item]
    employee.active = False
    disabled = record_leavers(session, writer.actor, [employee.employee_number])
    record(
        session,
        writer.actor,
        AuditAction.SCIM_USER_DEACTIVATED,
        employee_target(employee.employee_number),
        employee_id=employee.id,
        account_disabled=bool(disabled),
    )
    document["active"] = False
    return document


def _apply(employee: Employee, values: dict[str, Any]) -> None:
    for name in (*_STORED, "manager", "external_id"):
        setattr(employee, name, values.get(name))
    employee.sort_name = name_sort_key(employee.first_name, employee.last_name)


def _checked_values(session: Session, resource: Any, employee: Employee | None) -> dict[str, Any]:
    """The employee's values from a User, checked by the directory's rules; raises ScimError."""
    enterprise = resource[Enterprise]
    number = (enterprise.employee_number or "").strip() if enterprise else ""
    if not number:
        raise invalid_value(
            f"employeeNumber ({ENTERPRISE_SCHEMA}:employeeNumber) is required: each employee needs one"
        )
    credbot = resource[CredbotUser]
    name = resource.name
    emails = list(resource.emails or [])
    raw = {
        "employee_number": number,
        "first_name": (name.given_name if name else None) or "",
        "last_name": (name.family_name if name else None) or "",
        "email": _email_of(emails, "work"),
        "personal_email": _email_of(emails, "home"),
        "time_zone": resource.timezone or "",
        "start_date": (credbot.start_date if credbot else None) or "",
        "department": (enterprise.department if enterprise else None) or "",
        "manager": "",
    }
    external_id = resource.external_id
    problems = control_character_problems(
        {**raw, "userName": resource.user_name or "", "externalId": external_id or ""}
    )
    if external_id is not None and len(external_id) > MAX_EXTERNAL_ID:
        problems.append(f"externalId is longer than {MAX_EXTERNAL_ID} characters")
    stripped = {key: value.strip() for key, value in raw.items()}
    stored = {"email": employee.email, "personal_email": employee.personal_email} if employee else None
    values, more = validate_values(stripped, stored)
    problems += [problem for problem in more if not problem.startswith("missing employee number")]
    if problems:
        raise invalid_value("; ".join(problems))
    values["manager"] = _manager_number(session, enterprise.manager.value if enterprise.manager else None)
    if values["manager"] is not None and values["manager"] == number:
        raise invalid_value("an employee cannot be their own manager")
    values["external_id"] = external_id
    values["username"] = _username(session, resource.user_name, employee)
    own_id = employee.id if employee else None
    for field, label in (("email", "work"), ("personal_email", "home")):
        holder = values.get(field) and address_holder(session, field, values[field], own_id)
        if holder:
            raise uniqueness(f"the {label} email {values[field]} is also that of employee {holder}")
    return values


def _email_of(emails: Iterable[Any], kind: str) -> str:
    """The address of the type `kind`; for work, an untyped or primary one will do."""
    typed = [email for email in emails if (email.type or "").lower() == kind]
    if not typed and kind == "work":
        typed = [email for email in emails if not email.type or email.primary]
    return str(typed[0].value or "") if typed else ""


def _manager_number(session: Session, value: str | None) -> str | None:
    """The manager's employee number from `manager.value`: their SCIM id, else their employee number."""
    if not value:
        return None
    value = value.strip()
    query = select(Employee.employee_number).where(Employee.active)
    found = None
    if value.isascii() and value.isdigit() and len(value) < 18:
        found = session.scalar(query.where(Employee.id == int(value)))
    found = found or session.scalar(query.where(Employee.employee_number == value))
    if found is None:
        raise invalid_value(f"manager {value!r} is no active user (give the manager's id)")
    return found


def _username(session: Session, user_name: str | None, employee: Employee | None) -> str:
    """The userName as a Self-Service username (lower case), checked by credbot's username rules."""
    username = (user_name or "").strip().lower()
    if not valid_username(username):
        raise invalid_value(
            f"userName {user_name!r} is not a Self-Service username: it must be {USERNAME_RULES}"
        )
    own = employee.id if employee else 0
    holders = union_all(  # one round trip: the account's username, or one waiting for an account
        select(Account.employee_id).where(
            func.lower(Account.username) == username, Account.employee_id != own
        ),
        select(Employee.id).where(Employee.pending_username == username, Employee.id != own),
    )
    taken = session.scalar(holders.limit(1))
    if taken:
        raise uniqueness(f"userName {username} is another user's already")
    return username
