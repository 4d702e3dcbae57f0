"""Self-Service accounts: usernames from a pattern, creation in bulk, listing."""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVarTuple

from sqlalchemy import ColumnElement, Row, Select, and_, bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from bot.audit import AuditAction, account_target, department_target, record, wrote_events
from bot.chunks import chunks
from bot.settings import Settings
from models import (
    Account,
    AccountStatus,
    AuditEvent,
    Employee,
    Role,
    account_roles,
    fold_accents,
    full_name,
    make_search_text,
    utcnow,
)

PATTERN_FIELDS = ("first_name", "last_name", "first_initial", "last_initial", "employee_number")
MAX_USERNAME_LENGTH = 100
_NOT_ALLOWED = re.compile(r"[^a-z0-9._-]+")
_Ts = TypeVarTuple("_Ts")


class UsernamePatternError(ValueError):
    """USERNAME_PATTERN uses an unknown field or is malformed."""


def _clean(text: str) -> str:
    """Lower-case ASCII with only `a-z 0-9 . _ -` (accents folded, anything else dropped)."""
    return _NOT_ALLOWED.sub("", fold_accents(text).lower())


def make_username(first_name: str, last_name: str, employee_number: str, pattern: str) -> str:
    """The username `pattern` gives for this person (not yet made unique).

    Fields: {first_name} {last_name} {first_initial} {last_initial} {employee_number}.
    "Zoë", "Ñúñez-O'Brien" with "{first_initial}{last_name}" gives "znunez-obrien". When nothing
    usable is left (e.g. a name without Latin letters) it falls back to the employee number.
    """
    first, last = _clean(first_name), _clean(last_name)
    fields = {
        "first_name": first,
        "last_name": last,
        "first_initial": first[:1],
        "last_initial": last[:1],
        "employee_number": _clean(employee_number),
    }
    check_pattern(pattern)
    username = _clean(pattern.format(**fields)).strip("._-")
    if not re.search("[a-z0-9]", username):
        number = fields["employee_number"].strip("._-") or "user"
        username = number if number[0].isalpha() else f"u{number}"
    return username[: MAX_USERNAME_LENGTH - 8]


def check_pattern(pattern: str) -> None:
    """Raise UsernamePatternError unless `pattern` only uses the known fields."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as error:
        raise UsernamePatternError(f"USERNAME_PATTERN {pattern!r} is malformed: {error}") from error
    unknown = [name for name in names if name not in PATTERN_FIELDS]
    if unknown or not names:
        raise UsernamePatternError(
            f"USERNAME_PATTERN {pattern!r} must use only the fields "
            + " ".join(f"{{{name}}}" for name in PATTERN_FIELDS)
        )


class UsernameAllocator:
    """Hands out `base`, `base2`, `base3`... skipping names already taken."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = taken
        self._last: dict[str, int] = {}
        """The highest suffix tried per base, so thousands of "jsmith"s stay linear."""

    def allocate(self, base: str) -> str:
        number = self._last.get(base, 1)
        username = base if number == 1 else f"{base}{number}"
        while username in self.taken:
            number += 1
            username = f"{base}{number}"
        self._last[base] = number
        self.taken.add(username)
        return username


@dataclass(frozen=True)
class CreatedAccount:
    employee_number: str
    name: str
    username: str
    roles: list[str]


@dataclass
class CreateAccountsResult:
    """What `create_accounts` did."""

    created: list[CreatedAccount] = field(default_factory=list)
    existing: list[tuple[str, str]] = field(default_factory=list)
    """(employee number, username) of employees that already had an account."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(employee number, reason) of employees given no account (inactive)."""
    unknown: list[str] = field(default_factory=list)
    """Employee numbers not in the directory."""


