"""The SendGrid transport: v3 Mail Send through the `sendgrid` package, with retries."""

from __future__ import annotations

import http.client
import json
import logging
import random
import re
import threading
import time
import urllib.error
from collections.abc import Callable
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Category,
    ClickTracking,
    CustomArg,
    From,
    Mail,
    MailSettings,
    OpenTracking,
    SandBoxMode,
    To,
    TrackingSettings,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from bot.mail.message import MailAuthError, MailError, MailRejected, MailUnavailable, OutgoingEmail
from bot.settings import Settings

log = logging.getLogger(__name__)


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


# python_http_client logs every request body (the password) and header (the API key) at DEBUG.
logging.getLogger("python_http_client.client").addFilter(_DropAll())


class _Temporary(MailError):
    """A failure worth retrying; `reset_at` is SendGrid's X-RateLimit-Reset (epoch seconds) on a 429."""

    def __init__(self, reason: str, reset_at: float | None = None) -> None:
        super().__init__(reason)
        self.reset_at = reset_at


class SendGridTransport:
    """Sends through SendGrid's v3 Mail Send API; one API client per thread.

    Retries 429 (waiting until X-RateLimit-Reset, at most `max_rate_limit_wait` seconds), 5xx,
    connection errors and timeouts, `attempts` times in all with exponential backoff and jitter.
    Other 4xx answers fail at once: 401/403 as MailAuthError, the rest as MailRejected.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        attempts: int = 5,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 16.0,
        max_rate_limit_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if settings.sendgrid_api_key is None:
            raise ValueError("SENDGRID_API_KEY is not set")
        self._api_key = settings.sendgrid_api_key
        self.host = settings.sendgrid_api_host.rstrip("/")
        self.timeout = settings.sendgrid_timeout_seconds
        self.sandbox = settings.sendgrid_sandbox
        self._from = (settings.email_from, settings.email_from_name)
        self.attempts = attempts
        self._backoff = wait_exponential(multiplier=backoff_seconds, max=max_backoff_seconds) + wait_random(
            0, backoff_seconds
        )
        self.max_rate_limit_wait = max_rate_limit_wait
        self._sleep = sleep
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"<SendGridTransport {self.host}{' sandbox' if self.sandbox else ''}>"

    def _client(self) -> SendGridAPIClient:
        # The client's request headers are a dict it mutates on each call: never share one between threads.
        client = getattr(self._local, "client", None)
        if client is None:
            client = SendGridAPIClient(api_key=self._api_key.get_secret_value(), host=self.host)
            client.client.timeout = self.timeout
            self._local.client = client
        return client

    def _body(self, email: OutgoingEmail) -> dict[str, Any]:
        mail = Mail(
            from_email=From(*self._from),
            to_emails=To(email.to_address, recipient_name(email.to_name)),
            subject=email.subject,
            plain_text_content=email.text,
            html_content=email.html,
        )
        mail.category = Category(email.category)
        for key, value in email.custom_args.items():
            mail.custom_arg = CustomArg(key, str(value))
        # No rewritten links or tracking pixel: the sign-in and set-password links must reach the
        # employee as written, and credential emails are not marketing.
        mail.tracking_settings = TrackingSettings(
            click_tracking=ClickTracking(False, False), open_tracking=OpenTracking(False)
        )
        if self.sandbox:
            mail.mail_settings = MailSettings(sandbox_mode=SandBoxMode(True))
        return mail.get()

    def send(self, email: OutgoingEmail) -> str:
        """Send `email`; return SendGrid's X-Message-Id ("" if it gave none, as in sandbox mode)."""
        body = self._body(email)
        retrying = Retrying(
            retry=retry_if_exception_type(_Temporary),
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._post, body)
        except _Temporary as error:
            raise MailUnavailable(f"{error.reason} (gave up after {self.attempts} attempts)") from error

    def _post(self, body: dict[str, Any]) -> str:
        try:
            response = self._client().send(body)
        except HTTPError as error:
            raise _classify(error) from error
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as error:
            raise _Temporary(self._connection_reason(error)) from error
        if response.status_code not in (200, 202):
            raise _Temporary(f"SendGrid answered {response.status_code}")
        return response.headers.get("X-Message-Id") or ""

    def _connection_reason(self, error: Exception) -> str:
        cause = getattr(error, "reason", error)
        if isinstance(error, TimeoutError) or isinstance(cause, TimeoutError):
            return f"SendGrid did not answer within {self.timeout:g} s ({self.host})"
        return f"could not reach SendGrid at {self.host}: {cause}"

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Temporary) and error.reset_at is not None:
            until_reset = error.reset_at - time.time()
            return min(max(until_reset, 0.0), self.max_rate_limit_wait) + random.uniform(0, 0.25)
        return self._backoff(state)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s; retrying in %.1f s (attempt %d of %d)", error, delay, state.attempt_number + 1, self.attempts
        )


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def recipient_name(name: str | None) -> str | None:
    """`name` as SendGrid delivers it in `personalizations[].to[].name`, or None to leave it out.

    SendGrid's v3 API takes a name holding `,` or `;` for a list of addresses: it answers 202 and then
    drops the message. Such a name is sent as an RFC 5322 quoted-string (`"Downey, Jr., Robert"`), which
    SendGrid parses as one name. Control characters become spaces. A name that would still need `"` or
    `\\` escaped inside the quotes is left out: the email still arrives, addressed without a name.
    """
    if not name:
        return None
    cleaned = " ".join(_CONTROL.sub(" ", name).split())
    if not cleaned:
        return None
    if "," not in cleaned and ";" not in cleaned:
        return cleaned
    if '"' in cleaned or "\\" in cleaned:
        return None
    return f'"{cleaned}"'


def _classify(error: HTTPError) -> MailError:
    """The MailError for an HTTP error answer, with SendGrid's own reasons from its `errors` JSON."""
    status = int(error.status_code)
    reason = f"SendGrid {status}: {_api_reasons(error.body) or error.reason}"
    if status in (401, 403):
        return MailAuthError(reason + " (check SENDGRID_API_KEY and its Mail Send permission)")
    if status == 429:
        return _Temporary(reason, _reset_at(error.headers))
    if status >= 500:
        return _Temporary(reason)
    return MailRejected(reason)


def _api_reasons(body: bytes | str | None) -> str:
    """`errors[].message` (and field) from a SendGrid error answer; never anything else of the body."""
    try:
        errors = json.loads(body or b"").get("errors") or []
    except (ValueError, AttributeError):
        return ""
    reasons = []
    for item in errors if isinstance(errors, list) else []:
        if isinstance(item, dict) and item.get("message"):
            field = item.get("field")
            reasons.append(f"{item['message']} ({field})" if field else str(item["message"]))
    return "; ".join(reasons)[:500]


def _reset_at(headers: Any) -> float | None:
    try:
        return float(headers.get("X-RateLimit-Reset"))
    except (AttributeError, TypeError, ValueError):
        return None
