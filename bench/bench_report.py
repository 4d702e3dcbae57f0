"""Benchmark the account report (CSV): 100,000 accounts in at most 5 s, in memory that stays flat.

    .venv/bin/python bench/bench_report.py [--employees 100000] [--database-url postgresql://...]

Builds bench_home's directory (every stage of onboarding, roles, deliveries) in a throw-away PostgreSQL
database, then writes the report to a file as `credbot report --csv` does. Time is measured alone; the
memory run is separate, under tracemalloc, for a tenth of the directory and for all of it: "flat"
means the peak of Python allocations while writing does not grow with the number of accounts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_home import LOCAL_POSTGRES, fill_onboarding

from bot.account_report import write_accounts_csv
from models import make_engine, make_session_factory
from tests.databases import throwaway_database


def write(url: str, path: Path, limit_memory: bool = False) -> tuple[int, float, int]:
    """(accounts written, seconds, peak bytes allocated while writing when traced, else 0)."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        with sessions() as session, path.open("w", newline="", encoding="utf-8") as out:
            session.connection()  # connect before measuring
            if limit_memory:
                tracemalloc.start()
            started = time.perf_counter()
            count = write_accounts_csv(session, out)
            seconds = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1] if limit_memory else 0
            if limit_memory:
                tracemalloc.stop()
    finally:
        engine.dispose()
    return count, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of the full report")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", LOCAL_POSTGRES))
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}")
    peaks = {}
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "accounts.csv"
        for employees in (args.employees // 10, args.employees):
            with throwaway_database("postgresql", None, args.database_url) as url:
                print(f"PostgreSQL: building {employees:,} employees ...", flush=True)
                fill_onboarding(url, employees, without_account=False)
                if employees == args.employees:
                    for _ in range(args.runs):
                        count, seconds, _ = write(url, target)
                        size = target.stat().st_size
                        print(f"  report of {count:,} accounts: {seconds:.2f} s ({size / 1e6:.1f} MB of CSV)")
                count, _, peaks[count] = write(url, target, limit_memory=True)
        print("  peak Python memory while writing (tracemalloc):")
        for count, peak in peaks.items():
            print(f"    {count:>9,} accounts: {peak / 1e6:.1f} MB")
        small, large = peaks.values()
        print(f"  memory ratio {large / small:.2f}x for 10x the accounts")
    print("  target: <= 5 s for 100,000 accounts, memory flat")


if __name__ == "__main__":
    main()
