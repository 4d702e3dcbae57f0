"""Usernames from the pattern, and creating accounts in bulk."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.accounts import (
    CreateAccountsResult,
    UsernameAllocator,
    UsernamePatternError,
    create_accounts,
    list_accounts,
    make_username,
)
from bot.settings import Settings
from models import Account, AccountStatus, Employee, Role
from tests.builders import add_employee, audit_events, employee_ids, insert_employees


@pytest.mark.parametrize(
    ("first", "last", "number", "pattern", "expected"),
    [
        ("Zoë", "Ñúñez-O'Brien", "1", "{first_initial}{last_name}", "znunez-obrien"),
        ("John", "Smith", "1", "{first_initial}{last_name}", "jsmith"),
        ("Mary Ann", "van der Berg", "1", "{first_name}.{last_name}", "maryann.vanderberg"),
        ("Søren", "Østergaard", "1", "{first_name}_{last_initial}", "soren_o"),
        ("Łukasz", "Straße", "E-77", "{last_name}{employee_number}", "strassee-77"),
        ("Ann", "Lee", "123", "{first_initial}{last_initial}{employee_number}", "al123"),
        ("李", "小龍", "4711", "{first_initial}{last_name}", "u4711"),
        ("李", "小龍", "E4711", "{first_initial}{last_name}", "e4711"),
        ("Ann", "Lee", "1", "Emp-{first_name}!", "emp-ann"),
        (".", "-", "", "{first_name}{last_name}", "user"),
    ],
)
def test_make_username(first: str, last: str, number: str, pattern: str, expected: str) -> None:
    assert make_username(first, last, number, pattern) == expected


def test_make_username_is_bounded() -> None:
    assert len(make_username("A", "b" * 300, "1", "{first_initial}{last_name}")) == 92


@pytest.mark.parametrize("pattern", ["{first}{last_name}", "{0}", "static", "{first_name", "{last_name!r}x}"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(UsernamePatternError, match="USERNAME_PATTERN"):
        make_username("Ann", "Lee", "1", pattern)


def test_username_allocator_adds_a_number() -> None:
    taken = {"jsmith", "jsmith2", "jsmith4", "ann"}
    allocator = UsernameAllocator(taken)
    assert [allocator.allocate("jsmith") for _ in range(3)] == ["jsmith3", "jsmith5", "jsmith6"]
    assert allocator.allocate("ann") == "ann2"
    assert allocator.allocate("bo") == "bo"
    assert {"jsmith3", "jsmith5", "jsmith6", "ann2", "bo"} <= taken


def create(
    session: Session, settings: Settings, *numbers: str, all_missing: bool = False
) -> CreateAccountsResult:
    """`create_accounts` for the employees with these numbers (or every one without an account)."""
    wanted = None if all_missing else employee_ids(session, *numbers)
    result = create_accounts(session, settings, "tester", wanted, all_missing)
    session.commit()
    return result


def usernames(session: Session) -> dict[str, str]:
    query = select(Employee.employee_number, Account.username).join(Account.employee)
    return dict(session.execute(query).all())


def test_collisions_accents_and_idempotency(session: Session, settings: Settings) -> None:
    add_employee(session, "1", "John", "Smith", username=None)
    add_employee(session, "2", "Jane", "Smith", username=None)
    add_employee(session, "3", "Zoë", "Ñúñez-O'Brien", username=None)
    add_employee(session, "4", "Jim", "Smith", username=None)
    first = create(session, settings, all_missing=True)
    assert [(a.employee_number, a.username) for a in first.created] == [
        ("1", "jsmith"),
        ("2", "jsmith2"),
        ("3", "znunez-obrien"),
        ("4", "jsmith3"),
    ]
    again = create(session, settings, all_missing=True)
    assert again.created == [] and again.existing == []
    named = create(session, settings, "2", "1", "2")
    assert named.created == [] and named.existing == [("2", "jsmith2"), ("1", "jsmith")]
    assert usernames(session) == {"1": "jsmith", "2": "jsmith2", "3": "znunez-obrien", "4": "jsmith3"}
    account = session.scalars(select(Account).where(Account.username == "jsmith")).one()
    assert account.status == AccountStatus.PENDING and account.password_hash is None


def test_new_usernames_avoid_existing_ones(session: Session, settings: Settings) -> None:
    add_employee(session, "1", "John", "Smith", username=None)
    create(session, settings, "1")
    add_employee(session, "2", "Jack", "Smith", username=None)
    add_employee(session, "3", "Jo", "Smith", username=None)
    result = create(session, settings, "3", "2")
    assert [(a.employee_number, a.username) for a in result.created] == [("3", "jsmith2"), ("2", "jsmith3")]


def test_roles_default_plus_directory_roles(session: Session, settings: Settings) -> None:
    settings = settings.model_copy(update={"default_roles": "Employee, Portal User"})
    session.add(Role(name="developer"))
    session.commit()
    add_employee(session, "1", "Ann", "Lee", username=None, directory_roles="Developer;Sales, EMEA;employee")
    add_employee(session, "2", "Bo", "Ek", username=None)
    result = create(session, settings, "1", "2")
    assert [a.roles for a in result.created] == [
        ["Employee", "Portal User", "developer", "Sales, EMEA"],
        ["Employee", "Portal User"],
    ]
    accounts = {a.username: [r.name for r in a.roles] for a in list_accounts(session)}
    assert accounts == {
        "alee": ["Employee", "Portal User", "Sales, EMEA", "developer"],
        "bek": ["Employee", "Portal User"],
    }
    assert sorted(session.scalars(select(Role.name))) == [
        "Employee",
        "Portal User",
        "Sales, EMEA",
        "developer",
    ]


def test_pattern_setting_is_used(session: Session, settings: Settings) -> None:
    settings = settings.model_copy(update={"username_pattern": "{first_name}.{last_name}{employee_number}"})
    add_employee(session, "77", "Chloé", "Dubois", username=None)
    assert [a.username for a in create(session, settings, "77").created] == ["chloe.dubois77"]


def test_bad_pattern_setting_creates_nothing(session: Session, settings: Settings) -> None:
    settings = settings.model_copy(update={"username_pattern": "{nickname}"})
    add_employee(session, "1", "Ann", "Lee", username=None)
    with pytest.raises(UsernamePatternError):
        create(session, settings, "1")
    session.rollback()
    assert usernames(session) == {}


def test_unknown_and_inactive_employees_are_reported(session: Session, settings: Settings) -> None:
    add_employee(session, "1", "Ann", "Lee", username=None)
    add_employee(session, "2", "Bo", "Ek", username=None)
    session.scalars(select(Employee).where(Employee.employee_number == "2")).one().active = False
    session.commit()
    unknown_id = 1 + max(session.scalars(select(Employee.id)))
    result = create_accounts(session, settings, "tester", [unknown_id, *employee_ids(session, "1", "2")])
    session.commit()
    assert [a.username for a in result.created] == ["alee"]
    assert result.unknown == [unknown_id]
    assert result.skipped == [("2", "employee is inactive")]
    assert create(session, settings, all_missing=True).skipped == [("2", "employee is inactive")]
    assert usernames(session) == {"1": "alee"}


def test_audit_events_and_search_text(session: Session, settings: Settings) -> None:
    add_employee(session, "1", "Zoë", "Lee", username=None, directory_roles="Boss")
    create(session, settings, "1")
    [event] = audit_events(session)
    assert (event.actor, event.action, event.target) == ("tester", "account.created", "account:zlee")
    assert event.details == {"employee_number": "1", "roles": ["Employee", "Boss"]}
    session.expire_all()
    employee = session.scalars(select(Employee)).one()
    assert employee.search_text == "zoe lee e1@example.com 1 zlee"


def test_needs_exactly_one_selection(session: Session, settings: Settings) -> None:
    with pytest.raises(ValueError, match="either"):
        create_accounts(session, settings, "tester", [1], all_missing=True)
    with pytest.raises(ValueError, match="either"):
        create_accounts(session, settings, "tester")


def test_many_employees_in_one_run(session: Session, settings: Settings) -> None:
    insert_employees(session, 1200, name=lambda _: ("Sam", "Smith"), number=str, accounts=False)
    session.commit()
    result = create(session, settings, *(str(i) for i in range(1200)))
    assert len(result.created) == 1200
    names = usernames(session)
    assert len(set(names.values())) == 1200
    assert names["0"] == "ssmith" and names["1"] == "ssmith2" and names["1199"] == "ssmith1200"


def test_created_accounts_are_named_as_everywhere_else(session: Session, settings: Settings) -> None:
    """One full name rule (`models.full_name`): a one-word name carries no stray space."""
    add_employee(session, "1", "Cher", "", username=None)
    add_employee(session, "2", "Ann", "Lee", username=None)
    assert [a.name for a in create(session, settings, "1", "2").created] == ["Cher", "Ann Lee"]
    assert [e.full_name for e in session.scalars(select(Employee).order_by(Employee.employee_number))] == [
        "Cher",
        "Ann Lee",
    ]
