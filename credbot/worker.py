"""`credbot worker`: runs the background jobs (Dramatiq actors) and the periodic-job scheduler."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import NoReturn

import click

from bot import jobs, outbox
from bot.cli.common import context
from bot.context import Context
from bot.sending.lifecycle import drain_all


@click.command()
@click.option("--threads", type=int, default=None, help="Worker threads (default: WORKER_THREADS, 8).")
@click.option(
    "--idle-priority/--normal-priority",
    default=None,
    help="Hash only on CPU that other processes leave (SCHED_IDLE; default: WORKER_IDLE_PRIORITY).",
)
def worker(threads: int | None, idle_priority: bool | None) -> None:
    """Run background jobs until stopped (SIGTERM or Ctrl+C).

    The Procfile's `worker:` process.

    With REDIS_URL it takes jobs from Redis, which every web process and CLI enqueues to. Without it,
    each process runs its own jobs in-process, and this worker only runs the scheduled ones.
    """
    root = logging.getLogger()
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
    ctx = context()
    if idle_priority is not None:  # the flag overrides WORKER_IDLE_PRIORITY
        ctx = Context(ctx.settings.model_copy(update={"worker_idle_priority": idle_priority}), ctx.sessions)
    if ctx.settings.worker_idle_priority:
        if not hasattr(os, "SCHED_IDLE"):
            raise click.ClickException("--idle-priority needs Linux (SCHED_IDLE)")
        click.echo("Hashing at idle priority (SCHED_IDLE).")
    jobs.configure(ctx, in_process=False)
    if not ctx.settings.redis_url:
        click.echo(
            "REDIS_URL is not set: jobs run inside the process that enqueues them; this worker "
            "only runs the scheduled jobs."
        )
    threads = threads or ctx.settings.worker_threads
    jobs.start_worker(threads)
    scheduler = jobs.Scheduler().start()
    # Without Redis each process relays its own jobs to its own in-process worker: a relay here would
    # take theirs onto a queue nobody reads.
    relay = outbox.Relay(ctx).start() if ctx.settings.redis_url else None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"credbot worker running with {threads} threads; stop with Ctrl+C or SIGTERM.")
    stop.wait()
    _stop(ctx.settings.worker_shutdown_seconds, scheduler, relay)


def _stop(bound: float, scheduler: jobs.Scheduler, relay: outbox.Relay | None) -> NoReturn:
    """Stop within `bound` seconds and exit 0: batches take nobody more at once, the emails in flight
    end and are recorded, the claims not yet sent are let go (another worker takes them up at once).

    Exits with os._exit: a mail thread still waiting on the mail API at the bound would otherwise hold
    the interpreter's exit until the platform kills it (its delivery's lease then runs out as after a
    crash).
    """
    deadline = time.monotonic() + bound
    drained = drain_all()
    click.echo(
        f"Stopping: {drained} batches take nobody more; finishing the jobs in progress "
        f"(at most {bound:g} s)..."
    )
    scheduler.stop()
    jobs.shutdown(timeout_seconds=max(0.1, deadline - time.monotonic() - 0.5))
    if relay is not None:
        relay.stop()
    click.echo("Stopped.")
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)
