"""The mail package: rendering, the outbox transport and the SendGrid transport against the stand-in."""

from __future__ import annotations

import email
import json
import logging
import socket
import stat
import threading
import time
from dataclasses import replace
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.mail import (
    MailAuthError,
    MailRejected,
    MailUnavailable,
    OutboxTransport,
    OutgoingEmail,
    SendGridTransport,
    make_transport,
    render_email,
)
from bot.mail.sendgrid import recipient_name
from bot.settings import Settings
from models import utcnow
from tests.credentials_helpers import body_text
from tests.standins.sendgrid import SendGridStandIn, validate_mail_send

SECRET = "Secret7PasswordXyz"


def mail_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": "sqlite://", "sendgrid_api_key": None}
    return Settings(_env_file=None, **{**values, **overrides})


def sendgrid_settings(standin: SendGridStandIn, **overrides: object) -> Settings:
    return mail_settings(
        sendgrid_api_key=standin.api_key,
        sendgrid_api_host=standin.url,
        sendgrid_timeout_seconds=0.5,
        email_from="hr@example.com",
        email_from_name="Example HR",
        **overrides,
    )


def make_email(to: str = "ada@example.com", **overrides: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "to_address": to,
        "to_name": "Ada Lovelace",
        "subject": "Welcome",
        "text": f"Your password: {SECRET}",
        "html": f"<p>Your password: <b>{SECRET}</b></p>",
        "category": "credbot-welcome",
        "custom_args": {"batch_id": "7", "delivery_id": "42"},
    }
    return OutgoingEmail(**{**values, **overrides})


