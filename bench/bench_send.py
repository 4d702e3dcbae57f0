"""Benchmark emailing credentials: send_credentials against a SendGrid stand-in that answers in 150 ms.

    .venv/bin/python bench/bench_send.py [--employees 1000] [--small 200] [--delay 0.15]
                                         [--concurrency N] [--database-url postgresql://...]

For each database (a fresh SQLite file; with --database-url or BENCH_DATABASE_URL also a throw-away
PostgreSQL database) it sends to `--employees` employees (two emails each) and prints the time,
employees per second and peak memory (ru_maxrss), then measures traced memory (tracemalloc) for
`--small` and `--employees` employees to show how memory grows per employee (start_batch works in
chunks of 500 employees, so its peak grows up to that and then stays flat).
The stand-in runs in a child process, so its work and memory are not counted.
Target: 1,000 employees (2,000 emails) in 25 s or less on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.context import Context
from bot.sending.batches import start_batch
from bot.sending.sender import run_batch
from bot.settings import Settings
from models import BatchSource
from tests.builders import add_employees
from tests.databases import throwaway_database
from tests.standins.sendgrid import API_KEY

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def standin(delay: float) -> Iterator[str]:
    """A SendGrid stand-in in a child process; yields its URL and prints what it accepted."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.sendgrid", "--delay", str(delay)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        yield child.stdout.readline().strip()
    finally:
        child.stdin.close()
        print(f"  stand-in: {child.stdout.read().strip()}")
        child.wait(timeout=30)


def send(
    url: str, standin_url: str, count: int, concurrency: int | None, trace: bool
) -> tuple[float, int, int]:
    """Send to `count` new employees: (seconds, traced peaks of start_batch and of run_batch or 0)."""
    settings = Settings(
        _env_file=None,
        database_url=url,
        sendgrid_api_key=SecretStr(API_KEY),
        sendgrid_api_host=standin_url,
        **({"mail_concurrency": concurrency} if concurrency else {}),
    )
    ctx = Context.from_settings(settings)
    ids = add_employees(ctx, count)
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    batch_id = start_batch(ctx, ids, "bench", BatchSource.CLI)
    start_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.reset_peak()
    summary = run_batch(ctx, batch_id)
    elapsed = time.perf_counter() - started
    run_peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    if len(summary.sent) != count:
        raise SystemExit(f"only {len(summary.sent)} of {count} sent: {summary.failed[:3]} {summary.error}")
    ctx.sessions.kw["bind"].dispose()
    return elapsed, start_peak, run_peak


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--employees", type=int, default=1000)
    parser.add_argument("--small", type=int, default=200, help="smaller run for memory growth per employee")
    parser.add_argument("--delay", type=float, default=0.15, help="stand-in answer time in seconds")
    parser.add_argument("--concurrency", type=int, help="MAIL_CONCURRENCY (default: the setting's default)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if args.database_url else [])
    print(
        f"{args.employees:,} employees ({2 * args.employees:,} emails), stand-in answers in "
        f"{args.delay * 1000:.0f} ms, {os.cpu_count()} CPUs; target <= 25 s for 1,000"
    )
    with tempfile.TemporaryDirectory() as tmp, standin(args.delay) as standin_url:
        for kind in kinds:
            with throwaway_database(kind, Path(tmp), args.database_url) as url:
                elapsed, _, _ = send(url, standin_url, args.employees, args.concurrency, trace=False)
            maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{kind:10} {elapsed:6.2f} s  {args.employees / elapsed:6.1f} employees/s  "
                f"{2 * args.employees / elapsed:6.1f} emails/s  peak RSS {maxrss_mib:,.0f} MiB"
            )
            peaks = {}
            for count in (args.small, args.employees):
                with throwaway_database(kind, Path(tmp), args.database_url) as url:
                    _, start_peak, run_peak = send(url, standin_url, count, args.concurrency, trace=True)
                peaks[count] = run_peak
                print(
                    f"{kind:10} traced peak for {count:>5,} employees: "
                    f"start_batch {start_peak / 2**20:5.1f} MiB, run_batch {run_peak / 2**20:5.1f} MiB"
                )
            growth = (peaks[args.employees] - peaks[args.small]) / (args.employees - args.small)
            print(f"{kind:10} run_batch memory growth: {growth:,.0f} bytes per employee")


if __name__ == "__main__":
    main()
