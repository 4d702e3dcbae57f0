"""The layers: the core never loads the Slack adapter; the entry points wire it in, and a batch whose
source has no runner wired is refused, never run by another runner."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot import jobs
from bot.context import Context
from bot.sending import jobs as sending_jobs
from bot.sending.batches import start_batch
from bot.sending.jobs import NoRunner, resume_stalled_batches, runner_for, send_batch, start_and_enqueue
from credbot import wiring
from credbot.web import create_web_app
from handlers.sending import send_batch_with_trail
from models import BatchSource, BatchStatus, CredentialBatch, OutboxJob, utcnow
from tests.builders import add_employee
from tests.cli_helpers import RunCli

CORE_ONLY = """
import pkgutil, sys
import bot
from bot import jobs
from bot.context import Context
from bot.settings import Settings

for module in pkgutil.walk_packages(bot.__path__, "bot."):
    __import__(module.name)
jobs.configure(Context.from_settings(Settings(_env_file=None, database_url=sys.argv[1])), redis_url="")
print(sorted(name for name in sys.modules if name.split(".")[0] in ("handlers", "credbot")))
jobs.shutdown()
"""


@pytest.fixture
def unwired(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runners as the core alone registers them: none for Slack batches (no entry point ran)."""
    monkeypatch.setattr(sending_jobs, "_runners", {BatchSource.CLI: send_batch})


def test_the_core_loads_no_module_of_the_slack_adapter_nor_of_the_entry_points(tmp_path: Path) -> None:
    """Every module of bot/ imported and the job layer configured (its job modules loaded), in a
    process of its own: nothing of handlers/ or credbot/ is loaded, by import or by name."""
    result = subprocess.run(
        [sys.executable, "-c", CORE_ONLY, f"sqlite:///{tmp_path / 'c.db'}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "[]", result.stdout


def test_a_slack_batch_with_no_slack_runner_wired_is_refused_and_nothing_is_committed(
    unwired: None, context: Context, session: Session
) -> None:
    employee = add_employee(session, "1")
    session.commit()
    with pytest.raises(NoRunner, match="no runner for batches from 'slack' in this process"):
        start_and_enqueue(context, [employee.id], "slack:U1", BatchSource.SLACK, channel_id="C1")
    assert session.scalar(select(func.count()).select_from(CredentialBatch)) == 0
    assert session.scalar(select(func.count()).select_from(OutboxJob)) == 0


def test_the_sweeper_leaves_a_slack_batch_it_has_no_runner_for_and_logs_why(
    unwired: None, context: Context, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    employee = add_employee(session, "1")
    session.commit()
    batch_id = start_batch(context, [employee.id], "slack:U1", BatchSource.SLACK, channel_id="C1")
    stale = utcnow() - timedelta(seconds=context.settings.send_lease_seconds * 2)
    with context.sessions.begin() as change:  # its worker was killed
        change.execute(update(CredentialBatch).values(heartbeat_at=stale))
    with caplog.at_level(logging.ERROR, logger="bot.sending.jobs"):
        resume_stalled_batches(context)
    assert f"batch {batch_id} cannot be resumed here" in caplog.text
    assert "no runner for batches from 'slack'" in caplog.text
    assert session.scalar(select(func.count()).select_from(OutboxJob)) == 0
    assert session.scalar(select(CredentialBatch.status)) == BatchStatus.RUNNING


def test_the_web_app_wires_the_slack_runner_and_the_slack_jobs(unwired: None, context: Context) -> None:
    with pytest.raises(NoRunner):
        runner_for(BatchSource.SLACK)
    create_web_app(context)
    assert runner_for(BatchSource.SLACK) is send_batch_with_trail
    assert runner_for(BatchSource.CLI) is send_batch
    slack_jobs = {
        job.name
        for module in wiring.SLACK_JOB_MODULES
        for job in vars(module).values()
        if isinstance(job, jobs.Job)
    }
    assert "handlers.digest.daily_digest" in slack_jobs
    assert slack_jobs <= jobs.declared()


def test_the_command_line_wires_the_slack_runner(unwired: None, cli: RunCli) -> None:
    assert cli("batches").exit_code == 0
    assert runner_for(BatchSource.SLACK) is send_batch_with_trail
