"""Employee type-ahead: what matches, in which order, and its bounds."""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from bot.onboarding import Stage, stage_count, stage_employee_ids
from bot.reports import build_report
from bot.search import MAX_RESULTS, choices_for, query_terms, search_employees
from bot.sending.recipients import count_never_emailed, never_emailed_employee_ids
from models import Employee, utcnow
from tests.builders import add_employee, insert_employees, present


def names(session: Session, query: str) -> list[str]:
    return [choice.name for choice in search_employees(session, query)]


def test_matches_name_email_username_and_number(session: Session) -> None:
    add_employee(session, "E100", "Zoë", "Núñez", email="zoe.nunez@example.com", username="znunez")
    add_employee(session, "E200", "Alan", "Turing", email="alan@example.com", username="aturing")
    session.commit()
    for query in ("zoe", "ZOË", "nunez", "zoe.nunez@", "znunez", "e100", "Zoë Núñez", "nez zo"):
        assert names(session, query) == ["Zoë Núñez"], query
    assert names(session, "zoe turing") == []
    assert names(session, "") == [] and names(session, "   ") == []


def test_order_exact_number_then_word_start_then_name(session: Session) -> None:
    add_employee(session, "77", "Mark", "Annan", email="m@example.com", username="mannan")
    add_employee(session, "78", "Ann", "Smith", email="a@example.com", username="asmith")
    add_employee(session, "ann", "Zed", "Zulu", email="z@example.com", username="zzulu")
    add_employee(session, "79", "Joanna", "Baker", email="j@example.com", username="jbaker")
    session.commit()
    assert names(session, "ann") == ["Zed Zulu", "Ann Smith", "Mark Annan", "Joanna Baker"]


def test_like_wildcards_are_literal(session: Session) -> None:
    add_employee(session, "1", "Percy", "Fifty", email="p@example.com", username="p_fifty")
    add_employee(session, "2", "Other", "Person", email="o@example.com", username="operson")
    session.commit()
    assert names(session, "%") == []
    assert names(session, "p_f") == ["Percy Fifty"]
    assert names(session, "_") == ["Percy Fifty"]


def test_at_most_a_hundred_results(session: Session) -> None:
    insert_employees(session, 250, name=lambda n: ("Same", f"Name{n}"), emails=False, accounts=False)
    session.commit()
    assert len(search_employees(session, "same")) == MAX_RESULTS
    assert len(search_employees(session, "same", limit=5)) == 5


def test_inactive_and_accountless_are_labelled(session: Session) -> None:
    gone = add_employee(session, "9", "Old", "Timer", email="o@example.com", username=None, active=False)
    session.commit()
    [choice] = search_employees(session, "timer")
    assert choice.label == "Old Timer (9) [inactive]"
    assert choices_for(session, [gone.id, 12345]) == [choice]


def test_query_terms_are_bounded() -> None:
    assert query_terms("a b c d e f g") == ["a", "b", "c", "d", "e"]
    assert query_terms("x" * 500) == ["x" * 64]
    assert query_terms("Ada ada ADA") == ["ada"]


def test_postgresql_gets_a_trigram_index_for_substring_search(session: Session) -> None:
    indexes = {index["name"] for index in inspect(session.get_bind()).get_indexes("employees")}
    if session.get_bind().dialect.name == "postgresql":
        assert "ix_employees_search_text_trgm" in indexes
    else:
        assert "ix_employees_search_text_trgm" not in indexes


def test_never_emailed_is_one_rule_for_picker_send_home_and_report(session: Session) -> None:
    """The drift issue 11 names: the report counted disabled accounts, the picker did not."""
    add_employee(session, "1")
    add_employee(session, "2", active=False)
    add_employee(session, "3", status="disabled")
    add_employee(session, "4", username=None)
    emailed = add_employee(session, "5")
    session.flush()
    present(emailed.account).credentials_emailed_at = utcnow()
    add_employee(session, "6", status="invited")
    session.commit()
    ids = never_emailed_employee_ids(session)
    assert [session.get_one(Employee, i).employee_number for i in ids] == ["1", "6"]
    assert count_never_emailed(session) == len(ids) == 2
    assert stage_employee_ids(session, Stage.NEVER_EMAILED) == ids
    assert stage_count(session, Stage.NEVER_EMAILED) == 2
    assert build_report(session).never_emailed == 2
