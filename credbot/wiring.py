"""The Slack adapter plugged into the core: every entry point calls `wire_slack` before it serves or works.

The core never imports handlers/, so what it runs for Slack is handed to it here: the runner of batches
started in Slack (their channel trail) is registered, and the Slack adapter's jobs are declared by
importing the modules that declare them (`SLACK_JOB_MODULES`), with their schedules.
"""

from __future__ import annotations

from types import ModuleType

from bot.sending.jobs import register_after_send, register_runner
from handlers import delivery_trail, digest, manager_notices, recovery, scim_notices, sending
from models import BatchSource

SLACK_JOB_MODULES: tuple[ModuleType, ...] = (
    sending,
    delivery_trail,
    recovery,
    digest,
    manager_notices,
    scim_notices,
)
"""The Slack adapter's modules that declare jobs (`@jobs.job`, `jobs.every`, `jobs.daily`); a new one is
added here. The core's are listed in `bot.jobs.JOB_MODULES`."""


def wire_slack() -> None:
    """Register the Slack runner and the managers' notices on the core (the Slack jobs are declared by
    this module's imports). Calling it again changes nothing."""
    register_runner(BatchSource.SLACK, sending.send_batch_with_trail)
    register_after_send(manager_notices.notify_managers)
