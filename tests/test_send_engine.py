"""The send engine keeps its promise under concurrency, crashes, outages and half-broken mail servers.

The promise, checked employee by employee: the password in the newest welcome email the mail API
accepted works (as the password, or as a pending one that signs in), no other emailed password does,
and every delivery of every batch ended as sent, failed, skipped or in doubt with its reason.
Processes are real: `credbot` subprocesses, a worker killed with SIGKILL, a TCP proxy that drops the
database's connections.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bot import jobs
from bot.context import Context
from bot.credentials import HASH_THREAD_NAME
from bot.passwords import verify_password
from bot.portal.auth import SignInOutcome, sign_in
from bot.sending.batches import BatchSummary, start_batch
from bot.sending.jobs import enqueue_batch
from bot.sending.outcomes import EMAILED_SINCE, IN_PROGRESS, MAY_HAVE_ARRIVED
from bot.sending.sender import run_batch
from models import (
    Account,
    BatchSource,
    BatchStatus,
    CredentialBatch,
    Delivery,
    DeliveryStatus,
    Employee,
    make_engine,
    utcnow,
)
from models.session import make_session_factory
from tests.builders import add_employee, add_employee_rows, audit_events, present
from tests.credentials_helpers import (
    password_in,
    send_credentials,
    sendgrid_context,
    sendgrid_transport,
)
from tests.standins.sendgrid import SendGridStandIn
from tests.tcp_proxy import TcpProxy
from tests.waiting import wait_until

CREDBOT = str(Path(sys.executable).parent / "credbot")
EMAILED_SINCE_RE = re.compile(re.escape(EMAILED_SINCE).replace(r"\{\}", r"#\d+"))
FINAL = {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED, DeliveryStatus.IN_DOUBT}


def welcome_passwords(standin: SendGridStandIn, address: str) -> list[str]:
    """Passwords of the welcome emails the stand-in accepted for `address`, oldest first."""
    return [
        password_in(m["content"][0]["value"])
        for m in standin.sent_to(address)
        if "credbot-welcome" in m.get("categories", [])
    ]


def works(password: str, account: Account) -> bool:
    """Signs in: the account's password, or its pending password (promoted at sign-in)."""
    pending = account.pending_password_hash
    return verify_password(password, account.password_hash) or (
        pending is not None and verify_password(password, pending)
    )


def check_promise(ctx: Context, standin: SendGridStandIn, employees: list[Employee]) -> dict[str, int]:
    """Assert the promise for every employee; how many welcome emails each got (by address)."""
    copies: dict[str, int] = {}
    with ctx.sessions() as session:
        statuses = session.execute(sa.select(Delivery.status, Delivery.error)).all()
        assert {status for status, _ in statuses} <= FINAL, "a delivery did not end"
        assert all(error for status, error in statuses if status != DeliveryStatus.SENT)
        for employee in employees:
            account = session.scalars(sa.select(Account).where(Account.employee_id == employee.id)).one()
            email = present(employee.email)
            passwords = welcome_passwords(standin, email)
            copies[email] = len(passwords)
            if not passwords:
                assert account.password_hash is None and account.pending_password_hash is None
                continue
            newest = passwords[-1]
            assert works(newest, account), f"the newest emailed password of {employee.email} does not work"
            for older in set(passwords) - {newest}:
                assert not works(older, account), f"{employee.email} has two working passwords"
    return copies


def cli_env(ctx: Context, standin: SendGridStandIn, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "SENDGRID", "DATABASE"))}
    return {
        **env,
        "DATABASE_URL": ctx.settings.database_url,
        "OUTBOX_DIR": str(ctx.settings.outbox_dir),
        "SENDGRID_API_KEY": standin.api_key,
        "SENDGRID_API_HOST": standin.url,
        "SENDGRID_TIMEOUT_SECONDS": "5",
        **extra,
    }


def batch_for_workers(
    ctx: Context,
    standin: SendGridStandIn,
    employees: list[Employee],
    redis_url: str,
    namespace: str,
    **extra: str,
) -> tuple[int, dict[str, str]]:
    """A batch for `employees` enqueued on Redis, as the CLI does, and the environment of the `credbot
    worker` processes that are to send it (`extra` adds settings)."""
    jobs.configure(ctx, redis_url=redis_url, namespace=namespace, in_process=False)
    batch_id = start_batch(ctx, [e.id for e in employees], "cli:tester", BatchSource.CLI)
    enqueue_batch(ctx, batch_id)
    return batch_id, cli_env(ctx, standin, REDIS_URL=redis_url, REDIS_NAMESPACE=namespace, **extra)


