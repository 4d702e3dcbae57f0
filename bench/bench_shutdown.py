"""Benchmark a worker's graceful shutdown: SIGTERM to exit with `--in-flight` deliveries in flight.

    .venv/bin/python bench/bench_shutdown.py --database-url postgresql://postgres@127.0.0.1:5432/test \
        [--redis-url redis://127.0.0.1:6379/0] [--in-flight 64] [--delay 1.0]

Starts a SendGrid stand-in answering in `--delay` s and one `credbot worker` with MAIL_CONCURRENCY
`--in-flight`, sends a batch of ten times as many employees, and once every mail thread is waiting on
the stand-in sends the worker SIGTERM. Prints the time from SIGTERM to the worker's exit (beside
WORKER_SHUTDOWN_SECONDS and Heroku's 30 s), its exit status, how many deliveries it left in flight
(`sending`: the drain lets go of all of them) and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import standin
from bench_workers import CREDBOT, load, wait_consuming

from bot import jobs
from bot.context import Context
from bot.sending.jobs import start_and_enqueue
from bot.settings import Settings
from models import BatchSource, Delivery
from tests.builders import add_employees
from tests.databases import throwaway_database as database
from tests.standins.sendgrid import API_KEY


def counts(ctx: Context) -> dict[str, int]:
    with ctx.sessions() as session:
        rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    return {str(status): count for status, count in rows}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--in-flight", type=int, default=64, help="MAIL_CONCURRENCY of the worker")
    parser.add_argument("--delay", type=float, default=1.0, help="stand-in answer time in seconds")
    parser.add_argument("--shutdown-seconds", type=float, default=20.0, help="WORKER_SHUTDOWN_SECONDS")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("--database-url (PostgreSQL) is required")
    namespace = f"credbot-bench-{uuid.uuid4().hex[:8]}"
    employees = 10 * args.in_flight
    with (
        tempfile.TemporaryDirectory() as tmp,
        standin(args.delay) as standin_url,
        database("postgresql", Path(tmp), args.database_url) as url,
    ):
        settings = Settings(
            _env_file=None, database_url=url, redis_url=args.redis_url, redis_namespace=namespace
        )
        ctx = Context.from_settings(settings)
        ids = add_employees(ctx, employees)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": args.redis_url,
            "REDIS_NAMESPACE": namespace,
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_API_HOST": standin_url,
            "MAIL_CONCURRENCY": str(args.in_flight),
            "WORKER_SHUTDOWN_SECONDS": str(args.shutdown_seconds),
        }
        client = redis.Redis.from_url(args.redis_url)
        worker = subprocess.Popen(
            [CREDBOT, "worker"], env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            jobs.configure(ctx, in_process=False)
            wait_consuming(client, namespace, [worker])
            start_and_enqueue(ctx, ids, "bench", BatchSource.CLI)
            # Every mail thread busy: some sent, and a full claim group's worth still in flight.
            while not (
                counts(ctx).get("sent", 0) >= args.in_flight
                and counts(ctx).get("sending", 0) >= args.in_flight
            ):
                time.sleep(0.05)
            time.sleep(args.delay / 2)  # mid-request
            before = counts(ctx)
            worker.send_signal(signal.SIGTERM)
            termed = time.monotonic()
            status = worker.wait(60)
            took = time.monotonic() - termed
            after = counts(ctx)
        finally:
            if worker.poll() is None:
                worker.kill()
            jobs.shutdown()
            for key in client.scan_iter(match=f"{namespace}*"):
                client.delete(key)
            client.close()
            ctx.sessions.kw["bind"].dispose()
    more = after.get("sent", 0) - before.get("sent", 0)
    print(
        f"SIGTERM with {before.get('sending', 0)} deliveries claimed ({args.in_flight} mail threads "
        f"mid-request, stand-in {args.delay * 1000:.0f} ms): exit {status} after {took:.2f} s "
        f"(WORKER_SHUTDOWN_SECONDS {args.shutdown_seconds:g}, Heroku kills at 30 s); "
        f"left in flight {after.get('sending', 0)}, sent {more} more, "
        f"{after.get('pending', 0)} pending for the next worker ({load()})"
    )


if __name__ == "__main__":
    main()
