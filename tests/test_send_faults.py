"""The promise under the faults of a first month in production: a stalled worker, a deploy (SIGTERM),
the job queue away (at enqueue, mid-batch, during a portal password change), a short database outage
under the CLI, and a change of credential mode between two sends.

Processes are real (`credbot worker` and `credbot credentials send` subprocesses, PostgreSQL, Redis, the
SendGrid stand-in); the job queue or the database goes away through a TCP proxy the test cuts. Each
test checks the promise employee by employee (`check_promise`).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import sqlalchemy as sa
from flask import Flask
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bot import jobs, outbox
from bot.context import Context
from bot.portal import auth
from bot.settings import Settings
from models import (
    Account,
    AuditEvent,
    BatchSource,
    BatchStatus,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    OutboxJob,
)
from tests.builders import TEMP_PASSWORD, add_employee, add_employee_rows, add_person, present
from tests.credentials_helpers import (
    PASSWORD_LINE,
    password_in,
    send_credentials,
    sendgrid_context,
    sendgrid_transport,
)
from tests.portal_helpers import GOOD_PASSWORD, Browser, make_portal_app
from tests.slack_requests import RunningApp, serve_app, slack_settings
from tests.standins.sendgrid import API_KEY as SENDGRID_KEY
from tests.standins.sendgrid import SendGridStandIn
from tests.standins.slack import SlackStandIn
from tests.tcp_proxy import TcpProxy
from tests.test_send_engine import (
    CREDBOT,
    batch_ended,
    batch_for_workers,
    check_promise,
    cli_env,
    works,
)
from tests.test_slack_flow import open_picker, review
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
QUEUED = "it starts when the job queue is back"
SETUP_TOKEN = re.compile(r"/setup/([A-Za-z0-9_-]{20,})")


def postgres_only(ctx: Context) -> None:
    """A stopped process holding a SQLite write lock stops every other: these faults are PostgreSQL's."""
    if not ctx.settings.database_url.startswith("postgresql"):
        pytest.skip("worker processes stalled mid-transaction are a PostgreSQL scenario")


