"""Benchmark App Home with 100,000 employees: app_home_opened -> views.publish, on PostgreSQL.

    .venv/bin/python bench/bench_home.py [--employees 100000] [--opens 200] [--database-url postgresql://...]

Builds a directory in a throw-away PostgreSQL database (--database-url, BENCH_DATABASE_URL, or the local
test server) with every stage of onboarding populated: 5% without an account, a third emailed with
deadlines spread from a day ago to three days ahead (some signed in, some changed their password), a
few locked and disabled accounts, and five batches of 2,000 deliveries. The real app runs under
gunicorn as the Procfile serves it (one gthread worker, a process of its own); this process sends
signed `app_home_opened` events one at a time and measures until the Slack stand-in receives the
views.publish call. Prints median and 99th percentile in milliseconds (target: p99 <= 1,000 ms).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_slack import credbot_env, figures, fill_directory, gunicorn, p99

from models import make_engine
from tests.databases import throwaway_database
from tests.slack_requests import SlackRequests
from tests.standins.slack import ADMIN_ID, SlackStandIn

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def fill_onboarding(url: str, employees: int, without_account: bool = True) -> None:
    """`fill_directory`'s employees and pending accounts, then every stage of the funnel (with 5% of the
    employees left without an account unless `without_account` is False)."""
    fill_directory(url, employees)
    engine = make_engine(url)
    with engine.begin() as connection:

        def run(statement: str, **values: object) -> None:
            connection.execute(sa.text(statement), values)

        if without_account:
            run("DELETE FROM accounts WHERE mod(id, 20) = 0")
        run(
            "UPDATE accounts SET status = 'invited', must_change_password = TRUE, "
            "credentials_emailed_at = now() - interval '1 day', credentials_emailed_by = 'slack:UADMIN001', "
            "temp_password_expires_at = now() + ((mod(id, 96) - 24) * interval '1 hour') WHERE mod(id, 3) = 0"
        )
        run("UPDATE accounts SET first_sign_in_at = now() WHERE mod(id, 3) = 0 AND mod(id, 2) = 0")
        run(
            "UPDATE accounts SET status = 'active', must_change_password = FALSE, "
            "temp_password_expires_at = NULL, password_changed_at = now() "
            "WHERE mod(id, 3) = 0 AND mod(id, 4) = 0"
        )
        run("UPDATE accounts SET locked_until = now() + interval '10 minutes' WHERE mod(id, 97) = 1")
        run("UPDATE accounts SET status = 'disabled' WHERE mod(id, 89) = 2")
        run("INSERT INTO roles (name) VALUES ('Employee'), ('Finance Approver')")
        run("INSERT INTO account_roles (account_id, role_id) SELECT id, 1 FROM accounts")
        run("INSERT INTO account_roles (account_id, role_id) SELECT id, 2 FROM accounts WHERE mod(id, 7) = 0")
        for batch in range(1, 6):
            run(
                "INSERT INTO credential_batches (id, requested_by, source, mode, status, resumed, "
                "created_at) VALUES (:batch, 'slack:UADMIN001', 'slack', 'password', 'finished', 0, now())",
                batch=batch,
            )
            run(
                "INSERT INTO deliveries (batch_id, employee_id, account_id, email_address, status, attempts, "
                "created_at, updated_at) SELECT "
                ":batch, employees.id, accounts.id, employees.email, "
                "CASE WHEN mod(employees.id, 50) = 0 THEN 'failed' ELSE 'sent' END, 1, now(), now() "
                "FROM employees JOIN accounts ON accounts.employee_id = employees.id "
                "WHERE mod(employees.id, 3) = 0 AND mod(employees.id, 5) = :batch - 1 "
                "LIMIT 2000",
                batch=batch,
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--opens", type=int, default=200, help="app_home_opened events, one at a time")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", LOCAL_POSTGRES))
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}")
    with throwaway_database("postgresql", None, args.database_url) as url:
        print(f"PostgreSQL: building {args.employees:,} employees ...", flush=True)
        fill_onboarding(url, args.employees)
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as connection:
            accounts = connection.exec_driver_sql("SELECT count(*) FROM accounts").scalar_one()
        engine.dispose()
        standin = SlackStandIn().start()
        env = credbot_env(url, standin.url)
        times: list[float] = []
        try:
            with (
                tempfile.TemporaryDirectory() as cwd,
                gunicorn("credbot.web:create_app()", env, cwd) as app_url,
            ):
                requests = SlackRequests(app_url)
                for n in range(args.opens + 10):  # the first 10 warm up connections and caches
                    started = time.monotonic()
                    assert requests.home_opened(ADMIN_ID).status == 200
                    (call,) = standin.wait_for_call("views.publish", n + 1, timeout=30)[n : n + 1]
                    if n >= 10:
                        times.append((call.at - started) * 1000)
        finally:
            standin.stop()
    print(f"  {accounts:,} accounts; App Home published after app_home_opened:")
    print(figures("app_home_opened -> views.publish", times))
    print(f"  App Home p99: {p99(times):.1f} ms (target <= 1000)")
    if standin.problems:
        print(f"  Slack stand-in saw invalid views: {standin.problems[:3]}")


if __name__ == "__main__":
    main()
