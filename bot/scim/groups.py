"""SCIM Groups: credbot's roles. A group's members are the users whose account has the role; adding and
removing members gives and takes the role (audited per user). Deleting a group removes the role."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from scim2_models import Context, Group, PatchOp, SCIMException
from sqlalchemy import ColumnElement, delete, func, insert, select
from sqlalchemy.orm import Session

from bot.audit import AuditAction, employee_target, record
from bot.scim.errors import from_library, invalid_value, not_found, uniqueness
from bot.scim.schemas import POLICY
from models import Account, Employee, Role, account_roles, full_name

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _parse_id(group_id: str) -> int:
    if not (group_id.isascii() and group_id.isdigit() and len(group_id) < 18):
        raise not_found(f"Group {group_id}")
    return int(group_id)


def _role(session: Session, group_id: str) -> Role:
    role = session.get(Role, _parse_id(group_id))
    if role is None:
        raise not_found(f"Group {group_id}")
    return role


def _members(session: Session, role_ids: list[int]) -> dict[int, list[dict[str, str]]]:
    """The active members of each role: their SCIM id and name."""
    query = (
        select(account_roles.c.role_id, Employee.id, Employee.first_name, Employee.last_name)
        .join(Account, Account.id == account_roles.c.account_id)
        .join(Employee, Employee.id == Account.employee_id)
        .where(account_roles.c.role_id.in_(role_ids), Employee.active)
        .order_by(Employee.id)
    )
    members: dict[int, list[dict[str, str]]] = {role_id: [] for role_id in role_ids}
    for role_id, employee_id, first, last in session.execute(query):
        members[role_id].append({"value": str(employee_id), "display": full_name(first, last)})
    return members


def _document(role: Role, members: list[dict[str, str]] | None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA],
        "id": str(role.id),
        "displayName": role.name,
        "meta": {"resourceType": "Group"},
    }
    if members:
        document["members"] = members
    return document


def get_group(session: Session, group_id: str, with_members: bool = True) -> dict[str, Any]:
    role = _role(session, group_id)
    return _document(role, _members(session, [role.id])[role.id] if with_members else None)


def list_groups(
    session: Session, where: ColumnElement[bool], start_index: int, count: int, with_members: bool
) -> tuple[int, list[dict[str, Any]]]:
    total = session.scalar(select(func.count()).select_from(Role).where(where)) or 0
    if count == 0 or start_index > total:
        return total, []
    roles = list(
        session.scalars(select(Role).where(where).order_by(Role.id).offset(start_index - 1).limit(count))
    )
    members = _members(session, [role.id for role in roles]) if with_members else {}
    return total, [_document(role, members.get(role.id) if with_members else None) for role in roles]


def _group(payload: Any, context: Context) -> Group:
    try:
        with POLICY:
            return Group.model_validate(payload, scim_ctx=context)
    except (ValidationError, SCIMException) as error:
        raise from_library(error) from error


def create_group(session: Session, actor: str, payload: Any) -> dict[str, Any]:
    """POST /Groups: a new role, with its members."""
    group = _group(payload, Context.RESOURCE_CREATION_REQUEST)
    name = _checked_name(session, group.display_name, None)
    role = Role(name=name)
    session.add(role)
    session.flush()
    record(session, actor, AuditAction.SCIM_GROUP_CHANGED, f"role:{name}", group=name, created=True)
    _set_members(session, actor, role, _member_ids(group))
    return get_group(session, str(role.id))


def replace_group(session: Session, actor: str, group_id: str, payload: Any) -> dict[str, Any]:
    role = _role(session, group_id)
    return _store(session, actor, role, _group(payload, Context.RESOURCE_REPLACEMENT_REQUEST))


def patch_group(session: Session, actor: str, group_id: str, payload: Any) -> dict[str, Any]:
    """PATCH /Groups/{id}: Okta's and Entra's member adds and removes, and renames."""
    role = _role(session, group_id)
    current = _group(get_group(session, group_id), Context.RESOURCE_QUERY_RESPONSE)
    try:
        with POLICY:
            patch = PatchOp[Group].model_validate(payload, scim_ctx=Context.RESOURCE_PATCH_REQUEST)
            patch.patch(current)
    except (ValidationError, SCIMException) as error:
        raise from_library(error) from error
    return _store(session, actor, role, current)


def delete_group(session: Session, actor: str, group_id: str) -> None:
    """DELETE /Groups/{id}: the role is taken from its members, then removed."""
    role = _role(session, group_id)
    _set_members(session, actor, role, [])
    record(session, actor, AuditAction.SCIM_GROUP_CHANGED, f"role:{role.name}", group=role.name, deleted=True)
    session.delete(role)


def _store(session: Session, actor: str, role: Role, group: Group) -> dict[str, Any]:
    name = _checked_name(session, group.display_name, role.id)
    if name != role.name:
        record(
            session, actor, AuditAction.SCIM_GROUP_CHANGED, f"role:{name}", group=name, renamed_from=role.name
        )
        role.name = name
    _set_members(session, actor, role, _member_ids(group))
    session.flush()
    return get_group(session, str(role.id))


def _checked_name(session: Session, display_name: str | None, role_id: int | None) -> str:
    name = (display_name or "").strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise invalid_value("displayName is required: 1 to 100 printable characters")
    other = session.scalar(
        select(Role.id).where(func.lower(Role.name) == name.lower(), Role.id != (role_id or 0)).limit(1)
    )
    if other is not None:
        raise uniqueness(f"there is a group named {name} already")
    return name


def _member_ids(group: Group) -> list[str]:
    return list(dict.fromkeys(str(member.value) for member in group.members or [] if member.value))


def _set_members(session: Session, actor: str, role: Role, wanted: list[str]) -> None:
    """Give the role to exactly the `wanted` users (SCIM ids); one audit event per user changed."""
    ids = [int(value) for value in wanted if value.isascii() and value.isdigit() and len(value) < 18]
    found: dict[int, tuple[str, int | None]] = {
        employee_id: (number, account_id)
        for employee_id, number, account_id in session.execute(
            select(Employee.id, Employee.employee_number, Account.id)
            .outerjoin(Account, Account.employee_id == Employee.id)
            .where(Employee.id.in_(ids), Employee.active)
        )
    }
    unknown = [value for value in wanted if not value.isdigit() or int(value) not in found]
    if unknown:
        raise invalid_value(f"no such user: {', '.join(unknown[:10])}")
    without_account = [
        str(employee_id) for employee_id, (_, account_id) in found.items() if account_id is None
    ]
    if without_account:
        raise invalid_value(
            f"user {', '.join(without_account[:10])} has no Self-Service account yet, so it cannot have a "
            "role (SCIM_CREATE_ACCOUNTS is false: create the accounts first)"
        )
    current = {
        employee_id: (number, account_id)
        for employee_id, number, account_id in session.execute(
            select(Employee.id, Employee.employee_number, Account.id)
            .join(Account, Account.employee_id == Employee.id)
            .join(account_roles, account_roles.c.account_id == Account.id)
            .where(account_roles.c.role_id == role.id, Employee.active)
        )
    }
    added = [employee_id for employee_id in found if employee_id not in current]
    removed = [employee_id for employee_id in current if employee_id not in found]
    if added:
        session.execute(
            insert(account_roles), [{"account_id": found[i][1], "role_id": role.id} for i in added]
        )
    if removed:
        session.execute(
            delete(account_roles).where(
                account_roles.c.role_id == role.id,
                account_roles.c.account_id.in_([current[i][1] for i in removed]),
            )
        )
    for employee_id, change, number in [(i, "added", found[i][0]) for i in added] + [
        (i, "removed", current[i][0]) for i in removed
    ]:
        record(
            session,
            actor,
            AuditAction.SCIM_GROUP_CHANGED,
            employee_target(number),
            employee_id=employee_id,
            group=role.name,
            member=change,
        )