def create_accounts(
    session: Session,
    settings: Settings,
    actor: str,
    employee_numbers: Sequence[str] | None = None,
    all_missing: bool = False,
) -> CreateAccountsResult:
    """Create a pending account for each given employee (or every active one without an account).

    Runs in the caller's transaction. The username is the one SCIM gave the employee (`pending_username`,
    checked with `check_username` then), else USERNAME_PATTERN's, made unique. Roles are DEFAULT_ROLES
    plus the employee's roles from the import (created on demand). Employees that already have an account
    are reported, not changed; inactive employees are skipped. Writes one ACCOUNT_CREATED audit event per
    account.
    """
    if all_missing == (employee_numbers is not None):
        raise ValueError("give either employee numbers or all_missing=True")
    check_pattern(settings.username_pattern)
    result = CreateAccountsResult()
    query = select(
        Employee.id,
        Employee.employee_number,
        Employee.first_name,
        Employee.last_name,
        Employee.email,
        Employee.directory_roles,
        Employee.active,
        Employee.pending_username,
        Account.username,
    ).outerjoin(Account, Account.employee_id == Employee.id)
    if all_missing:
        rows = list(session.execute(query.where(Account.id.is_(None)).order_by(Employee.id)))
    else:
        wanted = list(dict.fromkeys(number.strip() for number in employee_numbers or () if number.strip()))
        found = {row.employee_number: row for row in _in_chunks(session, query, wanted)}
        result.unknown = [number for number in wanted if number not in found]
        rows = [found[number] for number in wanted if number in found]

    todo = []
    for row in rows:
        if row.username is not None:
            result.existing.append((row.employee_number, row.username))
        elif not row.active:
            result.skipped.append((row.employee_number, "employee is inactive"))
        else:
            todo.append(row)
    if not todo:
        return result

    # Every username taken is read only when one is to be made from the pattern (not for SCIM's one by one).
    allocator: UsernameAllocator | None = None
    now = utcnow()
    default_roles = settings.default_role_names
    new_accounts = []
    for row in todo:
        directory_roles = [role for role in row.directory_roles.split(";") if role]
        roles = _unique_ignoring_case([*default_roles, *directory_roles])
        if row.pending_username is not None:
            username = row.pending_username
        else:
            if allocator is None:
                pending = select(Employee.pending_username).where(Employee.pending_username.is_not(None))
                allocator = UsernameAllocator(
                    set(session.scalars(select(Account.username)))
                    | {n for n in session.scalars(pending) if n}
                )
            base = make_username(
                row.first_name, row.last_name, row.employee_number, settings.username_pattern
            )
            username = allocator.allocate(base)
        new_accounts.append((row, username, roles))
        result.created.append(
            CreatedAccount(row.employee_number, full_name(row.first_name, row.last_name), username, roles)
        )

    role_ids = _role_ids(session, {role for _, _, roles in new_accounts for role in roles})
    for _, _, roles in new_accounts:  # the stored spelling, also in result.created
        roles[:] = [role_ids[role.casefold()][0] for role in roles]
    # Values common to every row are bound once, in the statement, not per row.
    session.execute(
        Account.__table__.insert().values(
            status=AccountStatus.PENDING,
            must_change_password=False,
            failed_login_count=0,
            created_at=now,
            updated_at=now,
        ),
        [{"employee_id": row.id, "username": username} for row, username, _ in new_accounts],
    )
    account_ids: dict[int, int] = {}
    for chunk in chunks([row.id for row, _, _ in new_accounts]):
        ids_of = select(Account.employee_id, Account.id).where(Account.employee_id.in_(chunk))
        account_ids.update((employee_id, account_id) for employee_id, account_id in session.execute(ids_of))
    links, events, search = [], [], []
    for row, username, roles in new_accounts:
        account_id = account_ids[row.id]
        links += [{"account_id": account_id, "role_id": role_ids[role.casefold()][1]} for role in roles]
        events.append(
            {"target": username, "details": {"employee_number": row.employee_number, "roles": roles}}
        )
        text = make_search_text(row.first_name, row.last_name, row.email, row.employee_number, username)
        search.append({"b_id": row.id, "search_text": text, "pending_username": None})
    session.execute(insert(account_roles), links)
    session.execute(
        AuditEvent.__table__.insert().values(
            actor=actor, action=str(AuditAction.ACCOUNT_CREATED), created_at=now
        ),
        events,
    )
    wrote_events(session)
    table = Employee.__table__
    session.execute(update(table).where(table.c.id == bindparam("b_id")), search)
    return result


def _in_chunks(session: Session, query: Select[*_Ts], numbers: list[str]) -> Iterator[Row[*_Ts]]:
    for chunk in chunks(numbers):
        yield from session.execute(query.where(Employee.employee_number.in_(chunk)))


def _unique_ignoring_case(names: list[str]) -> list[str]:
    first: dict[str, str] = {}
    for name in names:
        first.setdefault(name.casefold(), name)
    return list(first.values())


