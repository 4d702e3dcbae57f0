"""The portal's password rules: length, personal data, reuse and guessability, with clear messages."""

from __future__ import annotations

from typing import Any

import pytest

from bot.portal.password_rules import MAX_LENGTH, normalize_password, password_problems

GOOD = "orbit-lantern-pickle-meadow"


def problems(password: str, **overrides: object) -> list[str]:
    arguments: dict[str, Any] = {
        "min_length": 12,
        "username": "adoe",
        "first_name": "Alice",
        "last_name": "Doe",
        "current_password": "TempPassw0rdXyzQ",
    }
    arguments.update(overrides)
    return password_problems(password, **arguments)


def test_a_long_uncommon_passphrase_is_accepted() -> None:
    assert problems(GOOD) == []
    assert problems("tangerine submarine violin") == []


def test_no_composition_rules_lowercase_only_is_fine() -> None:
    assert problems("quietlyorbitingpurplewalrus") == []


def test_empty_password() -> None:
    assert problems("") == ["Enter a new password."]


@pytest.mark.parametrize("length", [1, 11])
def test_too_short_says_how_long(length: int) -> None:
    assert problems("x" * length) == [f"Use at least 12 characters; this password has {length}."]


def test_minimum_length_comes_from_the_setting() -> None:
    assert problems("mauve-otter-qz", min_length=16) == ["Use at least 16 characters; this password has 14."]
    assert problems("mauve-otter-qz", min_length=12) == []


def test_exactly_the_minimum_and_maximum_lengths_are_allowed() -> None:
    assert problems("zq8-Mauve!kT") == []  # 12 characters
    long_one = ("walrus orbit pickle meadow " * 5)[:MAX_LENGTH]
    assert len(long_one) == MAX_LENGTH
    assert problems(long_one) == []


def test_too_long() -> None:
    assert problems("a" * 129) == ["Use at most 128 characters; this password has 129."]


@pytest.mark.parametrize("password", ["my-adoe-orbit-lantern", "ADOE-orbit-lantern-x"])
def test_contains_the_username_case_insensitively(password: str) -> None:
    assert problems(password, last_name="Smithers") == ["Do not include your username in the password."]


def test_contains_the_first_or_last_name() -> None:
    assert problems("ALICE-orbit-lantern", username="zz") == [
        'Do not include your name ("Alice") in the password.'
    ]
    assert problems("orbit-doe-lantern", username="zz") == [
        'Do not include your name ("Doe") in the password.'
    ]


def test_short_name_parts_are_not_checked() -> None:
    assert problems("orbit-li-lantern-meadow", username="xli", first_name="Li", last_name="Al") == []


def test_hyphenated_names_are_checked_part_by_part() -> None:
    result = problems("orbit-lantern-jean-meadow", username="zz", first_name="Marie-Jean", last_name="Ng")
    assert result == ['Do not include your name ("Jean") in the password.']


def test_reusing_the_temporary_password_is_refused() -> None:
    assert problems("TempPassw0rdXyzQ") == [
        "Choose a password different from your current (temporary) password."
    ]


@pytest.mark.parametrize("password", ["Password1234", "qwertyuiop123", "aaaaaaaaaaaaaaaa", "123456789012"])
def test_common_or_weak_passwords_are_refused_with_advice(password: str) -> None:
    [message] = problems(password)
    assert message.startswith("This password is too easy to guess")
    assert "passphrase" in message


def test_the_weakness_message_includes_the_estimators_warning() -> None:
    [message] = problems("Password1234")
    assert "(This is similar to a commonly used password)." in message


def test_company_name_counts_as_guessable() -> None:
    assert problems("Examplecorp2024!") == []
    [message] = problems("Examplecorp2024!", extra_words=["Example Corp"])
    assert message.startswith("This password is too easy to guess")


def test_unicode_is_normalised() -> None:
    ligature, fullwidth_t = "\ufb01", "\uff34"
    assert normalize_password(ligature) == "fi"
    assert problems(fullwidth_t + "empPassw0rdXyzQ") == [
        "Choose a password different from your current (temporary) password."
    ]


@pytest.mark.parametrize(
    "password",
    ["Zoe-Nunez-springtime", "zoë-orbit-lantern-meadow", "orbit-OBRIEN-lantern", "NUÑEZ-orbit-lantern"],
)
def test_names_are_compared_with_accents_folded_and_case_ignored(password: str) -> None:
    result = problems(password, username="znunez-obrien", first_name="Zoë", last_name="Ñúñez-O'Brien")
    assert result and all(problem.startswith("Do not include your") for problem in result)
    assert problems(
        "Zoe-Nunez-springtime", username="znunez-obrien", first_name="Zoë", last_name="Ñúñez"
    ) == [
        'Do not include your name ("Zoë") in the password.',
        'Do not include your name ("Ñúñez") in the password.',
    ]
