"""`resolve_employees`: the one rule for employees named by number, email address or username."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.lookup import resolve_employees
from bot.settings import split_names
from bot.words import unique_words
from tests.builders import add_employee


def test_by_number_address_or_username_in_any_case(session: Session) -> None:
    ada = add_employee(session, "E-1", email="ada@example.com", username="alovelace")
    alan = add_employee(session, "E-2", "Alan", "Turing", email="alan@example.com", username=None)
    grace = add_employee(session, "E-3", "Grace", "Hopper", email=None, username="ghopper")
    resolved = resolve_employees(
        session, ["e-2", "ADA@example.com", "nobody", "E-1", "x@y.z", "GHopper", "alovelace"]
    )
    assert resolved.ids == [alan.id, ada.id, grace.id]  # each employee once, in the order first named
    assert resolved.unknown == ["nobody", "x@y.z"] and resolved.ambiguous == {}
    [_, _, hopper] = resolved.employees
    assert (hopper.employee_number, hopper.name, hopper.username, hopper.status, hopper.email) == (
        "E-3",
        "Grace Hopper",
        "ghopper",
        "pending",
        None,
    )
    assert resolved.employees[0].username is None and resolved.employees[0].status is None
    assert resolved.problem() == "no employee has the number, email address or username nobody, x@y.z"


def test_a_word_naming_two_employees_is_ambiguous(session: Session) -> None:
    add_employee(session, "1001", username="jsmith")
    add_employee(session, "2002", username="1001")  # a username that is someone else's number
    resolved = resolve_employees(session, ["1001", "jsmith"])
    assert resolved.ambiguous == {"1001": ["1001", "2002"]}
    assert resolved.numbers == ["1001"] and resolved.not_found == ["1001"]
    assert resolved.problem() == "1001 could be employee 1001 or 2002 (give the employee number)"


def test_an_address_names_its_active_holder_before_a_leaver_who_had_it(session: Session) -> None:
    add_employee(session, "1001", email="grace@example.com", username="ghopper", active=False)
    grace = add_employee(
        session, "1050", "Grace", "Brewster", email="Grace@example.com", username="gbrewster"
    )
    resolved = resolve_employees(session, ["GRACE@example.com"])
    assert resolved.ids == [grace.id] and resolved.ambiguous == {}
    # Two active holders (from before the import refused them), or the leaver named by number: as typed.
    add_employee(session, "1060", email="grace@example.com", username="gmurray")
    assert resolve_employees(session, ["grace@example.com"]).ambiguous == {
        "grace@example.com": ["1001", "1050", "1060"]
    }
    assert resolve_employees(session, ["1001"]).numbers == ["1001"]


def test_typed_lists_are_read_one_way() -> None:
    assert unique_words([" 1001", "", "ada@example.com ", "1001", "  ", "Ada@example.com"]) == [
        "1001",
        "ada@example.com",
        "Ada@example.com",  # case is the caller's to fold: an address matches in any case, a role does not
    ]
    assert split_names("Employee; Developer,  ,employee, Developer") == ["Employee", "Developer", "employee"]
