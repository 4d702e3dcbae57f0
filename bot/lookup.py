"""Employees named by an admin: each word is an employee number, an email address or a username.

The one rule for turning what an admin typed (`1001`, `Ada@Example.com`, `ghopper`) into employees, used
by every CLI command that takes employees and by `/email-credentials 1001 ada@example.com`. Matching
ignores case. A word that names two different employees (one's number is another's username) is
ambiguous rather than guessed, except that an address names its one active holder: the import gives an
address to one active employee only, and a leaver's address may since have gone to someone else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from bot.accounts import shown_status
from bot.chunks import chunks
from bot.words import unique_words
from models import Account, Employee


@dataclass(frozen=True)
class NamedEmployee:
    """An employee a word named, with what a preview shows of them."""

    employee_id: int
    employee_number: str
    name: str
    email: str | None
    username: str | None
    """None: no account."""
    status: str | None
    """The account's status as shown to an admin (None: no account)."""


@dataclass
class Resolved:
    """What `resolve_employees` found, in the order the words came (each employee once)."""

    employees: list[NamedEmployee] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    """Words that name nobody."""
    ambiguous: dict[str, list[str]] = field(default_factory=dict)
    """Word -> the employee numbers it could mean."""

    @property
    def ids(self) -> list[int]:
        return [employee.employee_id for employee in self.employees]

    @property
    def numbers(self) -> list[str]:
        return [employee.employee_number for employee in self.employees]

    @property
    def not_found(self) -> list[str]:
        """The words that did not name exactly one employee."""
        return [*self.unknown, *self.ambiguous]

    def problem(self) -> str | None:
        """Why the words cannot be used as given, in words for the admin (None: every word named one)."""
        parts = []
        if self.unknown:
            parts.append("no employee has the number, email address or username " + ", ".join(self.unknown))
        for word, numbers in self.ambiguous.items():
            parts.append(f"{word} could be employee {' or '.join(numbers)} (give the employee number)")
        return "; ".join(parts) or None


def resolve_employees(session: Session, words: Sequence[str]) -> Resolved:
    """The employees that `words` name: by employee number, email address or username (any case)."""
    wanted = unique_words(words)
    lowered = list(dict.fromkeys(word.lower() for word in wanted))
    matches: dict[str, dict[int, NamedEmployee]] = {}
    former: dict[str, set[int]] = {}
    """Address -> the inactive employees it names only as their address."""
    for chunk in chunks(lowered):
        query = (
            select(Employee, Account)
            .outerjoin(Account, Account.employee_id == Employee.id)
            .where(
                or_(
                    func.lower(Employee.employee_number).in_(chunk),
                    func.lower(Employee.email).in_(chunk),
                    func.lower(Account.username).in_(chunk),
                )
            )
        )
        for employee, joined in session.execute(query):
            account = cast("Account | None", joined)  # None when the outer join found no account
            username = account.username if account is not None else None
            named = NamedEmployee(
                employee.id,
                employee.employee_number,
                employee.full_name,
                employee.email,
                username,
                shown_status(account) if account is not None else None,
            )
            keys = {employee.employee_number, employee.email, username}
            for key in keys:
                if key:
                    matches.setdefault(key.lower(), {})[employee.id] = named
            if (
                employee.email
                and not employee.active
                and employee.email not in (employee.employee_number, username)
            ):
                former.setdefault(employee.email.lower(), set()).add(employee.id)
    result = Resolved()
    seen: set[int] = set()
    for word in wanted:
        found = matches.get(word.lower(), {})
        current = {key: named for key, named in found.items() if key not in former.get(word.lower(), ())}
        found = current if len(current) == 1 else found
        if not found:
            result.unknown.append(word)
        elif len(found) > 1:
            result.ambiguous[word] = sorted(named.employee_number for named in found.values())
        else:
            (named,) = found.values()
            if named.employee_id not in seen:
                seen.add(named.employee_id)
                result.employees.append(named)
    return result
