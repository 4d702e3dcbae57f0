"""Settings, read from the environment and an optional `.env` file."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.time_zones import canonical_time_zone

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The source checkout (samples, test artifacts); an installed credbot finds its templates in `templates`."""


class Settings(BaseSettings):
    """Every setting credbot reads; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Slack
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    admin_slack_user_ids: str = ""
    audit_channel_id: str | None = None
    digest_time: str = ""
    """HH:MM (UTC) of the daily digest in AUDIT_CHANNEL_ID; empty: no digest."""

    # Storage
    database_url: str = "sqlite:///credbot.db"
    redis_url: str | None = None
    """Dramatiq's Redis broker for background jobs, the portal's rate-limit counters and the Slack Web API's
    rate budget; empty: jobs run on a worker inside each process and rate limits are counted in memory."""
    redis_namespace: str = "credbot"
    worker_threads: int = Field(default=8, ge=1, le=64)
    worker_shutdown_seconds: float = Field(default=20.0, ge=1.0)
    """On SIGTERM, how long a worker may take to end the deliveries in flight and let go of the rest
    before it exits: below the platform's kill timeout (Heroku sends SIGKILL 30 s after SIGTERM)."""

    # Mail
    sendgrid_api_key: SecretStr | None = None
    sendgrid_api_host: str = "https://api.sendgrid.com"
    sendgrid_sandbox: bool = False
    sendgrid_timeout_seconds: float = 10.0
    outbox_dir: Path = Path("outbox")
    email_from: str = "no-reply@example.com"
    email_from_name: str = "Self-Service"
    company_name: str = "Example Corp"
    welcome_subject: str = "Welcome to {company} Self-Service: your temporary password"
    welcome_link_subject: str = "Welcome to {company} Self-Service: set your password"
    username_subject: str = "Your {company} Self-Service username"
    mail_concurrency: int = Field(default=64, ge=1, le=128)
    """Employees a worker mails at once per batch: each holds a mail thread for two API calls (about
    0.3 s at 150 ms each), so 64 keep ahead of what two cores hash (about 110 employees/s)."""
    sendgrid_webhook_public_key: str | None = None
    """The signed Event Webhook's verification key; unset: POST /sendgrid/events answers 404."""
    credbot_instance: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    """Names this installation in every email's custom args, so that two installations sharing one
    SendGrid account never take each other's events; unset: a random id kept in the database."""
    delivery_events_retention_days: int = Field(default=90, ge=1)
    """Delivery events are pruned this long after they arrived; each delivery keeps its final state."""
    hash_threads_spare_core: bool = False
    """Hash on one thread fewer than cores, leaving one to a web process on the same machine."""
    worker_idle_priority: bool = False
    """Hash at the kernel's idle priority (Linux SCHED_IDLE): a batch's hashing, most of its CPU, only
    gets the CPU every other process on the machine leaves, so a web process beside it answers as if it
    were alone. The worker's other threads keep their priority."""
    send_lease_seconds: float = Field(default=60.0, ge=1.0)
    """How long a worker's claim on a delivery lasts unless renewed (every third of it while it runs)."""

    # Accounts and credentials
    portal_url: str = "http://localhost:3000/portal"
    """Base address of the Self-Service portal; the sign-in link is PORTAL_URL/login."""
    default_roles: str = "Employee"
    username_pattern: str = "{first_initial}{last_name}"
    temp_password_ttl_hours: int = Field(default=72, ge=1)
    temp_password_length: int = Field(default=16, ge=16, le=64)
    credential_mode: Literal["password", "link"] = "password"

    # Portal
    secret_key: SecretStr | None = None
    environment: Literal["development", "production"] = "development"
    password_min_length: int = Field(default=12, ge=8, le=128)
    lockout_threshold: int = Field(default=5, ge=1)
    """Consecutive failed sign-ins allowed before each further one makes the account wait."""
    lockout_delay_seconds: int = Field(default=30, ge=1)
    """The first wait; it doubles with each further failure, up to LOCKOUT_MINUTES."""
    lockout_minutes: int = Field(default=15, ge=1)
    sign_in_rate_limit: str = "10/minute;100/hour"
    """Failed sign-ins, password changes and set-password attempts allowed per client address and
    username together (Flask-Limiter's notation)."""
    portal_address_rate_limit: str = "300/minute;3000/hour"
    """Sign-in, password-change and set-password attempts (failed or not) allowed per client address."""
    recovery_rate_limit: str = "5/minute;30/hour"
    """Recovery requests ("Didn't get your email, or it expired?") allowed per client address."""
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    """Reverse proxies in front of the web server whose X-Forwarded-For names the client."""

    # Directory
    default_time_zone: str = "UTC"
    """The IANA time zone of employees whose import gives none."""
    date_format: str = ""
    """How the import reads dates that are not ISO 8601 (`2026-12-07`), in strptime's notation (e.g.
    `%d/%m/%Y`); empty: ISO 8601 only, since `03/04/2026` means different days in different countries."""
    scim_create_accounts: bool = True
    """SCIM: create the Self-Service account (username = the identity provider's userName) as soon as a
    user is provisioned; false: later, with `credbot accounts create` or the Slack app."""

    # Web server
    port: int = 3000

    @field_validator("digest_time")
    @classmethod
    def _digest_time_is_a_time(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("DIGEST_TIME must be HH:MM in UTC (e.g. 07:30), or empty for no digest")
        return value

    @field_validator("default_time_zone")
    @classmethod
    def _default_time_zone_exists(cls, value: str) -> str:
        zone = canonical_time_zone(value)
        if zone is None:
            raise ValueError(f"DEFAULT_TIME_ZONE {value!r} is not an IANA time zone, e.g. Europe/London")
        return zone

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_ends_with_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @property
    def default_role_names(self) -> list[str]:
        """DEFAULT_ROLES split on commas or semicolons."""
        return split_names(self.default_roles)

    @property
    def bootstrap_admin_ids(self) -> set[str]:
        """ADMIN_SLACK_USER_IDS split on commas, semicolons or spaces."""
        return set(split_names(self.admin_slack_user_ids.replace(" ", ",")))

    @property
    def sign_in_url(self) -> str:
        """The portal's sign-in page, as linked from the emails."""
        return self.portal_url.rstrip("/") + "/login"

    def setup_link_url(self, token: str) -> str:
        """The single-use set-password link for `token` (CREDENTIAL_MODE=link)."""
        return f"{self.portal_url.rstrip('/')}/setup/{token}"

    @property
    def uses_outbox(self) -> bool:
        """True when mail goes to the local outbox instead of SendGrid."""
        return self.sendgrid_api_key is None or not self.sendgrid_api_key.get_secret_value()


def split_names(raw: str) -> list[str]:
    """Split a `;`- or `,`-separated list, dropping blanks and duplicates, keeping order."""
    names = (part.strip() for part in raw.replace(";", ",").split(","))
    return list(dict.fromkeys(name for name in names if name))


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
