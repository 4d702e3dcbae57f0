"""Benchmark the employee CSV import (first import, idempotent re-import, 10% changed rows),
then `accounts create --all-missing` for everyone.

    .venv/bin/python bench/bench_import.py [--rows 100000] [--database-url postgresql://...]

Always measures a fresh migrated SQLite file in a temp dir; with --database-url (or
BENCH_DATABASE_URL) also that PostgreSQL server, in a throw-away database created next to it.
Target: 10,000 rows per second or more. Each run also prints its rows per CPU second of this process (the
database server's CPU not counted), which a loaded machine changes much less than the wall-clock rate.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.accounts import create_accounts
from bot.directory import import_employees
from bot.settings import Settings
from models import make_engine, make_session_factory
from tests.databases import throwaway_database

FIRST = ["Anna", "José", "Zoë", "Mark", "Chloé", "Jürgen", "Aiko", "Sven", "Priya", "Łukasz"]
LAST = ["Smith", "Ñúñez-O'Brien", "Müller", "Dubois", "Tanaka", "Østergaard", "Kowalski", "Patel"]


ZONES = ["Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Chatham", ""]
HEADER = ["Employee ID", "First Name", "Last Name", "Work Email", "Department", "Roles", "Personal Email"]
HEADER += ["Start Date", "Time Zone", "Manager", "Status"]


def write_csv(path: Path, rows: int, changed_every: int = 0) -> None:
    """`rows` employees with issue 19's columns (every 50th a leaver); with `changed_every`, every n-th
    row has a new department and email."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(rows):
            changed = changed_every and i % changed_every == 0
            first, last = FIRST[i % len(FIRST)], LAST[i // len(FIRST) % len(LAST)]
            email = f"user{i}{'.new' if changed else ''}@example.com"
            department = "Moved" if changed else f"Dept {i % 40}"
            roles = "Staff;Reader" if i % 7 else ""
            personal = f"person{i}@home.example" if i % 3 else ""
            start = f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}"
            manager = f"E{i // 10 * 10:07d}" if i % 10 else ""
            status = "Terminated" if i % 50 == 49 else "Active"
            writer.writerow(
                [
                    f"E{i:07d}",
                    first,
                    last,
                    email,
                    department,
                    roles,
                    personal,
                    start,
                    ZONES[i % 5],
                    manager,
                    status,
                ]
            )


def run(label: str, url: str, rows: int, files: dict[str, Path]) -> None:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    settings = Settings(_env_file=None, database_url=url)
    for name in ("first import", "re-import (no change)", "10% changed"):
        started, cpu = time.perf_counter(), time.process_time()
        with sessions.begin() as session:
            result = import_employees(session, files[name], "bench")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(
            f"{label:10} {name:22} {rows / elapsed:>9,.0f} rows/s  ({elapsed:5.2f} s; "
            f"{rows / cpu:,.0f} rows per CPU second of credbot's; created "
            f"{result.created}, updated {result.updated}, unchanged {result.unchanged})"
        )
    started = time.perf_counter()
    with sessions.begin() as session:
        created = len(create_accounts(session, settings, "bench", all_missing=True).created)
    elapsed = time.perf_counter() - started
    print(
        f"{label:10} {'accounts --all-missing':22} {created / elapsed:>9,.0f} accounts/s ({elapsed:5.2f} s)"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        files = {
            "first import": directory / "employees.csv",
            "re-import (no change)": directory / "employees.csv",
            "10% changed": directory / "changed.csv",
        }
        write_csv(files["first import"], args.rows)
        write_csv(files["10% changed"], args.rows, changed_every=10)
        print(f"{args.rows:,} rows, target 10,000 rows/s; load average {os.getloadavg()[0]:.1f}")
        with throwaway_database("sqlite", directory) as url:
            run("sqlite", url, args.rows, files)
        if args.database_url:
            with throwaway_database("postgresql", None, args.database_url) as url:
                run("postgresql", url, args.rows, files)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
