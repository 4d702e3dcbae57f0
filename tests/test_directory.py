"""Search text and listing of the employee directory."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from bot.directory import fold_accents, import_employees, list_employees, make_search_text


def test_fold_accents() -> None:
    assert fold_accents("Zoë Ñúñez-O'Brien") == "Zoe Nunez-O'Brien"
    assert fold_accents("Søren Østergaard, Straße, Łódź, Æsir") == "Soren Ostergaard, Strasse, Lodz, AEsir"
    assert fold_accents("\uff21\uff4e\uff4e") == "Ann"  # full-width compatibility forms
    assert fold_accents("李小龍") == "李小龍"


def test_make_search_text() -> None:
    assert make_search_text("Zoë", "Ñúñez", "Zoe.N@example.com", "E-1", "znunez") == (
        "zoe nunez zoe.n@example.com e-1 znunez"
    )
    assert make_search_text("Ann", "Lee", None, "7", None) == "ann lee 7"


def test_list_employees_searches_every_word(session: Session, tmp_path: Path) -> None:
    csv = tmp_path / "e.csv"
    csv.write_text(
        "employee_number,first_name,last_name,email\n"
        "3,Zoë,Ñúñez,zoe@example.com\n1,John,Smith,js@example.org\n2,Jane,Smith,\n4,Al,50%_off,\n",
        encoding="utf-8",
    )
    import_employees(session, csv, "tester")
    session.commit()

    def numbers(query: str | None, limit: int = 50) -> list[str]:
        return [e.employee_number for e in list_employees(session, query, limit)]

    assert numbers(None) == ["1", "2", "3", "4"]
    assert numbers("smith") == ["1", "2"]
    assert numbers("SMITH jane") == ["2"]
    assert numbers("ÑÚÑ") == ["3"]
    assert numbers("example.org") == ["1"]
    assert numbers("50%") == ["4"]
    assert numbers("5_%") == []  # LIKE wildcards are escaped
    assert numbers("smith", limit=1) == ["1"]
    assert list_employees(session)[0].account is None