def _role_ids(session: Session, names: set[str]) -> dict[str, tuple[str, int]]:
    """(stored name, id) of the named roles by case-folded name, creating the missing ones."""

    def load() -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        for name, role_id in session.execute(select(Role.name, Role.id).order_by(Role.id)):
            found.setdefault(name.casefold(), (name, role_id))
        return found

    roles = load()
    missing = _unique_ignoring_case(sorted(name for name in names if name.casefold() not in roles))
    if missing:
        session.execute(insert(Role), [{"name": name} for name in missing])
        roles = load()
    return roles


# --- Locks: the one place that says whether an account is locked --------------------------------------


def is_locked(account: Account, now: datetime | None = None) -> bool:
    """True while the account waits after failed sign-ins (`locked_until` is in the future)."""
    now = now or utcnow()
    waiting = account.locked_until is not None and account.locked_until > now
    return waiting or account.status == AccountStatus.LOCKED


def shown_status(account: Account, now: datetime | None = None) -> str:
    """The status to show an administrator: "locked" while a (not disabled) account is locked."""
    if account.status != AccountStatus.DISABLED and is_locked(account, now):
        return AccountStatus.LOCKED
    return account.status


def status_column(now: datetime | None = None) -> ColumnElement[str]:
    """`shown_status` in SQL, to filter and count by."""
    waiting = and_(Account.status != AccountStatus.DISABLED, Account.locked_until > (now or utcnow()))
    return case((waiting, AccountStatus.LOCKED.value), else_=Account.status)


def list_accounts(session: Session, status: str | None = None, limit: int | None = None) -> list[Account]:
    """Accounts by username, with their employee and roles loaded; optionally of one shown status."""
    query = (
        select(Account)
        .options(selectinload(Account.employee), selectinload(Account.roles))
        .order_by(Account.username)
        .limit(limit)
    )
    return list(session.scalars(_of_status(query, status)))


def count_accounts(session: Session, status: str | None = None) -> int:
    """How many accounts `list_accounts` would list without a limit."""
    return session.scalar(_of_status(select(func.count()).select_from(Account), status)) or 0


def _of_status(query: Select[*_Ts], status: str | None) -> Select[*_Ts]:
    return query.where(status_column() == status) if status else query


@dataclass
class UnlockResult:
    """What `unlock_accounts` did, as (employee number, username) pairs."""

    unlocked: list[tuple[str, str]] = field(default_factory=list)
    not_locked: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    """Employee numbers without an account."""


def unlock_accounts(
    session: Session, actor: str, employee_numbers: Sequence[str], now: datetime | None = None
) -> UnlockResult:
    """End the lock of each given employee's account, in the caller's transaction (audited)."""
    now = now or utcnow()
    result = UnlockResult()
    wanted = list(dict.fromkeys(number.strip() for number in employee_numbers if number.strip()))
    query = select(Account, Employee.employee_number).join(Employee, Account.employee_id == Employee.id)
    found = {number: account for account, number in _in_chunks(session, query, wanted)}
    for number in wanted:
        account = found.get(number)
        if account is None:
            result.unknown.append(number)
        elif not is_locked(account, now):
            result.not_locked.append((number, account.username))
        else:
            account.locked_until = None
            account.failed_login_count = 0
            if account.status == AccountStatus.LOCKED:
                account.status = AccountStatus.ACTIVE
            record(session, actor, AuditAction.ACCOUNT_UNLOCKED, account_target(account.username))
            result.unlocked.append((number, account.username))
    return result


# --- changing accounts: lock state, status, username, roles -------------------------------------------

USERNAME_RULES = (
    "1 to 100 characters: lower-case letters a-z, digits, `.`, `_` and `-`, "
    "starting and ending with a letter or digit"
)
_USERNAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$")


class AccountChangeError(ValueError):
    """A change to accounts that cannot be made; the message says why, in words for the admin."""


@dataclass
class AccountsChanged:
    """What an unlock, disable or enable did."""

    changed: list[tuple[str, str]] = field(default_factory=list)
    """(employee number, username) of the accounts changed."""
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    """(employee number, why not) of the employees left as they were."""
    unknown: list[str] = field(default_factory=list)
    """Employee numbers not in the directory."""


