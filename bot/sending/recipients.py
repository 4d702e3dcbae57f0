"""Who can be mailed: the confirmation list (CLI and Slack) with each employee's exact address or problem."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError
from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.orm import Session, selectinload

from bot.chunks import chunks
from bot.directory import name_order
from bot.email_addresses import normalised_address
from bot.mail import suppressions
from bot.mail.suppressions import BOUNCE_LIST_DROP
from bot.sending.addresses import AddressKind, AddressRule, choose_address
from bot.settings import Settings
from models import Account, AccountStatus, Employee

NO_ACCOUNT = "no account"
NO_ADDRESS = "no address"
INVALID_ADDRESS = "invalid address"
ACCOUNT_DISABLED = "account disabled"
EMPLOYEE_INACTIVE = "employee inactive"


@dataclass(frozen=True)
class Recipient:
    """One line of the confirmation list (CLI and Slack)."""

    employee_id: int
    employee_number: str
    name: str
    username: str | None
    """None: no account."""
    address: str | None
    """The exact normalised address both emails go to."""
    problem: str | None
    """Why they cannot be mailed; None when mailable."""
    last_emailed_at: datetime | None
    address_warning: str | None = None
    """E.g. `bounced on 25 Nov 2026: the mailbox does not exist`: SendGrid's events flagged this address."""
    suppression: str | None = None
    """E.g. `on SendGrid's bounce list since 25 Nov 2026` (see `with_suppressions`)."""
    on_bounce_list: bool = False
    """SendGrid's bounce list holds the address (its API says so, or it bounced or was dropped as bounced):
    confirmed anyway, the emails bypass the list."""
    address_kind: AddressKind | None = None
    address_reason: str | None = None
    """Which address and why (`personal, starts Mon 7 Dec`): CREDENTIAL_ADDRESS, `bot.sending.addresses`."""
    switchable: bool = False
    """The employee has both a work and a personal address: the admin may switch between them."""
    own_addresses: tuple[str, ...] = ()
    """Every address of the employee's, normalised: a confirmed one must still be among them to be used."""


def normalise_address(raw: str | None) -> tuple[str | None, str | None]:
    """(normalised address, None) or (None, problem), checked with email-validator without DNS."""
    if not raw or not raw.strip():
        return None, NO_ADDRESS
    try:
        return normalised_address(raw.strip()), None
    except EmailNotValidError as error:
        return None, f"{INVALID_ADDRESS}: {error}"


def mail_check(
    active: bool, account_status: str | None, raw_address: str | None
) -> tuple[str | None, str | None]:
    """(normalised address, why the employee cannot be mailed or None); `account_status` None: no account."""
    address, address_problem = normalise_address(raw_address)
    if not active:
        return address, EMPLOYEE_INACTIVE
    if account_status is None:
        return address, NO_ACCOUNT
    if account_status == AccountStatus.DISABLED:
        return address, ACCOUNT_DISABLED
    return address, address_problem


def send_time_check(
    active: bool, account_status: str | None, work: str | None, personal: str | None, confirmed: str | None
) -> tuple[str | None, str | None]:
    """`mail_check` at send time: the address is the confirmed one while it is still the employee's
    personal address, else their work address (a different one than confirmed: the address changed)."""
    keeps_personal = confirmed is not None and bool(personal) and normalise_address(personal)[0] == confirmed
    return mail_check(active, account_status, personal if keeps_personal else work)


def recipient_of(employee: Employee, rule: AddressRule) -> Recipient:
    account = employee.account
    choice = choose_address(
        rule, employee.id, employee.email, employee.personal_email, employee.start_date, employee.time_zone
    )
    address, problem = mail_check(employee.active, account.status if account else None, choice.raw)
    if problem == NO_ADDRESS and choice.problem:
        problem = choice.problem
    own = (normalise_address(raw)[0] for raw in (employee.email, employee.personal_email) if raw)
    return Recipient(
        employee_id=employee.id,
        employee_number=employee.employee_number,
        name=employee.full_name,
        username=account.username if account else None,
        address=address,
        problem=problem,
        last_emailed_at=account.credentials_emailed_at if account else None,
        address_warning=_address_warning(employee, address),
        on_bounce_list=_bounced_before(employee, address),
        address_kind=choice.kind,
        address_reason=choice.reason,
        switchable=choice.switchable,
        own_addresses=tuple(a for a in own if a),
    )