class Sleeps:
    """Records the waits tenacity asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def transport_for(
    standin: SendGridStandIn, sleeps: Sleeps | None = None, **settings: Any
) -> SendGridTransport:
    return SendGridTransport(
        sendgrid_settings(standin, **settings), attempts=3, backoff_seconds=0.01, sleep=sleeps or Sleeps()
    )


# --- rendering -------------------------------------------------------------------------------------------


def test_templates_escape_user_data_in_html_only() -> None:
    text, html = render_email(
        "welcome",
        company="A&B <Corp>",
        first_name="<script>alert(1)</script>",
        mode="password",
        password="p<&>",
        setup_url=None,
        expires_at=utcnow(),
        sign_in_url="https://portal.example.com/login?a=1&b=2",
    )
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "p&lt;&amp;&gt;" in html and "login?a=1&amp;b=2" in html
    assert "<script>alert(1)</script>" in text and "p<&>" in text and "A&B <Corp>" in text


def test_welcome_says_which_mode_and_username_email_is_separate() -> None:
    common = {
        "company": "Acme",
        "first_name": "Ada",
        "sign_in_url": "https://p/login",
        "expires_at": utcnow(),
    }
    text, _ = render_email("welcome", mode="link", password=None, setup_url="https://p/setup/tok", **common)
    assert "https://p/setup/tok" in text and "single-use link" in text and "temporary password" not in text
    text, html = render_email("welcome", mode="password", password="Pw", setup_url=None, **common)
    assert "temporary password" in text and "https://p/login" in text and "UTC" in text
    text, html = render_email("username", mode="password", username="alovelace", **common)
    assert "alovelace" in text and "alovelace" in html and "https://p/login" in html


def test_email_repr_leaves_out_the_body() -> None:
    shown = repr(make_email())
    assert SECRET not in shown and "ada@example.com" in shown


# --- outbox -------------------------------------------------------------------------------------------------


def test_outbox_writes_a_readable_multipart_eml(tmp_path: Path) -> None:
    outbox = tmp_path / "new" / "outbox"
    message_id = OutboxTransport(outbox, "hr@example.com", "Example HR").send(make_email())
    (path,) = outbox.iterdir()
    assert path.name.endswith(f"-credbot-welcome-{message_id.split('@')[0]}.eml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert b"\r\n" in raw
    message = email.message_from_bytes(raw, policy=default)
    assert message["Message-ID"] == f"<{message_id}>"
    assert message["From"] == "Example HR <hr@example.com>"
    assert message["To"] == "Ada Lovelace <ada@example.com>"
    assert message["Subject"] == "Welcome" and message["Date"]
    assert message["X-Credbot-Delivery-Id"] == "42" and message["X-Credbot-Category"] == "credbot-welcome"
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert SECRET in body_text(message)
    assert f"<b>{SECRET}</b>" in body_text(message, "html")


def test_outbox_is_thread_safe_with_unique_names(tmp_path: Path) -> None:
    transport = OutboxTransport(tmp_path, "hr@example.com", "HR")
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda: ids.extend(transport.send(make_email()) for _ in range(10)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 80 and len(list(tmp_path.glob("*.eml"))) == 80


def test_an_unwritable_outbox_is_a_mail_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(MailUnavailable, match="could not write to the outbox") as caught:
        OutboxTransport(blocker / "outbox", "hr@example.com", "HR").send(make_email())
    assert SECRET not in str(caught.value)


def test_make_transport_picks_outbox_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = mail_settings(outbox_dir=tmp_path / "box")
    with caplog.at_level(logging.WARNING, logger="bot.mail"):
        first, second = make_transport(settings), make_transport(settings)
    assert isinstance(first, OutboxTransport) and isinstance(second, OutboxTransport)
    notes = [r.getMessage() for r in caplog.records if "outbox" in r.getMessage() or "box" in r.getMessage()]
    assert len(notes) == 1 and str(tmp_path / "box") in notes[0]


def test_make_transport_picks_sendgrid_with_a_key(sendgrid_standin: SendGridStandIn) -> None:
    transport = make_transport(sendgrid_settings(sendgrid_standin))
    assert isinstance(transport, SendGridTransport)
    assert sendgrid_standin.api_key not in repr(transport)


# --- SendGrid -----------------------------------------------------------------------------------------------


def test_sendgrid_sends_a_valid_v3_request(sendgrid_standin: SendGridStandIn) -> None:
    message_id = transport_for(sendgrid_standin).send(make_email())
    (body,) = sendgrid_standin.messages
    assert message_id and body["message_id"] == message_id
    assert sendgrid_standin.invalid == []
    assert body["from"] == {"email": "hr@example.com", "name": "Example HR"}
    assert body["personalizations"][0]["to"] == [{"email": "ada@example.com", "name": "Ada Lovelace"}]
    assert body["subject"] == "Welcome"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["custom_args"] == {"batch_id": "7", "delivery_id": "42"}
    assert body["categories"] == ["credbot-welcome"]
    assert "mail_settings" not in body


def test_sendgrid_sandbox_mode_is_accepted_with_200(sendgrid_standin: SendGridStandIn) -> None:
    message_id = transport_for(sendgrid_standin, sendgrid_sandbox=True).send(make_email())
    (body,) = sendgrid_standin.messages
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert [r.status for r in sendgrid_standin.requests] == [200]
    assert message_id == ""


def test_sendgrid_waits_for_the_rate_limit_reset_then_succeeds(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.answer(429, reset_in=30)
    sleeps = Sleeps()
    before = time.time()
    message_id = transport_for(sendgrid_standin, sleeps).send(make_email())
    assert message_id and [r.status for r in sendgrid_standin.requests] == [429, 202]
    (wait,) = sleeps.waits
    reset_at = int(before + 30)
    assert reset_at - time.time() - 1 <= wait <= reset_at - before + 0.25


def test_sendgrid_caps_a_far_rate_limit_reset(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.answer(429, reset_in=3600)
    sleeps = Sleeps()
    transport = SendGridTransport(sendgrid_settings(sendgrid_standin), max_rate_limit_wait=5, sleep=sleeps)
    assert transport.send(make_email())
    assert 5 <= sleeps.waits[0] <= 5.25


def test_sendgrid_retries_server_errors_with_backoff(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.answer(500, times=2)
    sleeps = Sleeps()
    assert transport_for(sendgrid_standin, sleeps).send(make_email())
    assert [r.status for r in sendgrid_standin.requests] == [500, 500, 202]
    assert len(sleeps.waits) == 2 and all(w > 0 for w in sleeps.waits)


def test_sendgrid_gives_up_after_the_attempts(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.answer(503, times=None, errors=[{"message": "Service is down"}])
    with pytest.raises(MailUnavailable, match=r"SendGrid 503: Service is down \(gave up after 3 attempts\)"):
        transport_for(sendgrid_standin).send(make_email())
    assert len(sendgrid_standin.requests) == 3 and sendgrid_standin.messages == []


def test_sendgrid_bad_request_fails_at_once_with_the_api_reason(sendgrid_standin: SendGridStandIn) -> None:
    errors = [{"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email"}]
    sendgrid_standin.answer(400, errors=errors)
    with pytest.raises(MailRejected) as caught:
        transport_for(sendgrid_standin).send(make_email())
    assert caught.value.reason == (
        "SendGrid 400: Does not contain a valid address. (personalizations.0.to.0.email)"
    )
    assert SECRET not in str(caught.value)
    assert len(sendgrid_standin.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_sendgrid_auth_errors_are_not_retried(sendgrid_standin: SendGridStandIn, status: int) -> None:
    sendgrid_standin.answer(status, errors=[{"message": "access forbidden"}])
    with pytest.raises(MailAuthError, match=f"SendGrid {status}: access forbidden"):
        transport_for(sendgrid_standin).send(make_email())
    assert len(sendgrid_standin.requests) == 1


def test_sendgrid_wrong_key_is_an_auth_error(sendgrid_standin: SendGridStandIn) -> None:
    settings = sendgrid_settings(sendgrid_standin).model_copy(
        update={"sendgrid_api_key": SecretStr("SG.wrong")}
    )
    with pytest.raises(MailAuthError, match="wrong credentials"):
        SendGridTransport(settings, sleep=Sleeps()).send(make_email())


def test_sendgrid_timeout_is_retried_then_given_up(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.hang_seconds = 1.5
    sendgrid_standin.answer(202, hang=True)
    assert transport_for(sendgrid_standin).send(make_email())
    sendgrid_standin.answer(202, hang=True, times=None)
    with pytest.raises(MailUnavailable, match=r"did not answer within 0.5 s .*gave up after 3 attempts"):
        transport_for(sendgrid_standin).send(make_email())


def test_sendgrid_unreachable_host_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = mail_settings(sendgrid_api_key="SG.x", sendgrid_api_host=f"http://127.0.0.1:{port}")
    transport = SendGridTransport(settings, attempts=2, sleep=Sleeps())
    with pytest.raises(MailUnavailable, match="could not reach SendGrid") as caught:
        transport.send(make_email())
    assert not caught.value.in_doubt  # nothing was written: it cannot have been accepted


def test_sendgrid_bounds_the_whole_call_when_the_answer_drips(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.answer(202, drip=True, times=None)  # a byte every 0.25 s: each read is quick
    started = time.monotonic()
    with pytest.raises(MailUnavailable, match=r"did not answer within 0.5 s") as caught:
        transport_for(sendgrid_standin).send(make_email())
    assert time.monotonic() - started < 3 * 0.5 + 1.0  # three attempts, each ended at its deadline
    assert caught.value.in_doubt
    bodies = sendgrid_standin.messages
    assert len(bodies) == 3 and all(b["content"] == bodies[0]["content"] for b in bodies)  # the same message


def test_sendgrid_connection_lost_after_the_request_is_in_doubt(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.answer(202, drop=True, times=None)
    with pytest.raises(MailUnavailable, match="was lost") as caught:
        transport_for(sendgrid_standin).send(make_email())
    assert caught.value.in_doubt and len(sendgrid_standin.messages) == 3


@pytest.mark.parametrize(("status", "in_doubt"), [(503, True), (429, False)])
def test_sendgrid_server_errors_are_in_doubt_rate_limits_are_not(
    sendgrid_standin: SendGridStandIn, status: int, in_doubt: bool
) -> None:
    sendgrid_standin.answer(status, times=None, reset_in=0)
    with pytest.raises(MailUnavailable) as caught:
        transport_for(sendgrid_standin).send(make_email())
    assert caught.value.in_doubt is in_doubt


def test_sendgrid_sends_from_many_threads_at_once(sendgrid_standin: SendGridStandIn) -> None:
    transport = transport_for(sendgrid_standin)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for n in range(5):
                transport.send(make_email(to=f"user{index}.{n}@example.com"))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(sendgrid_standin.messages) == 30
    assert sendgrid_standin.invalid == []


def test_sendgrid_reuses_one_connection_per_thread(sendgrid_standin: SendGridStandIn) -> None:
    transport = transport_for(sendgrid_standin)
    ids = [transport.send(make_email(to=f"user{n}@example.com")) for n in range(5)]
    assert len(set(ids)) == 5 and len(sendgrid_standin.messages) == 5
    assert sendgrid_standin.connections == 1

    sendgrid_standin.answer(400)  # a refusal, read in full, leaves the connection fit for reuse
    with pytest.raises(MailRejected):
        transport.send(make_email())
    transport.send(make_email())
    assert sendgrid_standin.connections == 1

    other = threading.Thread(target=transport.send, args=(make_email(to="other@example.com"),))
    other.start()
    other.join()
    assert sendgrid_standin.connections == 2 and len(sendgrid_standin.messages) == 7


def test_sendgrid_replaces_a_connection_closed_while_idle(sendgrid_standin: SendGridStandIn) -> None:
    sleeps = Sleeps()
    transport = transport_for(sendgrid_standin, sleeps)
    transport.send(make_email(to="first@example.com"))
    closed, until = 0, time.monotonic() + 2
    while not closed and time.monotonic() < until:  # the server's thread turns to wait for a request
        closed = sendgrid_standin.close_idle_connections()
        time.sleep(0.02)
    assert closed == 1
    assert transport.send(make_email(to="second@example.com"))
    assert [m["personalizations"][0]["to"][0]["email"] for m in sendgrid_standin.messages] == [
        "first@example.com",
        "second@example.com",
    ]  # sent once: the closed connection never carried it to the server
    assert sendgrid_standin.connections == 2 and sleeps.waits == []  # at once, not as a retry


def test_sendgrid_drops_a_connection_after_a_timeout(sendgrid_standin: SendGridStandIn) -> None:
    sendgrid_standin.hang_seconds = 1.0
    sendgrid_standin.answer(202, hang=True)  # answered after the deadline: never read on a reused one
    transport = transport_for(sendgrid_standin)
    first, second = transport.send(make_email()), transport.send(make_email())
    assert first and second and first != second
    assert sendgrid_standin.connections == 2  # the timed-out one was dropped, its successor reused


def test_sendgrid_logs_neither_body_nor_key(
    sendgrid_standin: SendGridStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sendgrid_standin.answer(500)
    transport_for(sendgrid_standin).send(make_email())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "retrying" in logged
    assert SECRET not in logged and sendgrid_standin.api_key not in logged


def test_the_standin_refuses_what_sendgrid_would_refuse(sendgrid_standin: SendGridStandIn) -> None:
    transport = transport_for(sendgrid_standin)
    good = transport._body(make_email())
    assert validate_mail_send(good, "application/json") == []
    html_first = {**good, "content": list(reversed(good["content"]))}
    no_sender = {key: value for key, value in good.items() if key != "from"}
    no_recipient = {**good, "personalizations": [{"to": []}]}
    bad_args = {**good, "custom_args": {"delivery_id": 42}}
    for body, problem in [
        (html_first, "content must start with text/plain"),
        (no_sender, "from.email is required"),
        (no_recipient, "personalizations[].to must be a non-empty list"),
        (bad_args, "custom_args must map names to strings"),
    ]:
        assert any(problem in found for found in validate_mail_send(body, "application/json")), problem
    assert validate_mail_send(good, "text/plain") != []


# --- recipient names and tracking ---------------------------------------------------------------------------

HR_NAMES = ["Robert Downey, Jr.", "Semi Colon; Name", "Tab\tand\nnew line", "Zoë Ñúñez, PhD", 'Say "hi", Ada']


def test_the_standin_drops_what_sendgrid_drops(sendgrid_standin: SendGridStandIn) -> None:
    """SendGrid answers 202 to a raw `,`/`;` name and then drops the message: so does the stand-in."""
    transport = transport_for(sendgrid_standin)
    body = transport._body(make_email())
    for name in ["Robert Downey, Jr.", "Semi Colon; Name", "Bell\x07"]:
        raw = {**body, "personalizations": [{"to": [{"email": "ada@example.com", "name": name}]}]}
        transport._post(json.dumps(raw).encode())  # accepted: no exception
    assert [r.status for r in sendgrid_standin.requests] == [202, 202, 202]
    assert sendgrid_standin.messages == [] and len(sendgrid_standin.dropped) == 3
    events = sendgrid_standin.events()
    assert [e["event"] for e in events] == ["processed", "dropped"] * 3
    assert {e["reason"] for e in events if e["event"] == "dropped"} == {"Invalid"}


@pytest.mark.parametrize("name", HR_NAMES)
def test_recipient_names_reach_sendgrid_in_a_form_it_delivers(
    sendgrid_standin: SendGridStandIn, name: str
) -> None:
    transport_for(sendgrid_standin).send(make_email(to_name=name))
    assert sendgrid_standin.dropped == []
    (body,) = sendgrid_standin.messages
    (to,) = body["personalizations"][0]["to"]
    assert to["email"] == "ada@example.com"
    sent = to.get("name")
    assert sent is None or not any(ord(char) < 32 for char in sent)
    if sent and ("," in sent or ";" in sent):
        assert sent.startswith('"') and sent.endswith('"') and sent.count('"') == 2


def test_recipient_name_rules() -> None:
    assert recipient_name("Ada Lovelace") == "Ada Lovelace"
    assert recipient_name("Robert Downey, Jr.") == '"Robert Downey, Jr."'
    assert recipient_name("Semi Colon; Name") == '"Semi Colon; Name"'
    assert recipient_name("Tab\tand\r\nnew line") == "Tab and new line"
    assert recipient_name("O'Brien (HR)") == "O'Brien (HR)"
    assert recipient_name('Say "hi", Ada') is None  # cannot be quoted safely: no name
    assert recipient_name("\x00\x1f") is None
    assert recipient_name("") is None


def test_credential_emails_turn_click_open_and_subscription_tracking_off(
    sendgrid_standin: SendGridStandIn,
) -> None:
    """No unsubscribe link either: an account-wide setting would add one, and one click would block every
    later credential email to that address."""
    transport_for(sendgrid_standin).send(make_email())
    (body,) = sendgrid_standin.messages
    assert body["tracking_settings"] == {
        "click_tracking": {"enable": False, "enable_text": False},
        "open_tracking": {"enable": False},
        "subscription_tracking": {"enable": False},
    }
    assert "mail_settings" not in body  # no bypass unless the admin confirmed a bounced address


def test_a_confirmed_bounced_address_bypasses_the_bounce_list_only(sendgrid_standin: SendGridStandIn) -> None:
    transport_for(sendgrid_standin).send(replace(make_email(), bypass_bounce_list=True))
    (body,) = sendgrid_standin.messages
    assert body["mail_settings"] == {"bypass_bounce_management": {"enable": True}}
    assert sendgrid_standin.invalid == []
