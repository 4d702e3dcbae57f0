"""Benchmark scheduled sends: lateness per time zone at 08:00, and the scheduler's tick with 100,000 waiting.

    .venv/bin/python bench/bench_schedule.py [--employees 10000] [--zones 5] [--waiting 100000]
                                             [--ticks 200] [--delay 0.15] [--database-url postgresql://...]

Lateness: `--employees` employees start on the same Monday, spread over `--zones` zones one hour apart
(Europe/London, Paris, Helsinki, Moscow, Asia/Dubai in December: 08:00 local is 08:00, 07:00, ... 04:00
UTC), scheduled "on their start date at 08:00" and sent by the worker's machinery in this process (the
in-process job worker, the periodic scheduler every SCHEDULE_TICK_SECONDS and its wakes) against a
SendGrid stand-in answering in `--delay` s. The clock is compressed: it is the system clock plus an
offset that the bench moves forward only while nothing is due (to 6 s before the next zone's moment,
once the previous zone is sent), so every second around a moment is a real second and the hours in
between are skipped. A delivery's lateness is when its welcome email was recorded as accepted minus
its moment. Printed per zone: p50, p99 and max, against the hashing floor for the zone's cohort (its
argon2id hashes over every core, timed in the same run) + 10 s, the target.

Waiting: `--waiting` deliveries scheduled for next month, then `--ticks` scheduler ticks
(`release_scheduled`, nothing due): CPU per tick (median, p99, max) and memory (RSS and traced peak
per tick, first against last: flat).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

import sqlalchemy as sa
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import standin
from bench_workers import hashing_floor

from bot import jobs
from bot.context import Context
from bot.sending import schedule
from bot.sending.jobs import release_scheduled, schedule_and_enqueue
from bot.sending.schedule import Schedule, When
from bot.settings import Settings
from models import Delivery, DeliveryStatus, Employee
from tests.builders import add_employees
from tests.databases import throwaway_database
from tests.standins.sendgrid import API_KEY

ZONES = ["Europe/London", "Europe/Paris", "Europe/Helsinki", "Europe/Moscow", "Asia/Dubai"]
START = date(2026, 12, 7)
LEAD = timedelta(seconds=6)
"""How far before a zone's moment the compressed clock is set: the scheduler meets it in real time."""


class CompressedClock:
    """The system clock plus an offset moved forward by `skip_to` while nothing is due."""

    def __init__(self) -> None:
        self.offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        return time.monotonic()

    def skip_to(self, moment: datetime) -> None:
        with self._lock:
            self.offset = moment - datetime.now(UTC)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f}"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def lateness(url: str, standin_url: str, employees: int, zones: int, sample: int) -> None:
    settings = Settings(
        _env_file=None, database_url=url, sendgrid_api_key=SecretStr(API_KEY), sendgrid_api_host=standin_url
    )
    clock = CompressedClock()
    base = Context.from_settings(settings)
    ctx = Context(base.settings, base.sessions, clock)
    ids = add_employees(ctx, employees)
    with ctx.sessions.begin() as session:
        for index in range(zones):
            chosen = ids[index::zones]
            for start in range(0, len(chosen), 500):
                session.execute(
                    sa.update(Employee)
                    .where(Employee.id.in_(chosen[start : start + 500]))
                    .values(time_zone=ZONES[index], start_date=START)
                )
    cohort = employees // zones
    _, floor, _ = hashing_floor(cohort, sample)
    print(
        f"  hashing floor for a zone's {cohort:,} employees: {floor:.1f} s "
        f"-> target {floor + 10:.1f} s ({load()})"
    )

    jobs.configure(ctx, redis_url="")
    scheduler = jobs.Scheduler().start()
    clock.skip_to(datetime(2026, 12, 2, 12, 0, tzinfo=UTC))  # a Wednesday: the cohort is scheduled
    plan = Schedule(When.START_DATE, clock_time(8, 0))
    with ctx.sessions() as session:
        planned = schedule.moments(session, settings, plan, ids, clock.now())
    started = time.perf_counter()
    batch_id, _ = schedule_and_enqueue(ctx, ids, "bench", "cli", plan, planned)
    print(
        f"  scheduled {employees:,} in {time.perf_counter() - started:.1f} s: "
        f"{schedule.summary_line(plan, planned)}"
    )
    try:
        moments = sorted({m.due_at for m in planned.values() if m.due_at is not None})
        for moment in moments:
            clock.skip_to(moment - LEAD)
            offset = clock.offset
            with ctx.sessions() as session:
                due = session.scalar(
                    sa.select(sa.func.count()).where(Delivery.batch_id == batch_id, Delivery.due_at == moment)
                )
            while True:
                with ctx.sessions() as session:
                    left = session.scalar(
                        sa.select(sa.func.count()).where(
                            Delivery.batch_id == batch_id,
                            Delivery.due_at == moment,
                            Delivery.status.in_(
                                [DeliveryStatus.SCHEDULED, DeliveryStatus.PENDING, DeliveryStatus.SENDING]
                            ),
                        )
                    )
                if not left:
                    break
                time.sleep(0.5)
            with ctx.sessions() as session:
                rows = session.execute(
                    sa.select(Delivery.welcome_sent_at, Delivery.status).where(
                        Delivery.batch_id == batch_id, Delivery.due_at == moment
                    )
                ).all()
            real_moment = moment - offset
            late = [(sent - real_moment).total_seconds() for sent, status in rows if sent is not None]
            zone = next(m.zone for m in planned.values() if m.due_at == moment)
            verdict = "met" if late and max(late) <= floor + 10 else "MISSED"
            print(
                f"  {zone:16} {schedule.local_text(moment, zone)} ({moment:%H:%M} UTC): "
                f"{len(late):,} of {due:,} "
                f"sent; lateness p50 {percentile(late, 0.5):.1f} s, p99 {percentile(late, 0.99):.1f} s, "
                f"max {max(late):.1f} s vs {floor + 10:.1f} s: {verdict} ({load()})"
            )
    finally:
        scheduler.stop()
        jobs.shutdown()
        base.sessions.kw["bind"].dispose()