def unlock_as_change(session: Session, actor: str, employee_numbers: Sequence[str]) -> AccountsChanged:
    """`unlock_accounts`, reported like `disable_accounts` and `enable_accounts` (for App Home)."""
    unlocked = unlock_accounts(session, actor, employee_numbers)
    return AccountsChanged(
        changed=unlocked.unlocked,
        unchanged=[(number, "not locked") for number, _ in unlocked.not_locked],
        unknown=unlocked.unknown,
    )


def resting_status(account: Account) -> AccountStatus:
    """The status an account has when nothing holds it (lock, disable): from its funnel step."""
    if account.password_changed_at is not None:
        return AccountStatus.ACTIVE
    if account.credentials_emailed_at is not None:
        return AccountStatus.INVITED
    return AccountStatus.PENDING


def employee_numbers_for(session: Session, employee_ids: Sequence[int]) -> list[str]:
    """Employee numbers of the given employee ids, in their order (unknown ids left out)."""
    ids = list(dict.fromkeys(employee_ids))
    found: dict[int, str] = {}
    for chunk in chunks(ids):
        query = select(Employee.id, Employee.employee_number).where(Employee.id.in_(chunk))
        found.update((employee_id, number) for employee_id, number in session.execute(query))
    return [found[i] for i in ids if i in found]


def _accounts_by_number(
    session: Session, employee_numbers: Sequence[str], result: AccountsChanged
) -> list[tuple[str, Account]]:
    """(employee number, account) for each number, in order; unknown numbers and employees without an
    account are noted in `result`."""
    wanted = list(dict.fromkeys(number.strip() for number in employee_numbers if number.strip()))
    found: dict[str, Account | None] = {}
    for chunk in chunks(wanted):
        query = (
            select(Employee.employee_number, Account)
            .outerjoin(Account, Account.employee_id == Employee.id)
            .where(Employee.employee_number.in_(chunk))
        )
        found.update((number, account) for number, account in session.execute(query))
    pairs = []
    for number in wanted:
        if number not in found:
            result.unknown.append(number)
        elif (account := found[number]) is None:
            result.unchanged.append((number, "no account"))
        else:
            pairs.append((number, account))
    return pairs


def disable_accounts(session: Session, actor: str, employee_numbers: Sequence[str]) -> AccountsChanged:
    """Disable each given account: it can no longer sign in, nor be emailed credentials; audited."""
    result = AccountsChanged()
    for number, account in _accounts_by_number(session, employee_numbers, result):
        if account.status == AccountStatus.DISABLED:
            result.unchanged.append((number, "already disabled"))
            continue
        previous = account.status
        account.status = AccountStatus.DISABLED
        account.session_version += 1  # its portal sessions end for good, not only while it is disabled
        record(
            session,
            actor,
            AuditAction.ACCOUNT_DISABLED,
            account_target(account.username),
            employee_number=number,
            previous_status=str(previous),
        )
        result.changed.append((number, account.username))
    return result


def enable_accounts(session: Session, actor: str, employee_numbers: Sequence[str]) -> AccountsChanged:
    """Enable each given disabled account again, back at its funnel step; audited."""
    result = AccountsChanged()
    for number, account in _accounts_by_number(session, employee_numbers, result):
        if account.status != AccountStatus.DISABLED:
            result.unchanged.append((number, "not disabled"))
            continue
        account.status = resting_status(account)
        record(
            session,
            actor,
            AuditAction.ACCOUNT_ENABLED,
            account_target(account.username),
            employee_number=number,
            status=str(account.status),
        )
        result.changed.append((number, account.username))
    return result


@dataclass(frozen=True)
class Renamed:
    """A renamed account, with what the notice email to the employee needs."""

    account_id: int
    employee_number: str
    old_username: str
    new_username: str
    email: str | None
    """The employee's address (None: they have none, so nobody can tell them by email)."""


def valid_username(username: str) -> bool:
    """Whether `username` keeps USERNAME_RULES (the one home of the rule: renames, SCIM's userName)."""
    return _USERNAME.match(username) is not None


def check_username(session: Session, username: str, account_id: int | None = None) -> str | None:
    """Why `username` cannot be given to the account `account_id` (None: it can)."""
    if not valid_username(username):
        return f"A username must be {USERNAME_RULES}."
    taken = session.scalar(
        select(Account.id).where(func.lower(Account.username) == username, Account.id != (account_id or 0))
    )
    return f"The username {username} is already taken." if taken is not None else None