def batch_ended(ctx: Context, batch_id: int) -> bool:
    with ctx.sessions() as check:
        return check.get_one(CredentialBatch, batch_id).status != BatchStatus.RUNNING


# --- two sends at once ------------------------------------------------------------------------------------


def test_two_confirmations_of_the_same_100_employees_in_the_same_second_email_each_once(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn, tmp_path: Path
) -> None:
    employees = add_employee_rows(session, 100)
    sendgrid_standin.delay = 0.05
    env = cli_env(context, sendgrid_standin, MAIL_CONCURRENCY="8")
    command = [CREDBOT, "credentials", "send", "--all-pending", "--yes"]
    sends = [
        subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [send.communicate(timeout=240)[0].decode() for send in sends]
    for send, output in zip(sends, outputs, strict=True):
        assert send.returncode == 0, output
    copies = check_promise(context, sendgrid_standin, employees)
    assert set(copies.values()) == {1}, "an employee confirmed twice was emailed twice"
    with context.sessions() as check:
        rows = check.execute(
            sa.select(Delivery.employee_id, Delivery.batch_id, Delivery.status, Delivery.error)
        ).all()
    busy = [row for row in rows if row.error == IN_PROGRESS]
    since = [row for row in rows if row.error and EMAILED_SINCE_RE.fullmatch(row.error)]
    sent = [row for row in rows if row.status == DeliveryStatus.SENT]
    assert len(sent) + len(busy) + len(since) == len(rows) >= 100  # the second may list fewer
    assert len({row.employee_id for row in sent}) == len(sent) == 100
    other = {row.batch_id for row in rows}
    for row in since:  # it names the other batch
        assert row.error == EMAILED_SINCE.format(f"#{(other - {row.batch_id}).pop()}")
    if since:  # the CLI that skipped them says why
        assert any("after you confirmed" in output for output in outputs), outputs


def test_a_second_batch_skips_an_employee_whose_send_is_in_flight(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    employee = add_employee(session, "1")
    sendgrid_standin.hang_seconds = 1.0
    sendgrid_standin.answer(202, hang=True, category="credbot-welcome")
    ctx = sendgrid_context(context, sendgrid_standin, sendgrid_timeout_seconds=5)
    first = start_batch(ctx, [employee.id], "cli:a", BatchSource.CLI)
    second = start_batch(ctx, [employee.id], "cli:b", BatchSource.CLI)
    slow = threading.Thread(target=run_batch, args=(ctx, first, sendgrid_transport(ctx)))
    slow.start()

    def in_flight() -> bool:
        with ctx.sessions() as check:
            return check.scalar(sa.select(Account.sending_delivery_id)) is not None

    wait_until(in_flight, 10, "the first send")
    summary = run_batch(ctx, second, sendgrid_transport(ctx))
    slow.join()
    assert [o.error for o in summary.skipped] == [IN_PROGRESS]
    check_promise(ctx, sendgrid_standin, [employee])


def test_a_running_batch_keeps_its_leases_and_a_second_runner_sends_nobody_twice(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn
) -> None:
    """Claimed deliveries wait for a mail thread far longer than a lease: renewals keep them this
    runner's, so a second runner of the same batch (a resume started by mistake) finds nothing to take."""
    employees = add_employee_rows(session, 8)
    sendgrid_standin.delay = 0.4  # a delivery holds its mail thread ~0.8 s; the last waits ~3 s
    ctx = sendgrid_context(
        context, sendgrid_standin, mail_concurrency=2, send_lease_seconds=1.2, sendgrid_timeout_seconds=5
    )
    batch_id = start_batch(ctx, [e.id for e in employees], "cli:tester", BatchSource.CLI)
    first = threading.Thread(target=run_batch, args=(ctx, batch_id, sendgrid_transport(ctx)))
    first.start()
    wait_until(lambda: len(sendgrid_standin.messages) >= 1, 10, "the first runner to send")
    expired = []
    second = None
    while first.is_alive():
        with ctx.sessions() as check:
            leases = check.scalars(
                sa.select(Delivery.lease_until).where(Delivery.status == DeliveryStatus.SENDING)
            ).all()
        now = utcnow()
        expired += [lease for lease in leases if lease is not None and lease < now]
        if second is None and len(sendgrid_standin.messages) >= 6:
            second = run_batch(ctx, batch_id, sendgrid_transport(ctx))  # while the first still runs
        time.sleep(0.05)
    first.join(30)
    assert not expired, "a claimed delivery's lease ran out while its runner was alive"
    assert second is not None and second.unfinished, "the second runner did not run beside the first"
    copies = check_promise(ctx, sendgrid_standin, employees)
    assert set(copies.values()) == {1}, copies  # nobody was mailed twice


# --- a worker at idle priority ---------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_a_worker_at_idle_priority_hashes_at_it_and_runs_the_rest_as_usual(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    employees = add_employee_rows(session, 4)
    batch_id, env = batch_for_workers(
        context, sendgrid_standin, employees, redis_server_url, redis_namespace, WORKER_IDLE_PRIORITY="true"
    )
    worker = subprocess.Popen(
        [CREDBOT, "worker", "--threads", "2"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: batch_ended(context, batch_id), 60, "the batch to end")
        hashing: list[int] = []
        others: list[int] = []
        for task in os.listdir(f"/proc/{worker.pid}/task"):
            name = Path(f"/proc/{worker.pid}/task/{task}/comm").read_text().strip()
            (hashing if name == HASH_THREAD_NAME else others).append(os.sched_getscheduler(int(task)))
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert "Hashing at idle priority (SCHED_IDLE)." in output
    assert len(sendgrid_standin.messages) == 8
    assert hashing and set(hashing) == {os.SCHED_IDLE}
    assert len(others) > 3 and set(others) == {os.SCHED_OTHER}  # main, job threads, mail threads, ...


# --- a worker killed mid-batch ----------------------------------------------------------------------------


def test_a_worker_killed_mid_batch_is_replaced_and_nobody_is_lost(
    context: Context,
    session: Session,
    sendgrid_standin: SendGridStandIn,
    redis_server_url: str,
    redis_namespace: str,
    tmp_path: Path,
) -> None:
    employees = add_employee_rows(session, 60)
    sendgrid_standin.delay = 0.1
    batch_id, env = batch_for_workers(
        context,
        sendgrid_standin,
        employees,
        redis_server_url,
        redis_namespace,
        MAIL_CONCURRENCY="6",
        SEND_LEASE_SECONDS="2",
    )

    def worker(name: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        return subprocess.Popen(
            [CREDBOT, "worker", "--threads", "2"], env=env, cwd=tmp_path, stdout=log, stderr=log
        )

    first = worker("first")
    try:
        wait_until(lambda: len(sendgrid_standin.messages) >= 40, 60, "the first worker to send")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    with context.sessions() as check:
        assert check.get_one(CredentialBatch, batch_id).status == BatchStatus.RUNNING
        in_flight = set(
            check.scalars(
                sa.select(Employee.email)
                .join(Delivery, Delivery.employee_id == Employee.id)
                .where(Delivery.status == DeliveryStatus.SENDING)
            )
        )
    second = worker("second")
    try:
        wait_until(
            lambda: batch_ended(context, batch_id), 90, "the batch to end after the first worker was killed"
        )
    finally:
        second.terminate()
        second.wait(30)
    with context.sessions() as check:
        batch = check.get(CredentialBatch, batch_id)
        assert present(batch).status == BatchStatus.FINISHED and present(batch).resumed >= 1
        statuses = check.scalars(sa.select(Delivery.status).where(Delivery.batch_id == batch_id)).all()
    assert set(statuses) == {DeliveryStatus.SENT} and len(statuses) == 60
    copies = check_promise(context, sendgrid_standin, employees)
    twice = {address for address, count in copies.items() if count > 1}
    assert all(copies.values())
    # At most the ones in flight got a second copy: per mail thread, the delivery it was sending and
    # the one before it, whose ending was still being written.
    assert twice <= in_flight and len(twice) <= 2 * 6


# --- the database away for 5 seconds ----------------------------------------------------------------------


@pytest.fixture
def outage_context(context: Context) -> Iterator[tuple[Context, Callable[[float], None]]]:
    """A context on the test's database and a function that takes that database away for N seconds.

    PostgreSQL is reached through a TCP proxy that resets every connection and refuses new ones;
    SQLite is held under an exclusive lock (every other connection waits or gets "database is locked").
    """
    url = make_url(context.settings.database_url)
    if not url.drivername.startswith("postgresql"):

        def lock_sqlite(seconds: float) -> None:
            engine = sa.create_engine(context.settings.database_url)
            with engine.connect() as connection:
                connection.exec_driver_sql("BEGIN EXCLUSIVE")
                time.sleep(seconds)
                connection.exec_driver_sql("COMMIT")
            engine.dispose()

        yield context, lock_sqlite
        return
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = context.settings.model_copy(update={"database_url": proxied})
    engine = make_engine(proxied, pool_size=settings.mail_concurrency + 8)

    def cut(seconds: float) -> None:
        proxy.outage()
        time.sleep(seconds)
        proxy.restore()

    yield Context(settings, make_session_factory(engine)), cut
    engine.dispose()
    proxy.close()


def test_a_five_second_database_outage_mid_batch_loses_nothing(
    outage_context: tuple[Context, Callable[[float], None]],
    session: Session,
    sendgrid_standin: SendGridStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx, outage = outage_context
    employees = add_employee_rows(session, 80)
    sendgrid_standin.delay = 0.05
    ctx = sendgrid_context(ctx, sendgrid_standin, mail_concurrency=8, sendgrid_timeout_seconds=5)
    batch_id = start_batch(ctx, [e.id for e in employees], "cli:tester", BatchSource.CLI)
    result: list[BatchSummary] = []
    runner = threading.Thread(target=lambda: result.append(run_batch(ctx, batch_id, sendgrid_transport(ctx))))
    runner.start()
    wait_until(lambda: len(sendgrid_standin.messages) >= 40, 60, "sending to start")
    before = len(sendgrid_standin.messages)
    outage(5.0)
    # The outage did hold the batch up: a mail thread sends at most two more employees (four emails)
    # before it waits for the database to record the first of them.
    assert len(sendgrid_standin.messages) <= before + 4 * 8
    runner.join(180)
    assert not runner.is_alive() and result, "the batch did not end"
    summary = result[0]
    assert summary.status == BatchStatus.FINISHED and len(summary.sent) == 80, summary
    check_promise(ctx, sendgrid_standin, employees)
    if ctx.settings.database_url.startswith("postgresql"):
        assert "database unavailable" in caplog.text  # the retries did happen


# --- half-broken mail servers -----------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["late", "drip"])
def test_a_late_or_dripping_server_ends_at_the_deadline_and_the_emailed_password_works(
    context: Context, session: Session, sendgrid_standin: SendGridStandIn, server: str
) -> None:
    employee = add_employee(session, "1")
    if server == "late":  # accepts after 1.3 s, with a 1 s timeout
        sendgrid_standin.hang_seconds = 1.3
        sendgrid_standin.answer(202, hang=True, times=None, category="credbot-welcome")
    else:  # accepts at once, then answers one byte every 0.3 s
        sendgrid_standin.drip_seconds = 0.3
        sendgrid_standin.answer(202, drip=True, times=None, category="credbot-welcome")
    ctx = sendgrid_context(context, sendgrid_standin, sendgrid_timeout_seconds=1.0)
    started = time.monotonic()
    summary = send_credentials(
        ctx, [employee.id], "cli:tester", BatchSource.CLI, transport=sendgrid_transport(ctx)
    )
    assert time.monotonic() - started < 2 * 1.0 + 2.0  # two attempts, each ended at its deadline
    (doubt,) = summary.in_doubt
    assert MAY_HAVE_ARRIVED in present(doubt.error) and "did not answer within 1 s" in present(doubt.error)
    email = present(employee.email)  # the late server accepts the retry's copy after the client gave up
    wait_until(lambda: len(welcome_passwords(sendgrid_standin, email)) >= 2, 5, "the second copy")
    passwords = welcome_passwords(sendgrid_standin, email)
    assert len(passwords) == 2 and len(set(passwords)) == 1  # the retry resent the same message
    check_promise(ctx, sendgrid_standin, [employee])
    with ctx.sessions() as check:
        username = check.scalars(sa.select(Account.username)).one()
    assert sign_in(ctx, username, passwords[-1]).outcome == SignInOutcome.MUST_CHANGE


def test_a_name_the_outbox_cannot_write_fails_with_its_reason_and_leaves_no_credential(
    context: Context, session: Session
) -> None:
    employee = add_employee(session, "1", "Ada", "Lovelace\nBcc: all@example.com", email="ada@example.com")
    summary = send_credentials(context, [employee.id], "cli:tester", BatchSource.CLI)
    (failed,) = summary.failed
    assert failed.error == "welcome email not sent: internal error (ValueError; see the logs)"
    with context.sessions() as check:
        account = check.scalars(sa.select(Account)).one()
        assert account.pending_password_hash is None and account.password_hash is None
    assert "credentials.failed" in [event.action for event in audit_events(context.sessions)]
