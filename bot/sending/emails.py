"""The two emails of a delivery: the welcome email with the credential, then the username email.

Their categories name them in the mail API's events (`bot.delivery_events`); the welcome email's
subject and wording follow the batch's credential mode (`bot.credential_modes`).
"""

from __future__ import annotations

from typing import Any

from bot.credential_modes import CredentialModeStrategy
from bot.mail import OutgoingEmail, render_email
from bot.sending.targets import Target
from bot.settings import Settings
from bot.time_zones import zone_of

WELCOME_CATEGORY = "credbot-welcome"
USERNAME_CATEGORY = "credbot-username"


def welcome_email(
    settings: Settings,
    mode: CredentialModeStrategy,
    target: Target,
    custom_args: dict[str, str],
    credential: dict[str, Any],
) -> OutgoingEmail:
    """The welcome email; `credential`: the credential's template values (its plaintext)."""
    subject = mode.welcome_subject(settings)
    return _email(settings, target, "welcome", subject, WELCOME_CATEGORY, custom_args, credential)


def username_email(
    settings: Settings, mode: CredentialModeStrategy, target: Target, custom_args: dict[str, str]
) -> OutgoingEmail:
    subject = settings.username_subject
    values = {"mode": mode.mode}
    return _email(settings, target, "username", subject, USERNAME_CATEGORY, custom_args, values)


def _email(
    settings: Settings,
    target: Target,
    template: str,
    subject: str,
    category: str,
    custom_args: dict[str, str],
    values: dict[str, Any],
) -> OutgoingEmail:
    """Render `template` for `target`."""
    assert target.address is not None
    company = settings.company_name
    text, html = render_email(
        template,
        company=company,
        first_name=target.first_name,
        username=target.username,
        sign_in_url=settings.sign_in_url,
        time_zone=zone_of(target.time_zone, settings.default_time_zone),
        **values,
    )
    return OutgoingEmail(
        to_address=target.address,
        to_name=target.name,
        subject=subject.format(company=company),
        text=text,
        html=html,
        category=category,
        custom_args=custom_args,
        employee_number=target.employee_number,
        bypass_bounce_list=target.bypass_bounce_list,
    )
