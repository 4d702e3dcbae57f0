"""The employee directory, imported from the HR system."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Date, Index, String, Text, func
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utcnow

if TYPE_CHECKING:
    from models.accounts import Account


def full_name(first_name: str, last_name: str) -> str:
    """How credbot shows and addresses a person: "First Last", without stray spaces when one is empty."""
    return f"{first_name} {last_name}".strip()


# Latin letters that NFKD does not split into a base letter plus an accent.
_EXTRA_FOLDS = str.maketrans(
    {
        "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
        "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH",
        "ı": "i", "ħ": "h", "Ħ": "H",  # noqa: RUF001
    }
)  # fmt: skip


def fold_accents(text: str) -> str:
    """`text` without accents: "Zoë Ñúñez" -> "Zoe Nunez", "Øst" -> "Ost" (other scripts kept)."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_EXTRA_FOLDS))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def name_sort_key(first_name: str, last_name: str) -> str:
    """Where a person goes in a list by name, as a reader expects it rather than by code point: last name,
    then first name, accents and case folded ("Ñúñez" among the N's, "Ó Briain" and "Østergaard" among
    the O's, "İbrahimoğlu" among the I's). A tab (which names never hold) separates the two, so that
    "Smith, Jane" comes before "Smith-Jones, Ann"; plain binary comparison of keys then sorts."""
    return f"{fold_accents(last_name).casefold()}\t{fold_accents(first_name).casefold()}"


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


def _sort_name_default(context: DefaultExecutionContext) -> str:
    values = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return name_sort_key(values["first_name"], values["last_name"])


class Employee(Base):
    """One person in the HR directory."""

    __tablename__ = "employees"
    __table_args__ = (
        # Lists by name (App Home, "show all") read the first few in order instead of sorting everyone.
        # On PostgreSQL with ICU, migration 0007 adds ix_employees_by_name_icu for the collated order.
        Index("ix_employees_by_sort_name", "sort_name", "employee_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_number: Mapped[str] = mapped_column(String(64), unique=True)
    first_name: Mapped[str] = mapped_column(String(200))
    last_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    department: Mapped[str | None] = mapped_column(String(200))
    manager: Mapped[str | None] = mapped_column(String(200))
    """The manager's employee number (an employee in the directory when imported); the portal's home page
    shows their name."""
    slack_user_id: Mapped[str | None] = mapped_column(String(32), index=True)
    directory_roles: Mapped[str] = mapped_column(String(1000), default="")
    """Roles from the HR export, `;`-separated; given to the account on creation."""
    active: Mapped[bool] = mapped_column(default=True)
    """The employment status: False for a leaver (their account is disabled at import)."""
    start_date: Mapped[date | None] = mapped_column(Date)
    time_zone: Mapped[str | None] = mapped_column(String(64))
    """An IANA name (`Europe/London`); None: DEFAULT_TIME_ZONE."""
    personal_email: Mapped[str | None] = mapped_column(String(320))
    """A private address, for before the start date (validated and normalised like `email`)."""
    external_id: Mapped[str | None] = mapped_column(String(255), index=True)
    """The identity provider's id for them (SCIM `externalId`); None for employees only imported from CSV."""
    pending_username: Mapped[str | None] = mapped_column(String(100), unique=True)
    """The username SCIM gave an employee who has no account yet (SCIM_CREATE_ACCOUNTS=false): their account
    gets it when created. Once they have one, the account's username is the only one."""
    sort_name: Mapped[str] = mapped_column(Text, default=_sort_name_default)
    """`name_sort_key` of the names: lists by name order by it where no ICU collation is at hand."""
    search_text: Mapped[str] = mapped_column(Text, default="")
    """Lower-case, accent-folded name, email, number and username, for type-ahead search.
    On PostgreSQL the 0001 migration adds a pg_trgm GIN index on it when the extension is available."""
    bad_address: Mapped[str | None] = mapped_column(String(320))
    """An address of theirs that bounced or was dropped (the flag holds while `email` is this address)."""
    bad_address_event: Mapped[str | None] = mapped_column(String(16))
    """`bounced` or `dropped`."""
    bad_address_reason: Mapped[str | None] = mapped_column(Text)
    bad_address_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account: Mapped[Account | None] = relationship(back_populates="employee", uselist=False)
    manager_employee: Mapped[Employee | None] = relationship(
        primaryjoin="foreign(Employee.manager) == remote(Employee.employee_number)", viewonly=True
    )

    @property
    def full_name(self) -> str:
        return full_name(self.first_name, self.last_name)

    def __repr__(self) -> str:
        return f"<Employee {self.employee_number}>"


# Addresses are unique among active employees ignoring case (`bot.directory.address_holder`): looked up by
# lower(), as SCIM provisions one employee at a time.
Index("ix_employees_lower_email", func.lower(Employee.email))
Index("ix_employees_lower_personal_email", func.lower(Employee.personal_email))
