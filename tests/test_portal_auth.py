"""The portal's sign-in service: outcomes, lockout, expiry, pending-password promotion, rehashing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from bot.clock import ManualClock
from bot.context import Context
from bot.passwords import password_context, verify_password
from bot.portal import auth
from bot.portal.auth import SignInOutcome, sign_in
from models import Account, AccountStatus, utcnow
from tests.builders import TEMP_PASSWORD, add_person, audit_events, present
from tests.portal_helpers import GOOD_PASSWORD, get_account


def failures(ctx: Context) -> list[str]:
    return [
        details["reason"]
        for action, _, _, details in audit_events(ctx.sessions)
        if action == "portal.sign_in_failed"
    ]


def test_valid_temporary_password_must_be_changed(context: Context) -> None:
    person = add_person(context)
    result = sign_in(context, "adoe", TEMP_PASSWORD)
    assert result.outcome is SignInOutcome.MUST_CHANGE
    assert result.account_id == person.account_id
    account = get_account(context, person.account_id)
    assert account.last_login_at is not None
    assert ("portal.sign_in", "adoe", "account:adoe", {}) in audit_events(context.sessions)


def test_username_is_case_insensitive_and_trimmed(context: Context) -> None:
    add_person(context)
    assert sign_in(context, "  ADoe ", TEMP_PASSWORD).outcome is SignInOutcome.MUST_CHANGE


def test_expired_temporary_password(context: Context) -> None:
    add_person(context, expires_in=timedelta(seconds=-1))
    assert sign_in(context, "adoe", TEMP_PASSWORD).outcome is SignInOutcome.EXPIRED
    assert failures(context) == ["expired"]


def test_expired_page_only_with_the_right_password(context: Context) -> None:
    add_person(context, expires_in=timedelta(seconds=-1))
    assert sign_in(context, "adoe", "not-the-password").outcome is SignInOutcome.REFUSED
    assert failures(context) == ["wrong_password"]


def test_permanent_password_signs_in(context: Context) -> None:
    add_person(context, password=GOOD_PASSWORD, must_change=False, status=AccountStatus.ACTIVE)
    assert sign_in(context, "adoe", GOOD_PASSWORD).outcome is SignInOutcome.OK


@pytest.mark.parametrize(
    ("setup", "username", "reason"),
    [
        ({}, "nobody", "unknown_user"),
        ({}, "adoe", "wrong_password"),
        ({"status": AccountStatus.DISABLED}, "adoe", "disabled"),
        ({"locked_for": timedelta(minutes=5)}, "adoe", "locked"),
    ],
)
def test_refusals_look_the_same_and_cost_the_same(
    context: Context, monkeypatch: pytest.MonkeyPatch, setup: dict[str, Any], username: str, reason: str
) -> None:
    context = replace(context, clock=ManualClock())  # the lock lasts however long the suite takes
    if "locked_for" in setup:
        setup = {"locked_until": context.clock.now() + setup["locked_for"]}
    add_person(context, **setup)
    calls: list[str | None] = []

    def counting_verify(password: str, password_hash: str | None) -> bool:
        calls.append(password_hash)
        return verify_password(password, password_hash)

    monkeypatch.setattr(auth, "verify_password", counting_verify)
    password = TEMP_PASSWORD if reason in {"disabled", "locked"} else "wrong-password-123"
    result = sign_in(context, username, password)
    assert result.outcome is SignInOutcome.REFUSED
    assert len(calls) == 2, "every attempt verifies exactly two hashes"
    assert failures(context) == [reason]


def test_disabled_employee_cannot_sign_in(context: Context) -> None:
    person = add_person(context)
    with context.sessions.begin() as session:
        account = session.get(Account, person.account_id)
        present(account).employee.active = False
    assert sign_in(context, "adoe", TEMP_PASSWORD).outcome is SignInOutcome.REFUSED
    assert failures(context) == ["disabled"]


def test_failures_past_the_threshold_make_the_account_wait_longer_each_time(context: Context) -> None:
    person = add_person(context)
    for _ in range(4):
        assert sign_in(context, "adoe", "wrong-password-123").outcome is SignInOutcome.REFUSED
    assert get_account(context, person.account_id).locked_until is None
    now = utcnow()
    sign_in(context, "adoe", "wrong-password-123", now=now)
    account = get_account(context, person.account_id)
    assert account.failed_login_count == 5
    assert account.locked_until == now + timedelta(seconds=30)
    assert [a for a, *_ in audit_events(context.sessions)].count("portal.account_locked") == 1

    # During the wait even the right password is refused, and neither it nor a wrong one is counted.
    assert sign_in(context, "adoe", TEMP_PASSWORD, now=now).outcome is SignInOutcome.REFUSED
    sign_in(context, "adoe", "wrong-password-123", now=now + timedelta(seconds=29))
    assert failures(context)[-2:] == ["locked", "locked"]
    account = get_account(context, person.account_id)
    assert (account.failed_login_count, account.locked_until) == (5, now + timedelta(seconds=30))

    # Each further failure doubles the wait, up to LOCKOUT_MINUTES.
    waits = []
    for _ in range(7):
        now = present(account.locked_until)
        sign_in(context, "adoe", "wrong-password-123", now=now)
        account = get_account(context, person.account_id)
        waits.append((present(account.locked_until) - now).total_seconds())
    assert waits == [60, 120, 240, 480, 900, 900, 900]

    # After the wait, the right password signs in and the count starts again.
    after = account.locked_until
    assert sign_in(context, "adoe", TEMP_PASSWORD, now=after).outcome is SignInOutcome.MUST_CHANGE
    account = get_account(context, person.account_id)
    assert (account.failed_login_count, account.locked_until) == (0, None)


def test_success_resets_the_failure_counter(context: Context) -> None:
    person = add_person(context)
    for _ in range(4):
        sign_in(context, "adoe", "wrong-password-123")
    sign_in(context, "adoe", TEMP_PASSWORD)
    assert get_account(context, person.account_id).failed_login_count == 0
    for _ in range(4):
        sign_in(context, "adoe", "wrong-password-123")
    assert get_account(context, person.account_id).locked_until is None


def test_lockout_settings_are_used(context: Context) -> None:
    ctx = Context(
        context.settings.model_copy(update={"lockout_threshold": 2, "lockout_minutes": 1}), context.sessions
    )
    person = add_person(ctx)
    sign_in(ctx, "adoe", "x" * 12)
    sign_in(ctx, "adoe", "x" * 12)
    locked_until = get_account(ctx, person.account_id).locked_until
    assert locked_until is not None and locked_until - utcnow() <= timedelta(minutes=1)


def test_pending_password_signs_in_and_is_promoted(context: Context) -> None:
    expires = utcnow() + timedelta(hours=70)
    person = add_person(
        context,
        password=None,
        must_change=False,
        status=AccountStatus.PENDING,
        pending_password_hash=password_context.hash(TEMP_PASSWORD),
        pending_password_expires_at=expires,
    )
    assert sign_in(context, "adoe", TEMP_PASSWORD).outcome is SignInOutcome.MUST_CHANGE
    account = get_account(context, person.account_id)
    assert verify_password(TEMP_PASSWORD, account.password_hash)
    assert account.pending_password_hash is None and account.pending_password_expires_at is None
    assert account.must_change_password
    assert account.temp_password_expires_at == expires
    assert account.status == AccountStatus.INVITED


def test_expired_pending_password_does_not_sign_in(context: Context) -> None:
    add_person(
        context,
        password="OlderTempPassw0rdQ",
        pending_password_hash=password_context.hash(TEMP_PASSWORD),
        pending_password_expires_at=utcnow() - timedelta(seconds=1),
    )
    assert sign_in(context, "adoe", TEMP_PASSWORD).outcome is SignInOutcome.REFUSED
    assert sign_in(context, "adoe", "OlderTempPassw0rdQ").outcome is SignInOutcome.MUST_CHANGE


def test_bcrypt_hash_is_rehashed_to_argon2id(context: Context) -> None:
    person = add_person(context, password=None, must_change=False, status=AccountStatus.ACTIVE)
    with context.sessions.begin() as session:
        session.get_one(Account, person.account_id).password_hash = password_context.handler("bcrypt").hash(
            GOOD_PASSWORD
        )
    assert sign_in(context, "adoe", GOOD_PASSWORD).outcome is SignInOutcome.OK
    new_hash = get_account(context, person.account_id).password_hash
    assert present(new_hash).startswith("$argon2id$")
    assert verify_password(GOOD_PASSWORD, new_hash)


def test_change_password_ends_the_temporary_password(context: Context) -> None:
    person = add_person(context)
    change = auth.change_password(context, person.account_id, TEMP_PASSWORD, GOOD_PASSWORD, GOOD_PASSWORD)
    assert change.ok
    account = get_account(context, person.account_id)
    assert not account.must_change_password
    assert account.temp_password_expires_at is None
    assert account.status == AccountStatus.ACTIVE
    assert account.password_changed_at is not None
    assert sign_in(context, "adoe", TEMP_PASSWORD).outcome is SignInOutcome.REFUSED
    assert sign_in(context, "adoe", GOOD_PASSWORD).outcome is SignInOutcome.OK


def test_change_password_problems(context: Context) -> None:
    person = add_person(context)
    wrong = auth.change_password(context, person.account_id, "not-it", GOOD_PASSWORD, GOOD_PASSWORD)
    assert wrong.problems == ["Your current password is not correct. Type the password you signed in with."]
    assert get_account(context, person.account_id).failed_login_count == 1
    same = auth.change_password(context, person.account_id, TEMP_PASSWORD, TEMP_PASSWORD, TEMP_PASSWORD)
    assert same.problems == ["Choose a password different from your current (temporary) password."]
    mismatch = auth.change_password(
        context, person.account_id, TEMP_PASSWORD, GOOD_PASSWORD, GOOD_PASSWORD + "x"
    )
    assert mismatch.problems == ["The two new passwords do not match. Type the same password in both fields."]
    assert get_account(context, person.account_id).must_change_password


def test_a_password_change_ends_older_sessions(context: Context) -> None:
    person = add_person(context)
    version = sign_in(context, "adoe", TEMP_PASSWORD).session_version
    assert version is not None
    assert auth.signed_in_user(context, person.account_id, version) is not None
    change = auth.change_password(context, person.account_id, TEMP_PASSWORD, GOOD_PASSWORD, GOOD_PASSWORD)
    assert auth.signed_in_user(context, person.account_id, version) is None
    assert change.session_version is not None
    assert auth.signed_in_user(context, person.account_id, change.session_version) is not None


def test_an_unknown_username_is_not_kept_in_the_audit_log(context: Context) -> None:
    person = add_person(context)
    sign_in(context, "My-Secret-Passphrase-9", "whatever-password")  # the password in the wrong field
    sign_in(context, "evil\nINFO forged line\x00" + "x" * 200, "whatever-password")
    sign_in(context, person.username.upper(), "wrong password")
    unknown, forged, known = audit_events(context.sessions)
    assert (
        unknown
        == forged
        == ("portal.sign_in_failed", "portal:unknown-user", None, {"reason": "unknown_user"})
    )
    assert known == (
        "portal.sign_in_failed",
        person.username,
        f"account:{person.username}",
        {"reason": "wrong_password"},
    )
