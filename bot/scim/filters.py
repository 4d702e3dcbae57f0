"""SCIM filters (RFC 7644 §3.4.2.2) as SQL: scim2-models parses and checks them, this turns the tree into
a SQLAlchemy WHERE clause over the directory. Attributes that are not stored as a column are refused
(`invalidFilter`), never filtered in memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    FilterVisitor,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, union
from sqlalchemy.orm import InstrumentedAttribute

from bot.scim.errors import ScimError, from_library
from bot.scim.schemas import UserResource
from models import Account, Employee, Role, account_roles

_Column = InstrumentedAttribute[Any]
_Where = ColumnElement[bool]


class _Columns:
    """How one resource's attributes are stored: plain columns, and attributes that need a query."""

    def __init__(
        self,
        columns: Mapping[str, tuple[_Column, bool]],
        special: Mapping[str, Callable[[CompareOperator, Any], _Where]],
    ) -> None:
        self.columns = columns
        """Attribute (lower case, `name.givenname`) -> (column, compared case-exactly)."""
        self.special = special


def _username_eq(op: CompareOperator, value: Any) -> _Where:
    """`userName eq`: the account's username, or the username waiting for an account; each by its index."""
    if op is not CompareOperator.eq:
        raise ScimError(400, "userName can only be compared with eq", "invalidFilter")
    name = str(value).lower()
    holders = union(
        select(Account.employee_id).where(func.lower(Account.username) == name),
        select(Employee.id).where(Employee.pending_username == name),
    )
    return Employee.id.in_(holders)


def _group_members(op: CompareOperator, value: Any) -> _Where:
    """`members eq "ID"` (Entra asks this to check a membership): the roles the employee's account has."""
    if op is not CompareOperator.eq:
        raise ScimError(400, "members can only be compared with eq", "invalidFilter")
    employee_id = _as_id(value)
    if employee_id is None:
        return false()
    roles = (
        select(account_roles.c.role_id)
        .join(Account, Account.id == account_roles.c.account_id)
        .where(Account.employee_id == employee_id)
    )
    return Role.id.in_(roles)


USER_COLUMNS = _Columns(
    {
        "id": (Employee.id, True),
        "externalid": (Employee.external_id, True),
        "name.givenname": (Employee.first_name, False),
        "name.familyname": (Employee.last_name, False),
        "timezone": (Employee.time_zone, True),
        "employeenumber": (Employee.employee_number, True),
        "department": (Employee.department, False),
    },
    {"username": _username_eq},
)
GROUP_COLUMNS = _Columns(
    {"id": (Role.id, True), "displayname": (Role.name, False)},
    {"members": _group_members, "members.value": _group_members},
)
_EMAIL_COLUMNS = {"work": Employee.email, "home": Employee.personal_email}


def _as_id(value: Any) -> int | None:
    text = str(value)
    return int(text) if text.isascii() and text.isdigit() and len(text) < 18 else None


def _key(path: AttrPath) -> str:
    return f"{path.attr}.{path.sub_attr}".lower() if path.sub_attr else path.attr.lower()


def _compare(column: _Column, op: CompareOperator, value: Any, case_exact: bool) -> _Where:
    if column is Employee.id or column is Role.id:
        number = _as_id(value)
        if op is not CompareOperator.eq:
            raise ScimError(400, "id can only be compared with eq", "invalidFilter")
        return column == number if number is not None else false()
    if not isinstance(value, str):
        raise ScimError(400, f"compare {column.key} with a string", "invalidFilter")
    left: ColumnElement[Any] = column.expression if case_exact else func.lower(column)
    text = value if case_exact else value.lower()
    match op:
        case CompareOperator.eq:
            return left == text
        case CompareOperator.ne:
            return or_(column.is_(None), left != text)
        case CompareOperator.co:
            return left.contains(text, autoescape=True)
        case CompareOperator.sw:
            return left.startswith(text, autoescape=True)
        case CompareOperator.ew:
            return left.endswith(text, autoescape=True)
        case CompareOperator.gt:
            return left > text
        case CompareOperator.ge:
            return left >= text
        case CompareOperator.lt:
            return left < text
        case _:
            return left <= text


