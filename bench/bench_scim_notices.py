"""Benchmark SCIM's grouped notices: an identity provider's import of 10,000 users in a minute, on
PostgreSQL with 100,000 employees and 200,000 other audit events.

    .venv/bin/python bench/bench_scim_notices.py [--employees 100000] [--hires 10000] [--database-url ...]

Writes one `scim.user_created` audit event per hire (and 1 in 10 of them deactivated again), sealed as
credbot seals them, then times what the worker and App Home do with them: the grouping job's idle run
(nothing new, the common case every 10 seconds), grouping the import into one notice, reading it back
and building its Slack message, and App Home's list of hires awaiting credentials. Prints each in ms and
the message's size against Slack's limit (target: grouping <= 5 s; the rest is printed for the record).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_slack import fill_directory

from bot.audit import AuditAction, employee_target, record_many
from bot.audit_chain import seal
from bot.scim_notices import GROUP_WINDOW, group_notices, notices_to_post, waiting_hires
from handlers.blocks import MAX_MESSAGE_BLOCKS_JSON, blocks_size
from handlers.scim_messages import APP_HOME_LISTED, notice_message
from models import Employee, NoticeChange, make_engine, make_session_factory
from tests.databases import throwaway_database

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--hires", type=int, default=10_000)
    parser.add_argument("--other-events", type=int, default=200_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", LOCAL_POSTGRES))
    args = parser.parse_args()
    with throwaway_database("postgresql", Path(tempfile.gettempdir()), args.database_url) as url:
        fill_directory(url, args.employees)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            rows = session.execute(sa.select(Employee.id, Employee.employee_number).limit(args.hires)).all()
            other = [(AuditAction.SIGN_IN, None, {}) for _ in range(args.other_events)]
            record_many(session, "portal", other)
            hired = [
                (AuditAction.SCIM_USER_CREATED, employee_target(number), {"employee_id": eid})
                for eid, number in rows
            ]
            record_many(session, "scim:okta", hired)
            left = [
                (AuditAction.SCIM_USER_DEACTIVATED, employee_target(number), {"employee_id": eid})
                for eid, number in rows[::10]
            ]
            record_many(session, "scim:okta", left)
        seal(engine, wait=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")

        now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
        group_notices(sessions, now)  # starts the minute's wait
        start = time.perf_counter()
        notice = group_notices(sessions, now + GROUP_WINDOW)
        grouping = ms(start)
        moment = now + GROUP_WINDOW
        for _ in range(8):  # the leavers, beyond the first notice's MAX_EVENTS, make the next one
            moment += timedelta(seconds=10)
            group_notices(sessions, moment)
        idle = []
        for _ in range(50):
            moment += timedelta(seconds=10)
            start = time.perf_counter()
            assert group_notices(sessions, moment) is None
            idle.append(ms(start))
        start = time.perf_counter()
        with sessions() as session:
            [posted] = notices_to_post(session, now + GROUP_WINDOW, 1)
        message = notice_message(posted, now.date())
        building = ms(start)
        home = []
        for _ in range(20):
            start = time.perf_counter()
            with sessions() as session:
                waiting = waiting_hires(session, APP_HOME_LISTED)
            home.append(ms(start))
        engine.dispose()

    hires, leavers = len(posted.of(NoticeChange.HIRED)), len(posted.of(NoticeChange.LEFT))
    deactivated, size = len(rows[::10]), blocks_size(message["blocks"])
    print(f"{args.employees:,} employees, {args.hires:,} SCIM hires ({deactivated:,} deactivated again)")
    print(f"  and {args.other_events:,} other audit events")
    print(f"  notice {notice}: {hires:,} hires, {leavers:,} leavers; {waiting.count:,} awaiting credentials")
    print(f"  grouping the import into one notice: {grouping:.1f} ms (target <= 5,000)")
    print(f"  idle run (nothing new): median {statistics.median(idle):.1f} ms, worst {max(idle):.1f} ms")
    print(f"  reading the notice back, its message: {building:.1f} ms; blocks {size:,} characters")
    print(f"    (Slack's limit {MAX_MESSAGE_BLOCKS_JSON:,})")
    print(f"  App Home's list: median {statistics.median(home):.1f} ms, worst {max(home):.1f} ms")


if __name__ == "__main__":
    main()