def start_worker(env: dict[str, str], tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    log: IO[bytes] = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [CREDBOT, "worker", "--threads", "2"], env=env, cwd=tmp_path, stdout=log, stderr=log
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def every_delivery_ended(ctx: Context) -> list[tuple[str, str | None]]:
    """Every delivery's (status, error); asserts each ended, with a reason unless sent."""
    with ctx.sessions() as check:
        rows = [(str(s), e) for s, e in check.execute(sa.select(Delivery.status, Delivery.error)).all()]
    assert all(s not in (DeliveryStatus.PENDING, DeliveryStatus.SENDING) for s, _ in rows), rows
    assert all(e for s, e in rows if s != DeliveryStatus.SENT), rows
    return rows


def taken_over(ctx: Context) -> bool:
    """Whether a delivery was claimed a second time (its fencing token raised again)."""
    with ctx.sessions() as check:
        return bool(check.scalar(sa.select(sa.func.count()).where(Delivery.fence > 1)))


def running_pid(ctx: Context) -> int:
    """The process id of the worker holding the batch's claims (`claimed_by` is host:pid:run)."""
    with ctx.sessions() as check:
        runner = check.scalars(
            sa.select(Delivery.claimed_by).where(Delivery.status == DeliveryStatus.SENDING).limit(1)
        ).one()
    return int(present(runner).split(":")[1])


def welcome_recipients(standin: SendGridStandIn) -> set[str]:
    """Everyone the stand-in accepted a welcome email for."""
    return {
        m["personalizations"][0]["to"][0]["email"]
        for m in standin.messages
        if "credbot-welcome" in m.get("categories", [])
    }


@pytest.fixture
def redis_proxy(redis_server_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A TCP proxy in front of Redis that the test cuts (the shared server is never touched), and the
    Redis URL through it."""
    url = make_url(redis_server_url.replace("redis://", "postgresql://", 1))
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 6379)
    yield proxy, f"redis://127.0.0.1:{proxy.port}/{url.database or 0}"
    proxy.close()


# --- a stalled worker ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lease", "freeze"), [(3.0, 4.5), (2.0, 5.0)])
def test_a_worker_stopped_past_its_lease_changes_no_account_when_it_resumes(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
    lease: float,
    freeze: float,
) -> None:
    """SIGSTOP past the lease (the issue's 60 s / 80 s, and 10 s / 25 s, scaled down), another worker
    takes the batch over, then SIGCONT: the stalled worker's late endings are superseded."""
    postgres_only(context)
    employees = add_employee_rows(session, 40)
    sendgrid_standin.delay = 0.2
    batch_id, env = batch_for_workers(
        context,
        sendgrid_standin,
        employees,
        redis_server_url,
        redis_namespace,
        MAIL_CONCURRENCY="4",
        SEND_LEASE_SECONDS=str(lease),
    )
    first = start_worker(env, tmp_path, "first")
    second = None
    try:
        wait_until(lambda: len(sendgrid_standin.messages) >= 12, 60, "the first worker to send")
        first.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        second = start_worker(env, tmp_path, "second")
        time.sleep(max(0.0, freeze - (time.monotonic() - stopped_at)))  # the stall itself
        wait_until(lambda: taken_over(context), 60, "the second worker to take claims over")
        first.send_signal(signal.SIGCONT)
        wait_until(lambda: batch_ended(context, batch_id), 90, "the batch to end")
        first.terminate()  # drains: its stalled mail threads end (superseded) before it exits
        assert first.wait(30) == 0
    finally:
        stop(first)
        if second is not None:
            stop(second)
    every_delivery_ended(context)
    copies = check_promise(context, sendgrid_standin, employees)
    assert all(copies.values()), copies
    with context.sessions() as check:
        superseded = check.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "credentials.superseded")
        ).all()
        sent = check.scalars(
            sa.select(Delivery.employee_id).where(Delivery.status == DeliveryStatus.SENT)
        ).all()
    assert sorted(sent) == sorted(e.id for e in employees)
    assert superseded, "the stalled worker had deliveries in flight: their late endings are superseded"
    assert all(event.details["reason"].startswith("superseded") for event in superseded)


# --- a deploy: SIGTERM mid-batch -------------------------------------------------------------------------


def test_sigterm_mid_batch_ends_in_flight_lets_go_of_the_rest_and_mails_nobody_twice(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    """With the default lease (60 s): the other worker takes the batch up at once, not after it (the
    20 s wait below)."""
    employees = add_employee_rows(session, 40)
    sendgrid_standin.delay = 0.3  # about 6 s for the batch: most of it is left at SIGTERM
    batch_id, env = batch_for_workers(
        context,
        sendgrid_standin,
        employees,
        redis_server_url,
        redis_namespace,
        MAIL_CONCURRENCY="4",
        WORKER_SHUTDOWN_SECONDS="8",
    )
    workers = [start_worker(env, tmp_path, name) for name in ("first", "second")]
    try:
        wait_until(lambda: len(sendgrid_standin.messages) >= 8, 60, "a worker to send")
        first = next(w for w in workers if w.pid == running_pid(context))
        (second,) = set(workers) - {first}
        first.send_signal(signal.SIGTERM)
        termed = time.monotonic()
        started = len(welcome_recipients(sendgrid_standin))
        assert first.wait(15) == 0
        took = time.monotonic() - termed
        assert took < 8 + 1, f"the worker took {took:.1f} s to exit"
        # Nobody new after SIGTERM: at most the 4 mail threads' next employees were already under way.
        assert len(welcome_recipients(sendgrid_standin)) <= started + 4
        at_exit = Counter(m["personalizations"][0]["to"][0]["email"] for m in sendgrid_standin.messages)
        with context.sessions() as check:
            kept = check.scalar(
                sa.select(sa.func.count()).where(
                    Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_by.contains(f":{first.pid}:")
                )
            )
        assert kept == 0, "the stopping worker let go of every claim"
        wait_until(lambda: batch_ended(context, batch_id), 20, "the other worker to end the batch")
        assert second.poll() is None
    finally:
        for worker in workers:
            stop(worker)
    rows = every_delivery_ended(context)
    assert {s for s, _ in rows} == {DeliveryStatus.SENT}
    copies = check_promise(context, sendgrid_standin, employees)
    assert set(copies.values()) == {1}, {a: n for a, n in copies.items() if n != 1}
    assert all(count in (0, 2) for count in at_exit.values()), "an employee's emails were cut in half"


# --- the job queue away --------------------------------------------------------------------------------


def test_the_cli_with_the_queue_away_queues_the_batch_and_a_rerun_mails_nobody_twice(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_proxy: tuple[TcpProxy, str],
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    proxy, proxied = redis_proxy
    employees = add_employee_rows(session, 8)
    session.commit()
    proxy.outage()
    env = cli_env(context, sendgrid_standin, REDIS_URL=proxied, REDIS_NAMESPACE=redis_namespace)
    command = [CREDBOT, "credentials", "send", "--all-pending", "--yes"]
    sends, logs = [], [tmp_path / f"send{n}.log" for n in (1, 2)]
    for log in logs:  # the admin runs it again during the outage
        with log.open("wb") as out:
            sends.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdout=out, stderr=out))

        def queued(log: Path = log) -> bool:
            return QUEUED in log.read_text()

        wait_until(queued, 30, "the CLI to say the batch is queued")
    with context.sessions() as check:
        assert len(check.scalars(sa.select(OutboxJob)).all()) == 2  # both wait in the outbox
    assert not sendgrid_standin.messages
    proxy.restore()
    worker = start_worker({**env, "REDIS_URL": redis_server_url}, tmp_path, "worker")
    try:
        for send in sends:
            send.wait(90)
    finally:
        stop(worker)
    for send, log in zip(sends, logs, strict=True):
        output = log.read_text()
        assert "Traceback" not in output, output
        assert send.returncode == 0, output
    every_delivery_ended(context)
    copies = check_promise(context, sendgrid_standin, employees)
    assert set(copies.values()) == {1}, copies
    with context.sessions() as check:
        assert check.scalars(sa.select(OutboxJob)).all() == []


def _batches(ctx: Context) -> int:
    with ctx.sessions() as check:
        return len(check.scalars(sa.select(CredentialBatch.id)).all())


@pytest.fixture
def queue_app(
    settings: Settings,
    slack_standin: SlackStandIn,
    sendgrid_standin: SendGridStandIn,
    redis_proxy: tuple[TcpProxy, str],
    redis_namespace: str,
) -> Iterator[RunningApp]:
    """The Slack app with its job queue (Redis) behind the proxy, mail to the SendGrid stand-in."""
    _, proxied = redis_proxy
    update = {
        "sendgrid_api_key": SecretStr(SENDGRID_KEY),
        "sendgrid_api_host": sendgrid_standin.url,
        "redis_url": proxied,
        "redis_namespace": redis_namespace,
    }
    for app in serve_app(slack_settings(settings, slack_standin, **update), slack_standin):
        jobs.configure(app.ctx, redis_url=proxied, namespace=redis_namespace, in_process=True)
        yield app


def test_send_emails_in_slack_with_the_queue_away_says_queued_and_sends_once_it_is_back(
    queue_app: RunningApp,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_proxy: tuple[TcpProxy, str],
) -> None:
    app = queue_app
    proxy, _ = redis_proxy
    employees = [add_employee(session, f"10{n:02d}", email=f"e{n}@example.com") for n in range(5)]
    session.commit()
    confirm = review(app, open_picker(app, " ".join(e.employee_number for e in employees)), {})
    proxy.outage()
    updates = len(app.slack.calls_to("views.update"))
    answer = app.requests.submit(confirm).json()
    assert "Sending started" in str(answer["view"])
    app.slack.wait_for_call("views.update", updates + 1)
    told = str(app.slack.last_view()) + str(app.slack.calls)
    assert "it starts when it is back" in told or "sending starts when it is back" in told
    assert "Nothing was sent. Please try again" not in told
    assert not sendgrid_standin.messages
    proxy.restore()
    relay = outbox.Relay(app.ctx, seconds=0.2).start()  # what every `credbot worker` runs
    try:
        wait_until(lambda: _all_batches_ended(app.ctx), 60, "the queued batch to be sent")
    finally:
        relay.stop()
    every_delivery_ended(app.ctx)
    copies = check_promise(app.ctx, sendgrid_standin, employees)
    assert set(copies.values()) == {1}, copies


def _all_batches_ended(ctx: Context) -> bool:
    with ctx.sessions() as check:
        statuses = check.scalars(sa.select(CredentialBatch.status)).all()
    return bool(statuses) and BatchStatus.RUNNING not in statuses


def test_the_queue_away_mid_batch_loses_nobody(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_proxy: tuple[TcpProxy, str],
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    proxy, proxied = redis_proxy
    employees = add_employee_rows(session, 40)
    sendgrid_standin.delay = 0.1
    batch_id, env = batch_for_workers(
        context, sendgrid_standin, employees, proxied, redis_namespace, MAIL_CONCURRENCY="4"
    )
    worker = start_worker(env, tmp_path, "worker")
    try:
        wait_until(lambda: len(sendgrid_standin.messages) >= 10, 60, "the worker to send")
        proxy.outage()
        time.sleep(3)  # the outage itself
        proxy.restore()
        wait_until(lambda: batch_ended(context, batch_id), 60, "the batch to end")
    finally:
        stop(worker)
    rows = every_delivery_ended(context)
    assert {s for s, _ in rows} == {DeliveryStatus.SENT}
    copies = check_promise(context, sendgrid_standin, employees)
    assert set(copies.values()) == {1}, copies


def test_a_password_change_with_the_queue_away_stands_and_its_notice_is_kept(
    context: Context,
    redis_proxy: tuple[TcpProxy, str],
    redis_namespace: str,
    sendgrid_standin: SendGridStandIn,
) -> None:
    proxy, proxied = redis_proxy
    ctx = sendgrid_context(context, sendgrid_standin)
    jobs.configure(ctx, redis_url=proxied, namespace=redis_namespace, in_process=True)
    add_person(ctx)
    portal: Flask = make_portal_app(ctx, TESTING=True)
    browser = Browser(portal.test_client())
    assert browser.sign_in("adoe", TEMP_PASSWORD).status_code == 303
    browser.get("/portal/password")
    proxy.outage()
    response = browser.post(
        "/portal/password",
        {"current_password": TEMP_PASSWORD, "new_password": GOOD_PASSWORD, "confirm_password": GOOD_PASSWORD},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/portal/"
    assert "Your password was changed" in browser.get("/portal/").text
    assert auth.sign_in(ctx, "adoe", GOOD_PASSWORD).outcome == auth.SignInOutcome.OK
    with ctx.sessions() as check:
        actions = check.scalars(sa.select(AuditEvent.action)).all()
        kept = check.scalars(sa.select(OutboxJob.job)).all()
    assert "portal.password_changed" in actions  # audited with the change, at once
    assert kept == ["bot.notices.send_notice"]
    proxy.restore()
    assert outbox.relay(ctx)  # what a worker's relay does once the queue is back
    wait_until(lambda: bool(sendgrid_standin.sent_to("alice.doe@example.com")), 30, "the notice")
    (notice,) = sendgrid_standin.sent_to("alice.doe@example.com")
    assert "credbot-password-changed" in notice.get("categories", [])


# --- a short database outage under the CLI, without Redis -----------------------------------------------


def test_the_cli_outlives_a_short_database_outage_without_redis(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn, tmp_path: Path
) -> None:
    postgres_only(context)
    employees = add_employee_rows(session, 40)
    session.commit()
    sendgrid_standin.delay = 0.1
    url = make_url(context.settings.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    env = cli_env(context, sendgrid_standin, DATABASE_URL=proxied, MAIL_CONCURRENCY="4")
    command = [CREDBOT, "credentials", "send", "--all-pending", "--yes"]
    try:
        send = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        wait_until(lambda: len(sendgrid_standin.messages) >= 16, 60, "sending to start")
        proxy.outage()
        time.sleep(3)  # the outage itself
        proxy.restore()
        output = send.communicate(timeout=120)[0].decode()
    finally:
        proxy.close()
    assert "Traceback" not in output, output
    assert send.returncode == 0, output
    assert "sent 40, failed 0, skipped 0" in output, output
    every_delivery_ended(context)
    copies = check_promise(context, sendgrid_standin, employees)
    assert all(copies.values())


# --- one live credential per account, across modes ------------------------------------------------------


@pytest.mark.parametrize("first", ["password", "link"])
def test_changing_the_credential_mode_leaves_one_live_credential(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn, first: str
) -> None:
    employee = add_employee(session, "1", email="ada@example.com")
    session.commit()
    second = "link" if first == "password" else "password"
    for mode in (first, second):
        ctx = sendgrid_context(context, sendgrid_standin, credential_mode=mode)
        summary = send_credentials(
            ctx, [employee.id], "cli:tester", BatchSource.CLI, transport=sendgrid_transport(ctx)
        )
        assert len(summary.sent) == 1, summary
    welcomes = [
        m["content"][0]["value"]
        for m in sendgrid_standin.sent_to("ada@example.com")
        if "credbot-welcome" in m.get("categories", [])
    ]
    (password,) = [password_in(text) for text in welcomes if PASSWORD_LINE.search(text)]
    (token,) = [match.group(1) for text in welcomes if (match := SETUP_TOKEN.search(text))]
    link_works = True
    try:
        auth.open_setup_link(context, token)
    except auth.SetupLinkInvalid:
        link_works = False
    with context.sessions() as check:
        account = check.scalars(sa.select(Account)).one()
    assert link_works == (second == "link"), "the link works only if it was emailed last"
    assert works(password, account) == (second == "password"), "the password works only if emailed last"
