"""Employee type-ahead for pickers: every word typed must occur in name, email, number or username."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Row, Select, and_, select
from sqlalchemy.orm import Session

from models import Account, Employee, fold_accents, full_name

_ChoiceColumns = tuple[int, str, str, str, bool, str | None]
"""id, employee number, first and last name, active, username (None: no account)."""
MAX_RESULTS = 100
"""Slack shows at most 100 options; more would be refused."""
MAX_TERMS = 5
MAX_TERM_LENGTH = 64


@dataclass(frozen=True)
class EmployeeChoice:
    """One search hit, ready to be shown as an option."""

    employee_id: int
    employee_number: str
    name: str
    username: str | None
    active: bool

    @property
    def label(self) -> str:
        """`Name (number, username)`; the caller shortens it to the display limit."""
        details = ", ".join(part for part in (self.employee_number, self.username) if part)
        inactive = " [inactive]" if not self.active else ""
        return f"{self.name} ({details}){inactive}"


def fold(text: str) -> str:
    """Lower-case and strip accents, as `Employee.search_text` is stored."""
    return fold_accents(text).lower()


def query_terms(raw: str) -> list[str]:
    """The words of a typed query, folded, de-duplicated and bounded in number and length."""
    terms = dict.fromkeys(term[:MAX_TERM_LENGTH] for term in fold(raw).split())
    return list(terms)[:MAX_TERMS]


def matching(terms: Iterable[str]) -> ColumnElement[bool]:
    """The matching rule of every employee search: each (folded) term occurs in the search text."""
    return and_(*(Employee.search_text.contains(term, autoescape=True) for term in terms))


def search_employees(session: Session, raw_query: str, limit: int = MAX_RESULTS) -> list[EmployeeChoice]:
    """Up to `limit` employees matching every term of `raw_query`, best first.

    A substring scan of one text column in primary-key order that stops at `limit` hits: at 100,000
    employees a query matching nobody (the slowest case: a full scan) takes about 20-30 ms on SQLite and
    PostgreSQL (bench/bench_slack.py measures it). Sorting all hits by name would need every hit read and
    sorted first (over 60 ms for a one-letter query), so only the page is ranked: an exact employee
    number first, then hits at the start of a word, then by name. Typing more narrows the page.
    """
    terms = query_terms(raw_query)
    if not terms:
        return []
    limit = max(1, min(limit, MAX_RESULTS))
    query = _choice_query().where(matching(terms)).order_by(Employee.id).limit(limit)
    choices = [_choice(row) for row in session.execute(query)]
    return sorted(choices, key=lambda choice: _rank(choice, terms))


def _choice_query() -> Select[*_ChoiceColumns]:
    return select(
        Employee.id,
        Employee.employee_number,
        Employee.first_name,
        Employee.last_name,
        Employee.active,
        Account.username,
    ).outerjoin(Account, Account.employee_id == Employee.id)


def _choice(row: Row[*_ChoiceColumns]) -> EmployeeChoice:
    return EmployeeChoice(
        employee_id=row.id,
        employee_number=row.employee_number,
        name=full_name(row.first_name, row.last_name),
        username=row.username,
        active=row.active,
    )


def _rank(choice: EmployeeChoice, terms: list[str]) -> tuple[int, str, int]:
    words = fold(f"{choice.name} {choice.username or ''}").split()
    if choice.employee_number.casefold() in terms:
        tier = 0
    elif all(any(word.startswith(term) for word in words) for term in terms):
        tier = 1
    else:
        tier = 2
    return tier, fold(choice.name), choice.employee_id


def choices_for(session: Session, employee_ids: list[int]) -> list[EmployeeChoice]:
    """The employees with these ids, as options, in the given order (unknown ids left out)."""
    query = _choice_query().where(Employee.id.in_(employee_ids))
    found = {row.id: _choice(row) for row in session.execute(query)}
    return [found[employee_id] for employee_id in employee_ids if employee_id in found]