class _ToSql(FilterVisitor[_Where]):
    def __init__(self, columns: _Columns) -> None:
        self.columns = columns

    def _column(self, path: AttrPath) -> tuple[_Column, bool]:
        found = self.columns.columns.get(_key(path))
        if found is None:
            raise ScimError(400, f"filtering on {path} is not supported", "invalidFilter")
        return found

    def visit_comparison(self, node: Comparison) -> _Where:
        key = _key(node.attr_path)
        if key in self.columns.special:
            return self.columns.special[key](node.op, node.value)
        if self.columns is USER_COLUMNS and key in ("emails", "emails.value"):
            return _emails(tuple(_EMAIL_COLUMNS.values()), node.op, node.value)
        column, case_exact = self._column(node.attr_path)
        return _compare(column, node.op, node.value, case_exact)

    def visit_present(self, node: Present) -> _Where:
        if self.columns is USER_COLUMNS and _key(node.attr_path) in ("emails", "emails.value"):
            return or_(*(column.is_not(None) for column in _EMAIL_COLUMNS.values()))
        column, _ = self._column(node.attr_path)
        return column.is_not(None)

    def visit_not(self, node: Not) -> _Where:
        return not_(self.visit(node.expr))

    def visit_logical_expr(self, node: LogicalExpr) -> _Where:
        terms = [self.visit(term) for term in node.terms]
        return and_(*terms) if node.op is LogicalOperator.and_ else or_(*terms)

    def visit_value_path(self, node: ValuePath) -> _Where:
        if self.columns is not USER_COLUMNS or node.attr_path.attr.lower() != "emails":
            raise ScimError(400, f"filtering on {node.attr_path}[…] is not supported", "invalidFilter")
        return _EmailFilter().visit(node.val_filter)


class _EmailFilter(FilterVisitor[_Where]):
    """Inside `emails[…]`: `type eq "work"` picks the work address, `"home"` the personal one, and `value`
    compares them (Entra's `emails[type eq "work"].value eq "…"` arrives here as `type … and value …`)."""

    def visit_logical_expr(self, node: LogicalExpr) -> _Where:
        if node.op is not LogicalOperator.and_:
            raise ScimError(400, "only `and` is supported inside emails[…]", "invalidFilter")
        types = [term for term in node.terms if _is_type(term)]
        others = [term for term in node.terms if not _is_type(term)]
        if len(types) > 1 or not others:
            return and_(*(self.visit(term) for term in node.terms))
        columns = _typed_columns(types[0]) if types else tuple(_EMAIL_COLUMNS.values())
        return and_(*(_email_term(columns, term) for term in others)) if columns else false()

    def visit_comparison(self, node: Comparison) -> _Where:
        if _is_type(node):
            return (
                or_(*(column.is_not(None) for column in _typed_columns(node)))
                if _typed_columns(node)
                else false()
            )
        return _email_term(tuple(_EMAIL_COLUMNS.values()), node)

    def visit_present(self, node: Present) -> _Where:
        return _email_term(tuple(_EMAIL_COLUMNS.values()), node)

    def visit_not(self, node: Not) -> _Where:
        raise ScimError(400, "`not` is not supported inside emails[…]", "invalidFilter")


def _is_type(node: FilterNode) -> bool:
    return isinstance(node, Comparison) and _key(node.attr_path) == "type" and node.op is CompareOperator.eq


def _typed_columns(node: FilterNode) -> tuple[_Column, ...]:
    if not isinstance(node, Comparison):
        return ()
    column = _EMAIL_COLUMNS.get(str(node.value).lower())
    return (column,) if column is not None else ()


def _email_term(columns: tuple[_Column, ...], node: FilterNode) -> _Where:
    if isinstance(node, Comparison) and _key(node.attr_path) == "value":
        return _emails(columns, node.op, node.value)
    if isinstance(node, Present) and _key(node.attr_path) == "value":
        return or_(*(column.is_not(None) for column in columns))
    raise ScimError(400, f"filtering emails on {node} is not supported", "invalidFilter")


def _emails(columns: tuple[_Column, ...], op: CompareOperator, value: Any) -> _Where:
    return or_(*(_compare(column, op, value, case_exact=False) for column in columns))


def user_filter(text: str) -> _Where:
    """The WHERE clause of a Users filter; raises ScimError (`invalidFilter`) when it cannot be served."""
    return _ToSql(USER_COLUMNS).visit(_parse(text, UserResource))


def group_filter(text: str) -> _Where:
    """The WHERE clause of a Groups filter; raises ScimError (`invalidFilter`) when it cannot be served."""
    from scim2_models import Group

    return _ToSql(GROUP_COLUMNS).visit(_parse(text, Group))


def _parse(text: str, model: Any) -> FilterNode:
    try:
        return ScimFilter[model](text).ast
    except InvalidFilterException as error:
        raise from_library(error) from error
    except ValueError as error:
        raise ScimError(400, f"invalid filter: {error}", "invalidFilter") from error
