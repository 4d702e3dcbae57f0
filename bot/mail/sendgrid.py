"""The SendGrid transport: v3 Mail Send through the `sendgrid` package, with retries."""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from sendgrid.helpers.mail import (
    BypassBounceManagement,
    Category,
    ClickTracking,
    CustomArg,
    From,
    Mail,
    MailSettings,
    OpenTracking,
    SandBoxMode,
    SubscriptionTracking,
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
from bot.outside_text import inert
from bot.settings import Settings

log = logging.getLogger(__name__)


class _Temporary(MailError):
    """A failure worth retrying; `reset_at` is SendGrid's X-RateLimit-Reset (epoch seconds) on a 429."""

    def __init__(self, reason: str, reset_at: float | None = None, *, in_doubt: bool = False) -> None:
        super().__init__(reason, in_doubt=in_doubt)
        self.reset_at = reset_at


class _Stale(_Temporary):
    """A reused connection was found closed before any byte of the answer (closed while idle)."""


# What a request on a connection the server closed while it sat idle ends with.
_IDLE_CLOSED = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)

MAIL_SEND_PATH = "/v3/mail/send"


class _Watchdog:
    """One daemon thread that runs callbacks at their deadlines: no thread per mail API call."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._armed: set[int] = set()
        self._ids = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, due: float, callback: Callable[[], None]) -> int:
        """Run `callback` at `due` (monotonic) unless disarmed first; return the id to disarm it with."""
        with self._wake:
            if self._thread is None or not self._thread.is_alive():  # none yet, or lost in a fork
                self._thread = threading.Thread(target=self._run, name="credbot-mail-watchdog", daemon=True)
                self._thread.start()
            ident = next(self._ids)
            heapq.heappush(self._heap, (due, ident, callback))
            self._armed.add(ident)
            if self._heap[0][1] == ident:
                self._wake.notify()
            return ident

    def disarm(self, ident: int) -> bool:
        """Cancel `ident`; False if its callback already ran (callbacks run under the lock)."""
        with self._wake:
            if ident not in self._armed:
                return False
            self._armed.discard(ident)
            return True

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)  # disarmed: drop lazily
                if not self._heap:
                    self._wake.wait()
                    continue
                due, ident, callback = self._heap[0]
                if (wait := due - time.monotonic()) > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._armed.discard(ident)
                try:
                    callback()
                except Exception:  # pragma: no cover - a callback only shuts a socket
                    log.exception("mail watchdog callback failed")


_WATCHDOG = _Watchdog()


class SendGridTransport:
    """Sends through SendGrid's v3 Mail Send API (bodies built with the `sendgrid` package's helpers).

    Each calling thread keeps one persistent HTTP/1.1 connection (a TLS handshake per email would cost
    more CPU than the rest of the call). A connection is dropped after any error, timeout or answer
    that says `Connection: close`, so a connection is reused only after its last answer was read in
    full. A request on a reused connection that the server had closed while idle (no byte of answer)
    is sent once more on a fresh connection at once. Each call is bounded as a whole (connect, send,
    read) by SENDGRID_TIMEOUT_SECONDS: a shared watchdog shuts the socket at the deadline, so a server
    that drips its answer cannot hold a send. Retries 429 (waiting until X-RateLimit-Reset, at most
    `max_rate_limit_wait` seconds), 5xx, connection errors and timeouts, `attempts` times in all with
    exponential backoff and jitter, resending the same body. Other 4xx answers fail at once: 401/403 as
    MailAuthError, the rest as MailRejected. When the retries run out after an attempt that may have
    been accepted (timeout or connection lost after the request was written, or a 5xx), the
    MailUnavailable raised is `in_doubt`.
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
        url = urllib.parse.urlsplit(self.host)
        self._https = url.scheme == "https"
        self._netloc = url.hostname or ""
        self._port = url.port
        self._path = url.path.rstrip("/") + MAIL_SEND_PATH
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
        # employee as written. No unsubscribe link either (an account-wide setting would add one): one
        # click would block every later credential email, and credential emails are not marketing.
        mail.tracking_settings = TrackingSettings(
            click_tracking=ClickTracking(False, False),
            open_tracking=OpenTracking(False),
            subscription_tracking=SubscriptionTracking(False),
        )
        if self.sandbox or email.bypass_bounce_list:
            mail.mail_settings = MailSettings(
                bypass_bounce_management=BypassBounceManagement(True) if email.bypass_bounce_list else None,
                sandbox_mode=SandBoxMode(True) if self.sandbox else None,
            )
        payload: dict[str, Any] = mail.get()  # sendgrid is untyped
        return payload

    def send(self, email: OutgoingEmail) -> str:
        """Send `email`; return SendGrid's X-Message-Id ("" if it gave none, as in sandbox mode)."""
        payload = json.dumps(self._body(email)).encode()
        doubt: list[bool] = []

        def attempt() -> str:
            try:
                return self._post(payload)
            except _Temporary as error:
                doubt.append(error.in_doubt)
                raise

        retrying = Retrying(
            retry=retry_if_exception_type(_Temporary),
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Temporary as error:
            reason = f"{error.reason} (gave up after {self.attempts} attempts)"
            raise MailUnavailable(reason, in_doubt=any(doubt)) from error

    def _connection(self) -> http.client.HTTPConnection:
        """This thread's connection: the open one, or a new one that connects on its first request."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        if self._https:
            context = ssl.create_default_context()
            connection = http.client.HTTPSConnection(
                self._netloc, self._port, timeout=self.timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(self._netloc, self._port, timeout=self.timeout)
        self._local.connection = connection
        return connection

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        self._local.connection = None
        connection.close()

    def _post(self, payload: bytes) -> str:
        """One request; once more on a fresh connection if a reused one turns out closed while idle."""
        deadline = time.monotonic() + self.timeout  # both requests share the call's deadline
        try:
            return self._request(self._connection(), payload, deadline)
        except _Stale as stale:
            log.debug("SendGrid closed an idle connection (%s); sending on a new one", stale.reason)
            try:
                return self._request(self._connection(), payload, deadline)
            except _Temporary as error:
                # The first request may have reached the server all the same: keep it in doubt.
                error.in_doubt = error.in_doubt or stale.in_doubt
                raise

    def _request(self, connection: http.client.HTTPConnection, payload: bytes, deadline: float) -> str:
        """One request on `connection`, ended by the watchdog at `deadline` (monotonic) whatever the
        server does."""
        reused = connection.sock is not None
        headers = {
            "Authorization": f"Bearer {self._api_key.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "credbot",
        }
        expired = threading.Event()
        watch = _WATCHDOG.arm(deadline, lambda: _abort(connection, expired))
        written = answered = False
        try:
            connection.request("POST", self._path, body=payload, headers=headers)
            written = True
            response = connection.getresponse()
            answered = True
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            _WATCHDOG.disarm(watch)
            self._discard(connection)
            if expired.is_set() or isinstance(error, TimeoutError):
                reason = f"SendGrid did not answer within {self.timeout:g} s ({self.host})"
            elif reused and not answered and isinstance(error, _IDLE_CLOSED):
                raise _Stale(str(error) or type(error).__name__, in_doubt=written) from None
            elif written:
                what = str(error) or type(error).__name__  # some exceptions carry no message
                reason = f"the connection to SendGrid at {self.host} was lost: {what}"
            else:
                reason = f"could not reach SendGrid at {self.host}: {error}"
            raise _Temporary(reason, in_doubt=written) from None
        if not _WATCHDOG.disarm(watch) or response.will_close:
            self._discard(connection)  # shut by the watchdog just after the answer, or closing anyway
        if response.status in (200, 202):
            return response.getheader("X-Message-Id") or ""
        raise _classify(response.status, response.reason, body, response.headers)

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


def _abort(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The deadline passed: shut the socket, which ends whatever read or write is waiting on it."""
    expired.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _classify(status: int, text: str, body: bytes, headers: http.client.HTTPMessage) -> MailError:
    """The MailError for an HTTP answer, with SendGrid's own reasons from its `errors` JSON."""
    reason = f"SendGrid {status}: {_api_reasons(body) or inert(text)}"
    if status in (401, 403):
        return MailAuthError(reason + " (check SENDGRID_API_KEY and its Mail Send permission)")
    if status == 429:
        return _Temporary(reason, _reset_at(headers))
    if status >= 500:
        return _Temporary(reason, in_doubt=True)
    if status >= 400:
        return MailRejected(reason)
    return _Temporary(f"SendGrid answered {status}", in_doubt=True)


def _api_reasons(body: bytes | str | None) -> str:
    """`errors[].message` (and field) from a SendGrid error answer, made inert (it reaches Slack and the
    terminal); never anything else of the body."""
    try:
        errors = json.loads(body or b"").get("errors") or []
    except (ValueError, AttributeError):
        return ""
    reasons = []
    for item in errors if isinstance(errors, list) else []:
        if isinstance(item, dict) and item.get("message"):
            field = item.get("field")
            reasons.append(f"{item['message']} ({field})" if field else str(item["message"]))
    return inert("; ".join(reasons), 500)


def _reset_at(headers: http.client.HTTPMessage) -> float | None:
    try:
        return float(headers.get("X-RateLimit-Reset", ""))
    except ValueError:
        return None
