"""Emailing credentials: previews, batches, sending through both transports, failures and resends."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.audit import AuditAction
from bot.context import Context
from bot.installation import identity
from bot.mail import OutgoingEmail
from bot.passwords import verify_password
from bot.sending.batches import (
    DeliveryOutcome,
    DuplicateBatchError,
    request_stop,
    start_batch,
)
from bot.sending.outcomes import ADDRESS_CHANGED, INTERRUPTED
from bot.sending.recipients import never_emailed_employee_ids, preview
from bot.sending.sender import run_batch
from models import (
    Account,
    AccountStatus,
    BatchSource,
    BatchStatus,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    Employee,
    SetupLink,
    utcnow,
)
from tests.builders import add_employee, address_rule, audit_events, present
from tests.credentials_helpers import (
    SETUP_LINK,
    dump_database,
    outbox_messages,
    outbox_text,
    password_in,
    send_credentials,
    sendgrid_context,
    sendgrid_transport,
    standin_text,
)
from tests.standins.sendgrid import SendGridStandIn
from tests.waiting import wait_until

ACTOR = "cli:tester"


def account_of(session: Session, employee: Employee) -> Account:
    session.expire_all()
    return session.scalars(sa.select(Account).where(Account.employee_id == employee.id)).one()


def delivery_of(session: Session, batch_id: int, employee: Employee) -> Delivery:
    session.expire_all()
    return session.scalars(
        sa.select(Delivery).where(Delivery.batch_id == batch_id, Delivery.employee_id == employee.id)
    ).one()


def actions(session: Session) -> list[str]:
    return [event.action for event in audit_events(session)]


# --- who can be mailed -----------------------------------------------------------------------------------


def test_preview_gives_reasons_and_normalised_addresses(session: Session) -> None:
    ok = add_employee(session, "1", email="Ada.Lovelace@EXAMPLE.com")
    no_account = add_employee(session, "2", "Alan", "Turing", username=None)
    inactive = add_employee(session, "3", "Grace", "Hopper", active=False)
    disabled = add_employee(session, "4", "Edsger", "Dijkstra", status=AccountStatus.DISABLED)
    no_email = add_employee(session, "5", "Barbara", "Liskov", email=None)
    bad_email = add_employee(session, "6", "Donald", "Knuth", email="knuth at example")
    ids = [bad_email.id, ok.id, no_account.id, inactive.id, disabled.id, no_email.id, 999_999]
    recipients = preview(session, ids, address_rule())
    assert [r.employee_number for r in recipients] == ["6", "1", "2", "3", "4", "5"]
    by_number = {r.employee_number: r for r in recipients}
    assert by_number["1"].problem is None and by_number["1"].address == "Ada.Lovelace@example.com"
    assert by_number["1"].username == "user1" and by_number["1"].name == "Ada Lovelace"
    assert by_number["2"].problem == "no account" and by_number["2"].username is None
    assert by_number["3"].problem == "employee inactive"
    assert by_number["4"].problem == "account disabled"
    assert by_number["5"].problem == "no address" and by_number["5"].address is None
    assert present(by_number["6"].problem).startswith("invalid address: ") and by_number["6"].address is None


def test_never_emailed_lists_only_active_unsent_accounts(context: Context, session: Session) -> None:
    fresh = add_employee(session, "1", "Zed", "Zimmer")
    second = add_employee(session, "2", "Amy", "Adams")
    add_employee(session, "3", username=None)
    add_employee(session, "4", "In", "Active", active=False)
    add_employee(session, "5", "Dis", "Abled", status=AccountStatus.DISABLED)
    emailed = add_employee(session, "6", "Old", "Hand")
    account_of(session, emailed).credentials_emailed_at = utcnow()
    session.commit()
    assert never_emailed_employee_ids(session) == [second.id, fresh.id]


# --- sending through the outbox -------------------------------------------------------------------------


def test_outbox_send_leaves_two_emails_whose_password_works(context: Context, session: Session) -> None:
    employees = [add_employee(session, str(n), "Ada", f"Lovelace{n}") for n in range(3)]
    progress: list[DeliveryOutcome] = []
    summary = send_credentials(
        context, [e.id for e in employees], ACTOR, BatchSource.CLI, on_progress=progress.append
    )

    assert summary.status == BatchStatus.FINISHED and summary.error is None
    assert len(summary.sent) == 3 and summary.failed == [] and summary.skipped == []
    assert sorted(o.delivery_id for o in progress) == sorted(o.delivery_id for o in summary.sent)
    outbox = context.settings.outbox_dir
    assert len(outbox_messages(outbox)) == 6
    for employee in employees:
        account = account_of(session, employee)
        welcome = outbox_text(outbox, present(employee.email), "credbot-welcome")
        username = outbox_text(outbox, present(employee.email), "credbot-username")
        password = password_in(welcome)
        assert verify_password(password, account.password_hash)
        assert account.username not in welcome and account.username in username and password not in username
        assert context.settings.sign_in_url in welcome and context.settings.sign_in_url in username
        assert account.must_change_password and account.status == AccountStatus.INVITED
        assert account.pending_password_hash is None and account.pending_password_expires_at is None
        expected = utcnow() + timedelta(hours=context.settings.temp_password_ttl_hours)
        assert abs(present(account.temp_password_expires_at) - expected) < timedelta(minutes=1)
        assert account.credentials_emailed_by == ACTOR and account.credentials_emailed_at is not None
        delivery = delivery_of(session, summary.batch_id, employee)
        assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 2
        assert delivery.email_address == employee.email
        ids = {m["Message-ID"] for m in outbox_messages(outbox) if employee.email in m["To"]}
        assert ids == {f"<{delivery.welcome_message_id}>", f"<{delivery.username_message_id}>"}
    assert never_emailed_employee_ids(session) == []
    logged = actions(session)
    assert logged[0] == AuditAction.BATCH_STARTED and logged[-1] == AuditAction.BATCH_FINISHED
    assert logged.count(AuditAction.CREDENTIALS_SENT) == 3


@pytest.mark.parametrize("via", ["outbox", "sendgrid"])
def test_the_password_is_nowhere_but_in_the_email(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    caplog: pytest.LogCaptureFixture,
    via: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    employee = add_employee(session, "1")
    ctx = sendgrid_context(context, sendgrid_standin) if via == "sendgrid" else context
    summary = send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI)
    if via == "sendgrid":
        welcome = standin_text(sendgrid_standin, present(employee.email), "credbot-welcome")
    else:
        welcome = outbox_text(context.settings.outbox_dir, present(employee.email), "credbot-welcome")
    password = password_in(welcome)
    assert len(password) >= 16 and password in welcome
    assert verify_password(password, account_of(session, employee).password_hash)

    everything = dump_database(session)
    assert "user1" in everything  # the dump does see the data
    assert password not in everything
    logs = "\n".join(record.getMessage() for record in caplog.records)
    assert "delivery" in logs  # the logs were captured at DEBUG
    assert password not in logs
    assert password not in repr(summary)


def test_other_employees_are_unaffected_by_one_failure(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employees = [add_employee(session, str(n), "Ada", f"Lovelace{n}") for n in range(6)]
    bad = employees[3]
    errors = [{"message": "The to address is on a suppression list.", "field": "personalizations"}]
    sendgrid_standin.answer(400, to=bad.email, errors=errors, times=None)
    ctx = sendgrid_context(context, sendgrid_standin, mail_concurrency=3)
    summary = send_credentials(
        ctx, [e.id for e in employees], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx)
    )

    assert summary.status == BatchStatus.FINISHED
    assert [o.employee_number for o in summary.failed] == ["3"] and len(summary.sent) == 5
    reason = (
        "welcome email not sent: SendGrid 400: The to address is on a suppression list. (personalizations)"
    )
    assert summary.failed[0].error == reason
    delivery = delivery_of(session, summary.batch_id, bad)
    assert delivery.status == DeliveryStatus.FAILED and delivery.error == reason and delivery.attempts == 1
    account = account_of(session, bad)
    assert account.password_hash is None and account.pending_password_hash is None
    assert account.status == AccountStatus.PENDING and account.credentials_emailed_at is None
    assert never_emailed_employee_ids(session) == [bad.id]  # still selectable
    for employee in employees:
        if employee is not bad:
            password = password_in(standin_text(sendgrid_standin, present(employee.email), "credbot-welcome"))
            assert verify_password(password, account_of(session, employee).password_hash)
    assert len(sendgrid_standin.messages) == 10
    assert sendgrid_standin.invalid == []
    body = sendgrid_standin.sent_to(present(employees[0].email))[0]
    assert body["custom_args"] == {
        "credbot_instance": identity(context.settings, context.sessions, context.clock).instance_id,
        "credbot_batch": str(summary.batch_id),
        "credbot_delivery": str(delivery_of(session, summary.batch_id, employees[0]).id),
    }
    assert actions(session).count(AuditAction.CREDENTIALS_FAILED) == 1


def test_retries_then_success_are_invisible_to_the_batch(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employee = add_employee(session, "1")
    sendgrid_standin.answer(429, reset_in=0)
    sendgrid_standin.answer(500)
    ctx = sendgrid_context(context, sendgrid_standin)
    summary = send_credentials(
        ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx, attempts=3)
    )
    assert len(summary.sent) == 1
    assert [r.status for r in sendgrid_standin.requests] == [429, 500, 202, 202]
    delivery = delivery_of(session, summary.batch_id, employee)
    assert delivery.welcome_message_id == sendgrid_standin.messages[0]["message_id"]
    assert delivery.username_message_id == sendgrid_standin.messages[1]["message_id"]


def test_a_hanging_api_leaves_the_delivery_in_doubt_and_its_password_working(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employee = add_employee(session, "1")
    sendgrid_standin.hang_seconds = 0.6  # accepts, but only after the client gave up
    sendgrid_standin.answer(202, hang=True, times=None)
    ctx = sendgrid_context(context, sendgrid_standin, sendgrid_timeout_seconds=0.3)
    summary = send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    (doubt,) = summary.in_doubt
    assert present(doubt.error).startswith(
        "welcome email may have been delivered; the password in that email works"
    )
    assert "did not answer within 0.3 s" in present(doubt.error) and "gave up after 2 attempts" in present(
        doubt.error
    )
    assert summary.failed == [] and summary.sent == [] and summary.status == BatchStatus.FINISHED
    email = present(employee.email)
    wait_until(lambda: len(sendgrid_standin.sent_to(email)) >= 2, 5, "the hung request to be accepted")
    copies = sendgrid_standin.sent_to(email)
    assert len(copies) == 2  # the retry resent the same message: the same password
    assert password_in(copies[0]["content"][0]["value"]) == password_in(copies[1]["content"][0]["value"])
    account = account_of(session, employee)
    assert account.password_hash is None  # not promoted: nobody knows it arrived
    assert verify_password(password_in(copies[-1]["content"][0]["value"]), account.pending_password_hash)
    assert actions(session).count(AuditAction.CREDENTIALS_IN_DOUBT) == 1


def test_sandbox_mode_sends_with_200(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employee = add_employee(session, "1")
    ctx = sendgrid_context(context, sendgrid_standin, sendgrid_sandbox=True)
    summary = send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    assert len(summary.sent) == 1
    assert [r.status for r in sendgrid_standin.requests] == [200, 200]
    assert all(m["mail_settings"]["sandbox_mode"]["enable"] is True for m in sendgrid_standin.messages)


def test_an_auth_error_stops_the_whole_batch(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employees = [add_employee(session, str(n), "Ada", f"Lovelace{n}") for n in range(8)]
    sendgrid_standin.answer(
        401, times=None, errors=[{"message": "The provided authorization grant is invalid"}]
    )
    ctx = sendgrid_context(context, sendgrid_standin, mail_concurrency=2)
    progress: list[DeliveryOutcome] = []
    ids = [e.id for e in employees]
    transport = sendgrid_transport(ctx)
    summary = send_credentials(
        ctx, ids, ACTOR, BatchSource.CLI, transport=transport, on_progress=progress.append
    )

    everyone = summary.failed + summary.skipped
    assert sorted(o.delivery_id for o in progress) == sorted(o.delivery_id for o in everyone)
    reason = "SendGrid 401: The provided authorization grant is invalid (check SENDGRID_API_KEY"
    assert summary.status == BatchStatus.ABORTED and present(summary.error).startswith(reason)
    assert summary.sent == [] and 1 <= len(summary.failed) <= 2
    assert len(summary.failed) + len(summary.skipped) == 8
    assert all(present(o.error).startswith("not sent: " + reason) for o in summary.skipped)
    assert len(sendgrid_standin.requests) == len(summary.failed)  # no API call after the stop
    for employee in employees:
        account = account_of(session, employee)
        assert account.password_hash is None and account.pending_password_hash is None
    assert actions(session)[-1] == AuditAction.BATCH_ABORTED
    batch = session.get(CredentialBatch, summary.batch_id)
    assert present(batch).status == BatchStatus.ABORTED and present(batch).finished_at is not None


def test_a_stop_asked_for_elsewhere_stops_the_batch_cleanly(context: Context, session: Session) -> None:
    employees = [add_employee(session, str(n), "Ada", f"Lovelace{n}") for n in range(6)]

    class StopOnce:
        calls = 0

        def send(self, email: OutgoingEmail) -> str:
            self.calls += 1
            if self.calls == 1:  # Ctrl-C in the CLI following the batch, as it does it
                request_stop(context.sessions, batch_id, INTERRUPTED)
                time.sleep(1.5)  # the runner notices at its next heartbeat
            return f"id-{self.calls}"

    ctx = Context(context.settings.model_copy(update={"mail_concurrency": 1}), context.sessions)
    batch_id = start_batch(ctx, [e.id for e in employees], ACTOR, BatchSource.CLI)
    summary = run_batch(ctx, batch_id, transport=StopOnce())
    assert summary.status == BatchStatus.ABORTED and summary.error == INTERRUPTED
    (partial,) = summary.failed  # its welcome email was in flight: it went out, the username email did not
    assert present(partial.error).startswith("the welcome email was sent") and INTERRUPTED in present(
        partial.error
    )
    assert summary.sent == [] and len(summary.skipped) == 5
    assert all(o.error == f"not sent: {INTERRUPTED}" for o in summary.skipped)


def test_username_email_failure_is_reported_and_the_password_still_works(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employee = add_employee(session, "1")
    sendgrid_standin.answer(400, category="credbot-username", errors=[{"message": "Invalid to address"}])
    ctx = sendgrid_context(context, sendgrid_standin)
    summary = send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    (failed,) = summary.failed
    assert failed.error == (
        "the welcome email was sent and its temporary password works, but the username email was not: "
        "SendGrid 400: Invalid to address; send again to email both"
    )
    delivery = delivery_of(session, summary.batch_id, employee)
    assert delivery.welcome_message_id and delivery.username_message_id is None and delivery.attempts == 2
    password = password_in(standin_text(sendgrid_standin, present(employee.email), "credbot-welcome"))
    account = account_of(session, employee)
    assert verify_password(password, account.password_hash) and account.status == AccountStatus.INVITED


# --- resending --------------------------------------------------------------------------------------------


def test_a_failed_resend_keeps_the_earlier_password_and_a_good_one_replaces_it(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employee = add_employee(session, "1")
    ctx = sendgrid_context(context, sendgrid_standin)
    send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    first = password_in(standin_text(sendgrid_standin, present(employee.email), "credbot-welcome"))
    first_expiry = account_of(session, employee).temp_password_expires_at

    sendgrid_standin.answer(400, times=None, errors=[{"message": "Bounced address"}])
    summary = send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    assert present(summary.failed[0].error).startswith("welcome email not sent: SendGrid 400")
    account = account_of(session, employee)
    assert verify_password(first, account.password_hash)
    assert account.pending_password_hash is None and account.temp_password_expires_at == first_expiry

    sendgrid_standin.clear_answers()
    summary = send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    assert len(summary.sent) == 1
    second = password_in(standin_text(sendgrid_standin, present(employee.email), "credbot-welcome"))
    account = account_of(session, employee)
    assert second != first
    assert verify_password(second, account.password_hash) and not verify_password(
        first, account.password_hash
    )


def test_the_pending_hash_is_committed_before_the_email_is_handed_off(
    context: Context, session: Session
) -> None:
    employee = add_employee(session, "1")
    seen: list[str | None] = []

    class Spy:
        def send(self, email: OutgoingEmail) -> str:
            with context.sessions() as other:
                account = other.scalars(sa.select(Account).where(Account.employee_id == employee.id)).one()
                seen.append(account.pending_password_hash if email.category == "credbot-welcome" else "-")
            if email.category == "credbot-welcome":
                assert verify_password(password_in(email.text), seen[0])
            return "id"

    summary = send_credentials(context, [employee.id], ACTOR, BatchSource.CLI, transport=Spy())
    assert len(summary.sent) == 1 and seen[0] and seen[0].startswith("$argon2id$")


# --- batches ----------------------------------------------------------------------------------------------


def test_skipped_employees_are_recorded_and_never_mailed(context: Context, session: Session) -> None:
    ok = add_employee(session, "1")
    skipped = [
        add_employee(session, "2", "Alan", "Turing", username=None),
        add_employee(session, "3", "Grace", "Hopper", active=False),
        add_employee(session, "4", "Edsger", "Dijkstra", status=AccountStatus.DISABLED),
        add_employee(session, "5", "Barbara", "Liskov", email=None),
        add_employee(session, "6", "Donald", "Knuth", email="@@"),
    ]
    summary = send_credentials(context, [e.id for e in [ok, *skipped]], ACTOR, BatchSource.CLI)
    assert [o.employee_number for o in summary.sent] == ["1"]
    reasons = [present(o.error).split(":")[0] for o in summary.skipped]
    assert reasons == ["no account", "employee inactive", "account disabled", "no address", "invalid address"]
    assert len(outbox_messages(context.settings.outbox_dir)) == 2
    assert actions(session).count(AuditAction.CREDENTIALS_SKIPPED) == 5
    assert account_of(session, skipped[2]).password_hash is None


def test_an_address_changed_before_the_batch_started_is_skipped(context: Context, session: Session) -> None:
    employee = add_employee(session, "1")
    (shown,) = preview(session, [employee.id], address_rule())
    employee.email = "someone.else@example.com"
    session.commit()
    confirmed = {shown.employee_id: shown.address}
    summary = send_credentials(context, [employee.id], ACTOR, BatchSource.CLI, confirmed=confirmed)
    (skipped,) = summary.skipped
    assert skipped.error == ADDRESS_CHANGED and skipped.address == shown.address
    assert outbox_messages(context.settings.outbox_dir) == []


def test_an_address_changed_after_confirmation_is_skipped(context: Context, session: Session) -> None:
    employee = add_employee(session, "1")
    batch_id = start_batch(context, [employee.id], ACTOR, BatchSource.CLI)
    employee.email = "someone.else@example.com"
    session.commit()
    summary = run_batch(context, batch_id)
    assert summary.skipped[0].error == ADDRESS_CHANGED
    assert outbox_messages(context.settings.outbox_dir) == []


def test_the_same_idempotency_key_is_refused(context: Context, session: Session) -> None:
    employee = add_employee(session, "1")
    batch_id = start_batch(
        context, [employee.id], "U1", BatchSource.SLACK, channel_id="C1", idempotency_key="k-1"
    )
    with pytest.raises(DuplicateBatchError) as caught:
        start_batch(context, [employee.id], "U1", BatchSource.SLACK, channel_id="C1", idempotency_key="k-1")
    assert caught.value.batch_id == batch_id
    assert session.scalar(sa.select(sa.func.count()).select_from(CredentialBatch)) == 1


def test_concurrent_duplicates_start_one_batch(context: Context, session: Session) -> None:
    employee = add_employee(session, "1")
    results: list[object] = []

    def start() -> None:
        try:
            results.append(
                start_batch(context, [employee.id], "U1", BatchSource.SLACK, idempotency_key="same")
            )
        except DuplicateBatchError as error:
            results.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batch_ids = [r for r in results if isinstance(r, int)]
    assert len(batch_ids) == 1 and len(results) == 4
    assert all(r.batch_id == batch_ids[0] for r in results if isinstance(r, DuplicateBatchError))


def test_running_a_finished_batch_sends_nothing_again(context: Context, session: Session) -> None:
    employee = add_employee(session, "1")
    summary = send_credentials(context, [employee.id], ACTOR, BatchSource.CLI)
    again = run_batch(context, summary.batch_id)
    assert again == summary
    assert len(outbox_messages(context.settings.outbox_dir)) == 2


# --- link mode --------------------------------------------------------------------------------------------


def test_link_mode_emails_a_link_whose_hash_only_is_stored(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employee = add_employee(session, "1")
    ctx = sendgrid_context(context, sendgrid_standin, credential_mode="link")
    summary = send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    assert len(summary.sent) == 1
    welcome_body = sendgrid_standin.sent_to(present(employee.email))[0]
    assert welcome_body["subject"] == "Welcome to Example Corp Self-Service: set your password"
    welcome = welcome_body["content"][0]["value"]
    assert "temporary password" not in welcome and "single-use link" in welcome
    token = present(SETUP_LINK.search(welcome)).group(1)
    assert ctx.settings.setup_link_url(token) in welcome
    (link,) = session.scalars(sa.select(SetupLink)).all()
    assert link.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert link.sent_at is not None and link.used_at is None and link.revoked_at is None
    expected = utcnow() + timedelta(hours=ctx.settings.temp_password_ttl_hours)
    assert abs(link.expires_at - expected) < timedelta(minutes=1)
    assert token not in dump_database(session)
    account = account_of(session, employee)
    assert account.status == AccountStatus.INVITED and account.password_hash is None
    assert session.scalar(sa.select(CredentialBatch.mode)) == "link"

    # A resend revokes the older unused link; a failed one revokes its own link and keeps the older one.
    send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    sendgrid_standin.answer(400, errors=[{"message": "nope"}])
    send_credentials(ctx, [employee.id], ACTOR, BatchSource.CLI, transport=sendgrid_transport(ctx))
    session.expire_all()
    first, second, failed = session.scalars(sa.select(SetupLink).order_by(SetupLink.id)).all()
    assert first.revoked_at is not None
    assert second.revoked_at is None and second.sent_at is not None
    assert failed.revoked_at is not None and failed.sent_at is None
