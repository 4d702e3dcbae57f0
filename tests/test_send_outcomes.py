"""The kinds a delivery's ending is decided on, their wording, and the credential-mode strategies: no
database, no threads."""

from __future__ import annotations

import pytest

from bot import credential_modes
from bot.sending.outcomes import (
    ADDRESS_CHANGED,
    EMAILED_SINCE,
    IN_PROGRESS,
    MAY_HAVE_ARRIVED,
    Skip,
    SkipKind,
    username_failed,
    username_in_doubt,
    username_not_sent,
    welcome_in_doubt,
)
from bot.settings import Settings
from models import CredentialMode


def test_each_skip_kind_has_its_wording_and_only_a_stop_goes_unaudited() -> None:
    assert Skip(SkipKind.UNMAILABLE, "no account").reason == "no account"
    assert Skip(SkipKind.ADDRESS_CHANGED).reason == ADDRESS_CHANGED
    assert Skip(SkipKind.EMAILED_SINCE, "#7").reason == EMAILED_SINCE.format("#7")
    assert Skip(SkipKind.IN_PROGRESS).reason == IN_PROGRESS
    assert Skip(SkipKind.STOPPED, "interrupted (Ctrl-C)").reason == "not sent: interrupted (Ctrl-C)"
    assert [kind for kind in SkipKind if not Skip(kind).audited] == [SkipKind.STOPPED]


def test_the_username_emails_wording_names_the_credential_that_works() -> None:
    works = credential_modes.of(CredentialMode.LINK).credential
    prefix = "the welcome email was sent and its set-password link works, but the username email "
    assert (
        username_not_sent(works, "SendGrid 400") == prefix + "was not: SendGrid 400; send again to email both"
    )
    assert username_in_doubt(works, "timeout") == prefix + "may have been delivered (timeout)"
    assert (
        username_failed(works, ValueError("x"))
        == prefix + "was not: internal error (ValueError; see the logs)"
    )


@pytest.mark.parametrize("mode", list(CredentialMode))
def test_every_mode_has_a_strategy_with_its_subject(mode: CredentialMode) -> None:
    settings = Settings(
        _env_file=None, welcome_subject="password {company}", welcome_link_subject="link {company}"
    )
    strategy = credential_modes.of(str(mode))
    assert strategy.mode == mode
    assert strategy.welcome_subject(settings) == f"{strategy.noun} {{company}}"
    assert (welcome_in_doubt(strategy.noun, "timeout") == f"welcome email {MAY_HAVE_ARRIVED} (timeout)") == (
        mode == CredentialMode.PASSWORD
    )


def test_an_unknown_mode_has_no_strategy() -> None:
    with pytest.raises(ValueError):
        credential_modes.of("carrier pigeon")