def rename_account(session: Session, actor: str, employee_number: str, new_username: str) -> Renamed:
    """Give the employee's account a new username (audited); sign-in then accepts only the new one.

    Raises AccountChangeError when the employee has no account or the name breaks the rules or is taken.
    """
    new_username = new_username.strip().lower()
    row = session.execute(
        select(Employee, Account)
        .join(Account, Account.employee_id == Employee.id)
        .where(Employee.employee_number == employee_number.strip())
    ).first()
    if row is None:
        raise AccountChangeError(f"Employee {employee_number.strip()} has no account.")
    employee, account = row
    if account.username == new_username:
        raise AccountChangeError(f"The account's username is {new_username} already.")
    problem = check_username(session, new_username, account.id)
    if problem:
        raise AccountChangeError(problem)
    old = account.username
    account.username = new_username
    employee.search_text = make_search_text(
        employee.first_name, employee.last_name, employee.email, employee.employee_number, new_username
    )
    record(
        session,
        actor,
        AuditAction.ACCOUNT_RENAMED,
        account_target(new_username),
        employee_number=employee.employee_number,
        old_username=old,
        new_username=new_username,
    )
    try:
        session.flush()  # a concurrent rename to the same name fails here, on the unique constraint
    except IntegrityError as error:
        raise AccountChangeError(f"The username {new_username} is already taken.") from error
    return Renamed(account.id, employee.employee_number, old, new_username, employee.email)


class UnknownRoles(AccountChangeError):
    """Roles named in a roles edit that do not exist (and were not to be created)."""

    def __init__(self, to_add: list[str], to_remove: list[str], known: list[str]) -> None:
        self.to_add, self.to_remove = to_add, to_remove
        names = [*to_add, *to_remove]
        hints = [
            f"{name} (did you mean {close[0]}?)"
            if (close := difflib.get_close_matches(name, known, 1))
            else name
            for name in names
        ]
        listed = f" The roles are: {', '.join(sorted(known, key=str.casefold))}." if known else ""
        super().__init__(f"No such role: {', '.join(hints)}.{listed}")


@dataclass(frozen=True)
class RoleTarget:
    """An employee a roles edit reaches."""

    employee_number: str
    name: str
    account_id: int | None
    username: str | None
    """None (with account_id): the employee has no account."""


def role_targets(
    session: Session, employee_numbers: Sequence[str] = (), department: str | None = None
) -> tuple[list[RoleTarget], list[str]]:
    """Who a roles edit reaches: the given employees in order, or every active employee of `department`
    (any case) by number; and the employee numbers that are not in the directory."""
    department = (department or "").strip()
    if bool(employee_numbers) == bool(department):
        raise AccountChangeError("Pick employees, or give a department (not both).")
    query = select(
        Employee.employee_number, Employee.first_name, Employee.last_name, Account.id, Account.username
    ).outerjoin(Account, Account.employee_id == Employee.id)
    if department:
        rows = list(
            session.execute(
                query.where(
                    func.lower(Employee.department) == department.casefold(), Employee.active.is_(True)
                ).order_by(Employee.employee_number)
            )
        )
        if not rows:
            raise AccountChangeError(f"Nobody active is in the department {department}.")
        unknown: list[str] = []
    else:
        numbers = list(dict.fromkeys(number.strip() for number in employee_numbers if number.strip()))
        found = {row.employee_number: row for row in _in_chunks(session, query, numbers)}
        unknown = [number for number in numbers if number not in found]
        rows = [found[number] for number in numbers if number in found]
    targets = [
        RoleTarget(number, full_name(first, last), account_id, username)
        for number, first, last, account_id, username in rows
    ]
    return targets, unknown


@dataclass
class RolesEdited:
    """What `edit_roles` did."""

    group: int
    """The audit event that groups the per-employee events."""
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """The roles given and taken away, as stored."""
    changed: int = 0
    unchanged: int = 0
    without_account: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def unchanged_text(self) -> str:
        """Why the unchanged accounts were left alone: "2 already had Approver and did not have Legacy"."""
        reasons = []
        if self.added:
            reasons.append(f"already had {' and '.join(self.added)}")
        if self.removed:
            reasons.append(f"did not have {' or '.join(self.removed)}")
        return f"{self.unchanged:,} {' and '.join(reasons)}"


