"""bot.credentials: every credential change, one test each; the sender and the portal share them."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot import credential_modes, credentials, passwords
from bot.context import Context
from bot.credentials import Pending
from bot.passwords import verify_password
from bot.portal.auth import SignInOutcome, sign_in
from models import Account, AccountStatus, CredentialMode, SetupLink, utcnow
from tests.builders import add_employee, present


def account(session: Session) -> Account:
    session.expire_all()
    return session.scalars(sa.select(Account)).one()


def links(session: Session) -> list[SetupLink]:
    session.expire_all()
    return list(session.scalars(sa.select(SetupLink).order_by(SetupLink.id)))


def test_make_credential_hashes_the_password_and_hands_out_the_plaintext_once(context: Context) -> None:
    made = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    assert verify_password(made.email["password"], made.secret_hash)
    assert made.email["password"] not in repr(made)
    link = credential_modes.of(CredentialMode.LINK).make(context.settings)
    token = link.email["setup_url"].rsplit("/", 1)[1]
    assert credentials.token_hash(token) == link.secret_hash and link.email["password"] is None


def test_a_password_supply_hashes_ahead_no_more_than_it_was_told_it_needs(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashed: list[str] = []
    real = passwords.hash_password

    def counted(password: str) -> str:
        hashed.append(password)
        return real(password)

    monkeypatch.setattr(credentials, "hash_password", counted)
    supply = credentials.PasswordSupply(context.settings, ahead=8, most=3)
    taken = [supply.take() for _ in range(3)]
    assert len(hashed) == 3  # a small batch does not hash eight passwords for nobody
    extra = supply.take()  # one more than it was told (a claim's commit lost, say): made at once
    supply.close()
    assert len(hashed) == 4
    for made in [*taken, extra]:
        assert verify_password(made.email["password"], made.secret_hash)


def test_store_pending_keeps_the_hash_and_says_what_was_pending(context: Context, session: Session) -> None:
    account_id = present(add_employee(session, "1").account).id
    first = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    second = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    assert credentials.store_pending(session, account_id, first) == Pending(None, None)
    before = credentials.store_pending(session, account_id, second)
    assert before.secret_hash == first.secret_hash
    session.commit()
    assert account(session).pending_password_hash == second.secret_hash
    assert account(session).password_hash is None  # nothing works until the mail API accepted it


@pytest.mark.parametrize(
    ("status", "after"),
    [
        (AccountStatus.PENDING, AccountStatus.INVITED),
        (AccountStatus.INVITED, AccountStatus.INVITED),
        (AccountStatus.ACTIVE, AccountStatus.INVITED),
        (AccountStatus.LOCKED, AccountStatus.LOCKED),
        (AccountStatus.DISABLED, AccountStatus.DISABLED),
    ],
)
def test_promote_makes_the_credential_the_password_with_one_status_rule(
    context: Context, session: Session, status: AccountStatus, after: AccountStatus
) -> None:
    account_id = present(add_employee(session, "1", status=status).account).id
    old_link = credential_modes.of(CredentialMode.LINK).make(context.settings)
    credentials.store_pending(session, account_id, old_link)
    made = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    credentials.store_pending(session, account_id, made)
    credentials.promote(
        session, account_id, CredentialMode.PASSWORD, made.secret_hash, made.expires_at, emailed_by="cli:x"
    )
    session.commit()
    promoted = account(session)
    assert promoted.status == after and promoted.must_change_password
    assert verify_password(made.email["password"], promoted.password_hash)
    assert promoted.pending_password_hash is None and promoted.temp_password_expires_at == made.expires_at
    assert promoted.credentials_emailed_by == "cli:x" and promoted.credentials_emailed_at is not None
    assert links(session)[0].revoked_at is not None  # an older unused link stops working


def test_promote_leaves_a_newer_pending_credential_alone(context: Context, session: Session) -> None:
    account_id = present(add_employee(session, "1").account).id
    older = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    newer = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    credentials.store_pending(session, account_id, newer)
    credentials.promote(session, account_id, CredentialMode.PASSWORD, older.secret_hash, older.expires_at)
    session.commit()
    assert account(session).pending_password_hash == newer.secret_hash
    assert account(session).credentials_emailed_at is None  # no emailed_by: not recorded as emailed


def test_discard_puts_back_what_was_pending_unless_it_expired(context: Context, session: Session) -> None:
    account_id = present(add_employee(session, "1").account).id
    earlier = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    refused = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    credentials.store_pending(session, account_id, earlier)
    before = credentials.store_pending(session, account_id, refused)
    credentials.discard(session, account_id, CredentialMode.PASSWORD, refused.secret_hash, before)
    session.commit()
    assert account(session).pending_password_hash == earlier.secret_hash  # it may have reached them
    again = credentials.store_pending(session, account_id, refused)
    expired = Pending(again.secret_hash, utcnow() - timedelta(minutes=1))
    credentials.discard(session, account_id, CredentialMode.PASSWORD, refused.secret_hash, expired)
    session.commit()
    assert account(session).pending_password_hash is None


def test_discard_revokes_a_link(context: Context, session: Session) -> None:
    account_id = present(add_employee(session, "1").account).id
    link = credential_modes.of(CredentialMode.LINK).make(context.settings)
    credentials.store_pending(session, account_id, link)
    credentials.discard(session, account_id, CredentialMode.LINK, link.secret_hash, None)
    session.commit()
    assert links(session)[0].revoked_at is not None


def test_set_password_ends_every_temporary_credential(context: Context, session: Session) -> None:
    account_id = present(add_employee(session, "1", status=AccountStatus.INVITED).account).id
    credentials.store_pending(
        session, account_id, credential_modes.of(CredentialMode.LINK).make(context.settings)
    )
    credentials.store_pending(
        session, account_id, credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    )
    credentials.set_password(session, account_id, "$argon2id$new", utcnow())
    session.commit()
    changed = account(session)
    assert changed.password_hash == "$argon2id$new" and changed.status == AccountStatus.ACTIVE
    assert changed.pending_password_hash is None and not changed.must_change_password
    assert all(link.revoked_at is not None for link in links(session))


def test_the_portal_promotes_a_pending_password_with_the_same_rule(
    context: Context, session: Session
) -> None:
    employee = add_employee(session, "1", status=AccountStatus.ACTIVE)
    made = credential_modes.of(CredentialMode.PASSWORD).make(context.settings)
    credentials.store_pending(session, present(employee.account).id, made)
    session.commit()
    assert (
        sign_in(context, present(employee.account).username, made.email["password"]).outcome
        == SignInOutcome.MUST_CHANGE
    )
    promoted = account(session)
    assert promoted.status == AccountStatus.INVITED and promoted.pending_password_hash is None
    assert verify_password(made.email["password"], promoted.password_hash)
