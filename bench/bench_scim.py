"""Benchmark /scim/v2 at 100,000 users on PostgreSQL: `filter=userName eq` p99, listing everyone in pages
of 100 (total time and the process's memory as it goes), and 1,000 sequential POST /Users p99.

    .venv/bin/python bench/bench_scim.py [--users 100000] [--database-url postgresql://...]

The requests go through the real Flask app (`create_web_app`'s SCIM blueprint, token check included) with
Flask's test client in this process, so the figures are the app's and the database's, not a network's.
Targets: filter p99 <= 10 ms; all pages <= 30 s with memory flat; POST p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask
from sqlalchemy import text

from bot.context import Context
from bot.scim.api import init_scim
from bot.scim.tokens import create_token
from bot.settings import Settings
from models import make_engine, make_session_factory
from tests.databases import throwaway_database

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def fill(ctx: Context, users: int) -> None:
    """`users` employees, each with an account `user<n>`, written by the database itself."""
    with ctx.sessions.begin() as session:
        session.execute(
            text(
                "INSERT INTO employees (employee_number, first_name, last_name, email, directory_roles,"
                " active, sort_name, search_text, external_id, created_at, updated_at)"
                " SELECT 'E' || n, 'First' || n, 'Last' || n, 'user' || n || '@example.com', '', true,"
                " 'last' || n, 'user' || n, 'ext-' || n, now(), now() FROM generate_series(1, :users) AS n"
            ),
            {"users": users},
        )
        session.execute(
            text(
                "INSERT INTO accounts (employee_id, username, status, must_change_password,"
                " failed_login_count, session_version, created_at, updated_at)"
                " SELECT id, 'user' || substr(employee_number, 2), 'pending', false, 0, 0, now(), now()"
                " FROM employees"
            )
        )
    engine = ctx.sessions.kw["bind"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        # As autovacuum leaves a settled table: statistics, and the visibility map index-only scans use.
        connection.execute(text("VACUUM ANALYZE employees"))
        connection.execute(text("VACUUM ANALYZE accounts"))


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def p99(times: list[float]) -> float:
    return statistics.quantiles(times, n=100)[98] * 1000


def cpu_ms(since: float, requests: int) -> float:
    """This process's CPU per request since `since`: what the app costs, whatever the machine's load."""
    return (time.process_time() - since) / requests * 1000


def run(url: str, users: int) -> None:
    settings = Settings(_env_file=None, database_url=url, sendgrid_api_key=None, secret_key="bench")
    ctx = Context(settings=settings, sessions=make_session_factory(make_engine(url)))
    started = time.perf_counter()
    fill(ctx, users)
    print(f"{users:,} users written in {time.perf_counter() - started:.1f} s")
    app = Flask("bench")
    init_scim(app, ctx)
    with ctx.sessions.begin() as session:
        token = create_token(session, "bench", "cli:bench")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    times, cpu = [], time.process_time()
    for _ in range(1000):
        n = random.randint(1, users)
        start = time.perf_counter()
        answer = client.get(f'/scim/v2/Users?filter=userName eq "user{n}"', headers=headers)
        times.append(time.perf_counter() - start)
        assert answer.status_code == 200 and answer.json and answer.json["totalResults"] == 1, answer.data
    print(
        f"GET /Users?filter=userName eq: p99 {p99(times):.1f} ms,"
        f" median {statistics.median(times) * 1000:.1f} ms,"
        f" this process's CPU {cpu_ms(cpu, 1000):.1f} ms each"
    )

    start, seen, memory, pages = time.perf_counter(), 0, [], []
    cpu = time.process_time()
    index = 1
    while True:
        began = time.perf_counter()
        answer = client.get(f"/scim/v2/Users?startIndex={index}&count=100", headers=headers)
        pages.append(time.perf_counter() - began)
        page = json.loads(answer.data)
        seen += len(page["Resources"])
        if index in (1, users // 4 + 1, users // 2 + 1) or not page["Resources"]:
            memory.append(f"{rss_mib():.0f}")
        if not page["Resources"]:
            break
        index += 100
    print(
        f"all {seen:,} users in pages of 100: {time.perf_counter() - start:.1f} s"
        f" (first page {pages[0] * 1000:.0f} ms, last full page {pages[-2] * 1000:.0f} ms);"
        f" RSS at the start, a quarter, half, end: {' / '.join(memory)} MiB;"
        f" this process's CPU {cpu_ms(cpu, len(pages)):.1f} ms a page"
    )
    assert seen == users

    times, cpu = [], time.process_time()
    for n in range(1000):
        body = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": f"new.hire{n}",
            "externalId": f"okta-{n}",
            "name": {"givenName": "New", "familyName": f"Hire {n}"},
            "emails": [{"type": "work", "value": f"new.hire{n}@example.com", "primary": True}],
            "timezone": "Europe/London",
            ENTERPRISE: {"employeeNumber": f"N{n}", "department": "Engineering"},
        }
        start = time.perf_counter()
        answer = client.post("/scim/v2/Users", json=body, headers=headers)
        times.append(time.perf_counter() - start)
        assert answer.status_code == 201, answer.data
    print(
        f"POST /Users (1,000 sequential): p99 {p99(times):.1f} ms,"
        f" median {statistics.median(times) * 1000:.1f} ms,"
        f" this process's CPU {cpu_ms(cpu, 1000):.1f} ms each"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", LOCAL_POSTGRES))
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with throwaway_database("postgresql", None, args.database_url) as url:
        run(url, args.users)
    print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
