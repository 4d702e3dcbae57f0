"""Temporary passwords and hashing."""

from __future__ import annotations

import pytest
from passlib.hash import bcrypt

from bot.passwords import (
    TEMP_PASSWORD_ALPHABET,
    generate_temporary_password,
    hash_password,
    needs_rehash,
    verify_password,
)


def test_temporary_passwords_are_long_random_and_free_of_look_alikes() -> None:
    passwords = {generate_temporary_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) == 16
        assert set(password) <= set(TEMP_PASSWORD_ALPHABET)
    assert not set("0Oo1Il") & set(TEMP_PASSWORD_ALPHABET)
    assert len(generate_temporary_password(24)) == 24


def test_short_temporary_passwords_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        generate_temporary_password(12)


@pytest.mark.owasp_hash_cost
def test_hashes_are_argon2id_at_owasp_minimum_and_verify() -> None:
    password_hash = hash_password("correct horse battery")
    assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password("correct horse battery", password_hash)
    assert not verify_password("correct horse battery!", password_hash)
    assert not needs_rehash(password_hash)


def test_bcrypt_hashes_verify_and_ask_for_a_rehash() -> None:
    legacy = bcrypt.hash("an old password")
    assert verify_password("an old password", legacy)
    assert needs_rehash(legacy)


def test_an_empty_hash_never_verifies() -> None:
    assert not verify_password("anything", None)
    assert not verify_password("", "")
