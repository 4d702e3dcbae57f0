"""`credbot worker`: runs the background jobs (Dramatiq actors) and the periodic-job scheduler."""

from __future__ import annotations

import logging
import os
import signal
import threading

import click

from bot import jobs
from bot.cli.common import context
from bot.context import Context


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
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"credbot worker running with {threads} threads; stop with Ctrl+C or SIGTERM.")
    stop.wait()
    click.echo("Stopping: finishing the jobs in progress...")
    scheduler.stop()
    jobs.shutdown()