def edit_roles(
    session: Session,
    actor: str,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    employee_numbers: Sequence[str] = (),
    department: str | None = None,
    *,
    create_roles: bool = False,
    confirmed: Collection[str] | None = None,
) -> RolesEdited:
    """Add and remove roles on many accounts at once: the given employees, or a whole department.

    One ROLES_EDITED audit event for the action, and one ACCOUNT_ROLES_CHANGED per account that
    changed, pointing at it (`group`). Every role named must exist (UnknownRoles), except that roles to
    add are created when `create_roles`, so that a typo does not become a new role. `confirmed`: the
    employee numbers the admin was shown; if the department's people changed since, nothing is changed.
    """
    add = _unique_ignoring_case([name.strip() for name in add if name.strip()])
    remove = _unique_ignoring_case([name.strip() for name in remove if name.strip()])
    if not add and not remove:
        raise AccountChangeError("Give at least one role to add or to remove.")
    both = {name.casefold() for name in add} & {name.casefold() for name in remove}
    if both:
        raise AccountChangeError(f"A role cannot be both added and removed: {', '.join(sorted(both))}.")
    targets, unknown = role_targets(session, employee_numbers, department)
    if confirmed is not None and {t.employee_number for t in targets} != set(confirmed):
        raise AccountChangeError("Who this reaches changed since it was shown; nothing was changed.")
    known = {
        name.casefold(): (name, role_id) for name, role_id in session.execute(select(Role.name, Role.id))
    }
    missing_add = [] if create_roles else [name for name in add if name.casefold() not in known]
    missing_remove = [name for name in remove if name.casefold() not in known]
    if missing_add or missing_remove:
        raise UnknownRoles(missing_add, missing_remove, [name for name, _ in known.values()])
    department = (department or "").strip()

    role_ids = _role_ids(session, set(add)) if add else known
    add_ids = {role_ids[name.casefold()][1]: role_ids[name.casefold()][0] for name in add}
    remove_ids = {known[name.casefold()][1]: known[name.casefold()][0] for name in remove}
    group = record(
        session,
        actor,
        AuditAction.ROLES_EDITED,
        department_target(department) if department else None,
        add=list(add_ids.values()),
        remove=list(remove_ids.values()),
        employees=len(targets),
    )
    session.flush()
    result = RolesEdited(
        group=group.id, added=list(add_ids.values()), removed=list(remove_ids.values()), unknown=unknown
    )
    with_account: list[tuple[str, int, str]] = []
    for target in targets:
        if target.account_id is None or target.username is None:  # both come from the outer join
            result.without_account.append(target.employee_number)
        else:
            with_account.append((target.employee_number, target.account_id, target.username))
    now = utcnow()
    for chunk in chunks(with_account):
        current: dict[int, set[int]] = {}
        links = select(account_roles.c.account_id, account_roles.c.role_id).where(
            account_roles.c.account_id.in_([account_id for _, account_id, _ in chunk])
        )
        for account_id, role_id in session.execute(links):
            current.setdefault(account_id, set()).add(role_id)
        inserts, deletes, events = [], [], []
        for number, account_id, username in chunk:
            has = current.get(account_id, set())
            added = [role_id for role_id in add_ids if role_id not in has]
            removed = [role_id for role_id in remove_ids if role_id in has]
            if not added and not removed:
                result.unchanged += 1
                continue
            result.changed += 1
            inserts += [{"account_id": account_id, "role_id": role_id} for role_id in added]
            deletes += [(account_id, role_id) for role_id in removed]
            events.append(
                {
                    "target": account_target(username),
                    "details": {
                        "group": group.id,
                        "employee_number": number,
                        "added": [add_ids[role_id] for role_id in added],
                        "removed": [remove_ids[role_id] for role_id in removed],
                    },
                }
            )
        if inserts:
            session.execute(insert(account_roles), inserts)
        for role_id in remove_ids:
            accounts = [account_id for account_id, removed in deletes if removed == role_id]
            if accounts:
                session.execute(
                    account_roles.delete().where(
                        account_roles.c.role_id == role_id, account_roles.c.account_id.in_(accounts)
                    )
                )
        if events:
            session.execute(
                AuditEvent.__table__.insert().values(
                    actor=actor, action=str(AuditAction.ACCOUNT_ROLES_CHANGED), created_at=now
                ),
                events,
            )
            wrote_events(session)
    session.expire_all()
    return result