def _bounced_before(employee: Employee, address: str | None) -> bool:
    """SendGrid's events said this address bounced (or was dropped because it had): it is on the list."""
    if not address or employee.bad_address != address:
        return False
    return employee.bad_address_event == "bounced" or employee.bad_address_reason == BOUNCE_LIST_DROP


def with_suppressions(
    settings: Settings, recipients: Sequence[Recipient]
) -> tuple[list[Recipient], str | None]:
    """The recipients with what SendGrid's suppression lists say of their addresses, and a note about the
    check itself (not allowed for the API key, not complete) for the confirmation to show."""
    found = suppressions.check(settings, [r.address for r in recipients if r.problem is None and r.address])
    checked = []
    for recipient in recipients:
        listing = found.listed.get(recipient.address.lower()) if recipient.address else None
        if listing is not None:
            recipient = replace(
                recipient,
                suppression=listing.describe(),
                on_bounce_list=recipient.on_bounce_list or listing.list_name == "bounces",
            )
        checked.append(recipient)
    return checked, found.note


def _address_warning(employee: Employee, address: str | None) -> str | None:
    """The bounced/dropped flag on the employee, while it is about the address they would be mailed at."""
    if not address or employee.bad_address != address or employee.bad_address_at is None:
        return None
    reason = employee.bad_address_reason or "no reason given"
    return f"{employee.bad_address_event} on {employee.bad_address_at:%-d %b %Y}: {reason}"


def preview(session: Session, employee_ids: Sequence[int], rule: AddressRule) -> list[Recipient]:
    """Who would be mailed, and at which address under `rule`, in the given order (unknown ids are left
    out)."""
    return [recipient for recipient, _ in recipients_with_accounts(session, employee_ids, rule)]


def recipients_with_accounts(
    session: Session, employee_ids: Sequence[int], rule: AddressRule
) -> list[tuple[Recipient, int | None]]:
    """(recipient, account id) per known employee, in the given order, without duplicates."""
    ordered = list(dict.fromkeys(employee_ids))
    found: dict[int, tuple[Recipient, int | None]] = {}
    for chunk in chunks(ordered):
        query = select(Employee).where(Employee.id.in_(chunk)).options(selectinload(Employee.account))
        for employee in session.scalars(query):
            account_id = employee.account.id if employee.account else None
            found[employee.id] = (recipient_of(employee, rule), account_id)
    return [found[i] for i in ordered if i in found]


def never_emailed() -> ColumnElement[bool]:
    """The one definition of "never emailed", over employees joined to their account: an active
    employee whose account is not disabled and never had credentials emailed. The picker, the
    `--all-pending` send, App Home's stage and the report all use it."""
    return and_(
        Employee.active.is_(True),
        Account.id.is_not(None),
        Account.status != AccountStatus.DISABLED,
        Account.credentials_emailed_at.is_(None),
    )


def _never_emailed(query: Select[Any]) -> Select[Any]:
    """`query` over employees, narrowed to `never_emailed()`."""
    return query.join(Account, Account.employee_id == Employee.id).where(never_emailed())


def never_emailed_employee_ids(session: Session) -> list[int]:
    """Active employees whose (not disabled) account never had credentials emailed, by name."""
    query = _never_emailed(select(Employee.id)).order_by(*name_order(session))
    return list(session.scalars(query))


def count_never_emailed(session: Session) -> int:
    """len(never_emailed_employee_ids(session)) as one COUNT, without loading and sorting every id
    (most of a second at 100,000 employees), for the picker that must open within Slack's 3 seconds."""
    return session.scalar(_never_emailed(select(func.count()).select_from(Employee))) or 0