def waiting(url: str, count: int, ticks: int) -> None:
    settings = Settings(_env_file=None, database_url=url)
    base = Context.from_settings(settings)
    ctx = Context(base.settings, base.sessions)
    ids = add_employees(ctx, count)
    plan = Schedule(When.AT, clock_time(8, 0), date.today() + timedelta(days=30), "UTC")
    with ctx.sessions() as session:
        planned = schedule.moments(session, settings, plan, ids, ctx.clock.now())
    jobs.configure(ctx, redis_url="")
    started = time.perf_counter()
    schedule_and_enqueue(ctx, ids, "bench", "cli", plan, planned)
    jobs.join()
    print(f"  {count:,} deliveries waiting (scheduled in {time.perf_counter() - started:.1f} s)")
    cpu: list[float] = []
    wall: list[float] = []
    rss: list[int] = []
    traced: list[int] = []
    tracemalloc.start()
    for _ in range(ticks):
        tracemalloc.reset_peak()
        before_cpu, before = time.process_time(), time.perf_counter()
        release_scheduled(ctx)
        cpu.append(time.process_time() - before_cpu)
        wall.append(time.perf_counter() - before)
        traced.append(tracemalloc.get_traced_memory()[1])
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    tracemalloc.stop()
    jobs.shutdown()
    base.sessions.kw["bind"].dispose()
    print(
        f"  {ticks} ticks: CPU per tick median {statistics.median(cpu) * 1000:.2f} ms, "
        f"p99 {percentile(cpu, 0.99) * 1000:.2f} ms, max {max(cpu) * 1000:.2f} ms "
        f"(wall median {statistics.median(wall) * 1000:.2f} ms); "
        f"traced peak per tick first {traced[0] / 1024:.0f} KiB, "
        f"last {traced[-1] / 1024:.0f} KiB; peak RSS after the first tick {rss[0] / 1024:.0f} MiB, after the "
        f"last {rss[-1] / 1024:.0f} MiB ({load()})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--zones", type=int, default=5, choices=range(1, len(ZONES) + 1))
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--delay", type=float, default=0.15, help="the SendGrid stand-in's answer time")
    parser.add_argument("--sample", type=int, default=100, help="hashes timed for the floor")
    parser.add_argument("--skip-lateness", action="store_true")
    parser.add_argument("--skip-waiting", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if args.database_url else [])
    with tempfile.TemporaryDirectory() as directory:
        for kind in kinds:
            print(f"{kind}:")
            if not args.skip_lateness:
                with (
                    throwaway_database(kind, Path(directory), args.database_url) as url,
                    standin(args.delay) as at,
                ):
                    lateness(url, at, args.employees, args.zones, args.sample)
            if not args.skip_waiting:
                with throwaway_database(kind, Path(directory), args.database_url) as url:
                    waiting(url, args.waiting, args.ticks)


if __name__ == "__main__":
    main()
