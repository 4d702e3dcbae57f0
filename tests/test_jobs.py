"""The background-job layer: actors on the stub and on Redis, retries, the scheduler, `credbot worker`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from bot import jobs, notices
from bot.audit import AuditAction
from bot.context import Context
from models import AuditEvent
from tests.builders import add_employee, audit_events, present
from tests.credentials_helpers import body_text, outbox_messages
from tests.waiting import wait_until

CREDBOT = str(Path(sys.executable).parent / "credbot")
seen: list[tuple[str, object]] = []
failures: dict[str, int] = {}
gave_up: list[tuple[str, str]] = []
_lock = threading.Lock()


@jobs.job()
def remember(ctx: Context, label: str, payload: dict[str, Any]) -> None:
    with _lock:
        seen.append((label, payload))
    assert ctx is jobs.context()
    with ctx.sessions() as session:  # the test's own database
        session.execute(select(AuditEvent.id)).all()


def _record_give_up(ctx: Context, error: Exception, label: str) -> None:
    with _lock:
        gave_up.append((label, str(error)))


@jobs.job(max_retries=2, min_backoff_ms=10, max_backoff_ms=20, on_give_up=_record_give_up)
def flaky(ctx: Context, label: str) -> None:
    with _lock:
        failures[label] = failures.get(label, 0) + 1
        count = failures[label]
    if label == "always" or count == 1:
        raise RuntimeError(f"attempt {count} failed")
    seen.append((label, count))


@jobs.job()
def tick(ctx: Context) -> None:
    with _lock:
        seen.append(("tick", None))


@pytest.fixture(autouse=True)
def _clear() -> None:
    seen.clear()
    failures.clear()
    gave_up.clear()


def test_a_job_runs_with_the_configured_context_and_json_arguments(job_broker: str) -> None:
    remember.send("one", {"ids": [1, 2], "text": "é"})
    jobs.join()
    assert seen == [("one", {"ids": [1, 2], "text": "é"})]


def test_failures_are_retried_and_given_up_once(job_broker: str) -> None:
    flaky.send("once")
    flaky.send("always")
    wait_until(lambda: len(gave_up) == 1 and ("once", 2) in seen)
    jobs.join()
    assert failures == {"once": 2, "always": 3}  # first try + 2 retries
    assert gave_up == [("always", "attempt 3 failed")]


def test_without_redis_the_stub_broker_runs_jobs_in_process(context: Context) -> None:
    jobs.use(context)
    assert jobs.redis_client() is None
    remember.send("stub", {})
    jobs.join()
    assert seen == [("stub", {})]


def test_a_scheduled_job_is_enqueued_once_per_due_run_across_processes(
    context: Context, redis_server_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "_schedules", {})
    jobs.every(60)(tick)
    jobs.configure(context, redis_url=redis_server_url, namespace=redis_namespace, in_process=True)
    first, second = jobs.Scheduler(), jobs.Scheduler()  # as in two worker processes
    now = datetime(2026, 11, 25, 9, 0, 30, tzinfo=UTC)
    assert first.run_due(now) == [tick.name]
    assert second.run_due(now) == []
    assert first.run_due(now.replace(second=59)) == []
    assert second.run_due(now.replace(minute=1)) == [tick.name]
    jobs.join()
    assert seen == [("tick", None), ("tick", None)]


def test_daily_jobs_fire_once_after_their_time(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "_schedules", {})
    jobs.daily(at=lambda settings: "07:30")(tick)
    jobs.configure(context, redis_url="")
    scheduler = jobs.Scheduler()
    day = datetime(2026, 11, 25, tzinfo=UTC)
    assert scheduler.run_due(day.replace(hour=7, minute=29)) == []  # yesterday's is long past
    assert scheduler.run_due(day.replace(hour=7, minute=30)) == [tick.name]
    assert scheduler.run_due(day.replace(hour=8, minute=0)) == []
    assert scheduler.run_due(day.replace(hour=7, minute=31).replace(day=26)) == [tick.name]


def test_without_redis_only_one_process_schedules(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "_schedules", {})
    jobs.every(60)(tick)
    jobs.configure(context, redis_url="")
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    first = jobs.Scheduler()
    assert first.run_due(now) == [tick.name]
    code = (
        "import fcntl, sys; f = open(sys.argv[1], 'a');\n"
        "try: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError: sys.exit(3)"
    )
    assert first._lock_file is not None
    held = subprocess.run([sys.executable, "-c", code, first._lock_file.name], check=False)
    assert held.returncode == 3  # another process cannot become the scheduler
    first.stop()


# --- notice emails --------------------------------------------------------------------------------------


def notice_events(context: Context) -> list[tuple[str, str | None, dict[str, Any]]]:
    events = audit_events(context.sessions)
    return [(e.action, e.target, e.details) for e in events if e.action.endswith("notice_failed")]


def test_a_notice_email_is_rendered_and_sent_by_the_worker(context: Context, job_broker: str) -> None:
    with context.sessions() as session:
        employee = add_employee(session, "7", "Grace", "Hopper")
        account_id = present(employee.account).id
    changed = datetime(2026, 11, 27, 14, 5, tzinfo=UTC)
    notices.enqueue_notice(
        context, account_id, "password_changed", "Changed at {company}", changed_at=changed
    )
    jobs.join()
    [message] = outbox_messages(context.settings.outbox_dir)
    assert message["To"] == "Grace Hopper <e7@example.com>"
    assert message["Subject"] == "Changed at Example Corp"
    assert message["X-Credbot-Category"] == "credbot-password-changed"
    assert "Friday 27 November 2026, 14:05 UTC" in body_text(message)
    assert notice_events(context) == []


def test_an_unreachable_mail_service_is_retried_then_audited(
    context: Context, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(notices.send_notice.options, "min_backoff", 10)
    monkeypatch.setitem(notices.send_notice.options, "max_backoff", 20)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the outbox folder should be")
    ctx = Context(context.settings.model_copy(update={"outbox_dir": blocked}), context.sessions)
    jobs.configure(ctx, redis_url="")
    with ctx.sessions() as session:
        account_id = present(add_employee(session, "8").account).id
    notices.enqueue_notice(ctx, account_id, "password_changed", "Changed", changed_at=datetime.now(UTC))
    wait_until(lambda: notice_events(ctx) != [])
    jobs.join()
    [(action, target, details)] = notice_events(ctx)
    assert action == AuditAction.NOTICE_FAILED and target == "account:user8"
    assert "could not write to the outbox" in details["error"] and details["template"] == "password_changed"


# --- `credbot worker` as a process, on Redis ----------------------------------------------------------


def test_credbot_worker_runs_jobs_enqueued_by_another_process(
    context: Context, redis_server_url: str, redis_namespace: str
) -> None:
    with context.sessions() as session:
        account_id = present(add_employee(session, "9").account).id
    jobs.configure(context, redis_url=redis_server_url, namespace=redis_namespace, in_process=False)
    notices.enqueue_notice(context, account_id, "password_changed", "Changed", changed_at=datetime.now(UTC))
    outbox = context.settings.outbox_dir
    assert outbox_messages(outbox) == [] if outbox.exists() else True  # nothing ran here
    env = {
        **os.environ,
        "DATABASE_URL": context.settings.database_url,
        "OUTBOX_DIR": str(outbox),
        "SENDGRID_API_KEY": "",
        "REDIS_URL": redis_server_url,
        "REDIS_NAMESPACE": redis_namespace,
    }
    worker = subprocess.Popen(
        [CREDBOT, "worker", "--threads", "2"],
        env=env,
        cwd=outbox.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: outbox.exists() and len(outbox_messages(outbox)) == 1, timeout=30)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0].decode()
    assert worker.returncode == 0, output
    assert "credbot worker running with 2 threads" in output
    client = redis.Redis.from_url(redis_server_url)
    assert client.llen(f"{redis_namespace}:default") == 0
    client.close()


def test_a_period_may_come_from_the_settings(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "_schedules", {})
    jobs.every(lambda settings: settings.temp_password_ttl_hours)(tick)  # any setting: 72 s here
    jobs.configure(context, redis_url="")
    scheduler = jobs.Scheduler()
    start = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)
    assert scheduler.run_due(start) == [tick.name]
    assert scheduler.run_due(start.replace(second=50)) == []
    assert scheduler.run_due(start.replace(minute=1, second=20)) == [tick.name]
