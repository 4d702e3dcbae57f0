"""Benchmark a batch sent by `credbot worker` processes on PostgreSQL and Redis, against the hashing floor.

    .venv/bin/python bench/bench_workers.py --database-url postgresql://postgres@127.0.0.1:5432/test \
        [--redis-url redis://127.0.0.1:6379/0] [--employees 10000] [--workers 1] [--delay 0.15] [--ack]

Starts a SendGrid stand-in (answering in `--delay` s) and `--workers` worker processes (niced by
`--nice`, default 5) on a throw-away PostgreSQL database and a Redis namespace of its own, waits until
every worker is consuming, then starts a batch for `--employees` employees, enqueues it as the CLI
does, and times it from there until it ends (the workers' start-up is not the batch's time).
Printed beside it: the hashing floor measured in the same run (argon2id hashes of `--sample`
passwords on one thread per core, scaled to the batch: employees x seconds per hash / cores), measured
before the batch and again after it (once the machine settled), as a shared machine's speed drifts by
several percent within minutes: the batch is compared with the lower of the two, the stricter, and
the peak resident memory (VmHWM) of each worker process, the CPU time each used, where the whole
machine's CPU went during the batch (workers, PostgreSQL backends, stand-in, Redis, ...; "rest of the
machine" is anyone else's), and the load average (the machine may be shared: compare figures only at
similar loads). Target: at most 1.2x the floor.

With --ack, the web app also runs, under gunicorn in a process of its own (`bench_slack --paced`'s
set-up: its own Slack stand-in, the bench database, the same Redis), and a client process sends
`--commands` signed `/email-credentials` commands `--interval` s apart, twice: first with no batch
running, then from the batch's start. Prints the ack median and p99 of both and their ratio
(target: p99 during the batch at most 2x the idle one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import redis
from pydantic import SecretStr
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import standin
from bench_slack import Client, credbot_env, figures, gunicorn, p99, paced

from bot import jobs
from bot.admins import add_admin
from bot.context import Context
from bot.credentials import HASH_THREAD_NAME
from bot.passwords import generate_temporary_password, hash_password
from bot.sending.batches import delivery_counts, start_batch
from bot.sending.jobs import enqueue_batch
from bot.settings import Settings
from models import BatchSource, BatchStatus, CredentialBatch, utcnow
from tests.builders import add_employees
from tests.databases import throwaway_database as database
from tests.standins.sendgrid import API_KEY
from tests.standins.slack import ADMIN_ID, SlackStandIn

CREDBOT = str(Path(sys.executable).parent / "credbot")
SETTLE_SECONDS = 5.0


def hashing_floor(employees: int, sample: int) -> tuple[float, float, float]:
    """(seconds per hash on one core, the floor for `employees` hashes over every core, CPU seconds
    per hash: what a hash costs however busy the machine is)."""
    cores = os.cpu_count() or 2
    passwords = [generate_temporary_password() for _ in range(sample)]
    cpu = time.process_time()
    started = time.perf_counter()
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(hash_password, passwords))
    per_hash = (time.perf_counter() - started) * cores / sample
    return per_hash, employees * per_hash / cores, (time.process_time() - cpu) / sample


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _stat(pid: int | str, task: str = "") -> tuple[int, float]:
    """(parent pid, user + system CPU seconds so far) of process `pid` (or of its thread `task`)."""
    fields = Path(f"/proc/{pid}/{f'task/{task}/' if task else ''}stat").read_text().rpartition(")")[2].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    return _stat(pid)[1]


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat: all but idle and iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuSplit:
    """Where the machine's CPU goes during the batch: per group of processes (the workers, their
    hashing apart; the bench database's PostgreSQL backends; the PostgreSQL server's own processes;
    Redis; the stand-in; the web app and ack client; this process), and the rest of the machine
    (other users; processes that ended before the last snapshot)."""

    def __init__(self, workers: list[int], database: str) -> None:
        self.workers = set(workers)
        self.backend = f" {database} ".encode()
        self._start = self._snapshot()
        self._machine = machine_cpu_seconds()

    def _group(self, pid: int, parents: dict[int, int], command: bytes) -> str | None:
        if pid in self.workers:
            return "worker"
        if command.startswith(b"postgres"):
            if self.backend in command:
                return "postgres backends"
            if b"127.0.0.1(" in command or b"[local]" in command:
                return None  # another database's backend: the rest of the machine
            return "postgres server"
        if command.startswith(b"redis-server"):
            return "redis"
        if b"tests.standins.sendgrid" in command:
            return "stand-in"
        if pid == os.getpid():
            return "bench"
        ancestor = parents.get(pid)
        while ancestor and ancestor != os.getpid():
            ancestor = parents.get(ancestor)
        return "web and ack client" if ancestor else None

    def _hash_threads(self, pid: int) -> dict[int, tuple[str, float]]:
        """A worker's hash threads (named by the worker), keyed by minus their thread id."""
        found = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                if (task / "comm").read_text().strip() == HASH_THREAD_NAME:
                    found[-int(task.name)] = ("worker: hashing", _stat(pid, task.name)[1])
            except OSError:  # ended meanwhile
                continue
        return found

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        stats: dict[int, tuple[int, float]] = {}
        commands: dict[int, bytes] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stats[int(entry.name)] = _stat(entry.name)
                    commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:  # ended meanwhile
                    continue
        parents = {pid: parent for pid, (parent, _) in stats.items()}
        found = {}
        for pid, (_, cpu) in stats.items():
            group = self._group(pid, parents, commands.get(pid, b""))
            if group is not None:
                found[pid] = (group, cpu)
            if group == "worker":
                found |= self._hash_threads(pid)
        return found

    def split(self) -> dict[str, float]:
        """CPU seconds per group since this split was made, and `rest of the machine`."""
        end, machine = self._snapshot(), machine_cpu_seconds()
        groups: dict[str, float] = {}
        for pid, (group, cpu) in end.items():
            groups[group] = groups.get(group, 0.0) + cpu - self._start.get(pid, (group, 0.0))[1]
        hashing = groups.pop("worker: hashing", 0.0)
        groups["rest of the machine"] = machine - self._machine - sum(groups.values())
        if "worker" in groups:  # the workers' hash threads apart from the rest of their CPU
            groups["worker: the rest"] = groups.pop("worker") - hashing
            groups["worker: hashing"] = hashing
        return groups


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_consuming(client: redis.Redis, namespace: str, workers: list[subprocess.Popen[bytes]]) -> None:
    """Until every worker process fetches from Redis (Dramatiq's heartbeat set has one entry each)."""
    deadline = time.monotonic() + 120
    while client.zcard(f"{namespace}:__heartbeats__") < len(workers):
        if any(worker.poll() is not None for worker in workers) or time.monotonic() > deadline:
            raise SystemExit("the workers did not start")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="credbot worker processes")
    parser.add_argument("--delay", type=float, default=0.15, help="stand-in answer time in seconds")
    parser.add_argument("--sample", type=int, default=200, help="hashes timed for the floor")
    parser.add_argument("--nice", type=int, default=5, help="niceness of the worker processes")
    parser.add_argument(
        "--idle-priority",
        action="store_true",
        help="run the workers with --idle-priority (hashing under SCHED_IDLE)",
    )
    parser.add_argument(
        "--spare-core", action="store_true", help="HASH_THREADS_SPARE_CORE=true for the workers"
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"), required=False)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--mail-concurrency",
        type=int,
        default=Settings.model_fields["mail_concurrency"].default,
        help="MAIL_CONCURRENCY of the workers (mail threads per batch and process)",
    )
    parser.add_argument(
        "--mode",
        choices=["password", "link"],
        default="password",
        help="link: set-password links, no hashing (what a delivery costs beside its hash)",
    )
    parser.add_argument("--ack", action="store_true", help="also time /email-credentials acks (see above)")
    parser.add_argument("--commands", type=int, default=500, help="--ack: commands per measurement")
    parser.add_argument("--interval", type=float, default=0.1, help="--ack: seconds between two commands")
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("--database-url (PostgreSQL) is required")
    namespace = f"credbot-bench-{uuid.uuid4().hex[:8]}"
    print(
        f"{args.employees:,} employees ({2 * args.employees:,} emails), stand-in {args.delay * 1000:.0f} ms, "
        f"{args.workers} worker process(es) at nice {args.nice}{' and idle priority' * args.idle_priority}, "
        f"{'a spare core, ' * args.spare_core}MAIL_CONCURRENCY={args.mail_concurrency}, "
        f"{os.cpu_count()} CPUs"
    )
    per_hash, floor, hash_cpu = hashing_floor(args.employees, args.sample)
    print(
        f"hashing floor: {per_hash * 1000:.1f} ms per argon2id hash ({hash_cpu * 1000:.1f} ms of CPU) "
        f"-> {floor:.1f} s for the batch ({load()})"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        standin(args.delay) as standin_url,
        database("postgresql", Path(tmp), args.database_url) as url,
        ExitStack() as web,
    ):
        settings = Settings(
            _env_file=None,
            database_url=url,
            redis_url=args.redis_url,
            redis_namespace=namespace,
            sendgrid_api_key=SecretStr(API_KEY),
            sendgrid_api_host=standin_url,
            credential_mode=args.mode,
        )
        ctx = Context.from_settings(settings)
        ids = add_employees(ctx, args.employees)
        client = redis.Redis.from_url(args.redis_url)
        acks: dict[str, list[float]] = {}
        if args.ack:
            with ctx.sessions.begin() as session:
                add_admin(session, ADMIN_ID, "bench")
            slack = SlackStandIn().start()
            web.callback(slack.stop)
            web_url = web.enter_context(
                gunicorn(
                    "credbot.web:create_app()",
                    credbot_env(
                        url,
                        slack.url,
                        REDIS_URL=args.redis_url,
                        REDIS_NAMESPACE=namespace,
                        SENDGRID_API_KEY=API_KEY,
                        SENDGRID_API_HOST=standin_url,
                    ),
                    tmp,
                )
            )
            slash = web.enter_context(Client({"credbot": web_url}))
            for _ in range(20):  # warm up (connections, caches, the admin check)
                slash.time("credbot", "command")
            acks["idle"] = paced(slash, ["credbot"], args.commands, args.interval)["credbot"]
            print(figures(f"ack, no batch ({load()})", acks["idle"]))
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": args.redis_url,
            "REDIS_NAMESPACE": namespace,
            "SENDGRID_API_KEY": API_KEY,
            "SENDGRID_API_HOST": standin_url,
            "MAIL_CONCURRENCY": str(args.mail_concurrency),
            "WORKER_IDLE_PRIORITY": str(args.idle_priority).lower(),
            "HASH_THREADS_SPARE_CORE": str(args.spare_core).lower(),
        }
        workers = [
            subprocess.Popen(
                ["nice", "-n", str(args.nice), CREDBOT, "worker"],
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(args.workers)
        ]
        try:
            jobs.configure(ctx, in_process=False)
            wait_consuming(client, namespace, workers)
            cpu_before = [cpu_seconds(worker.pid) for worker in workers]
            split = CpuSplit([worker.pid for worker in workers], make_url(url).database or "")
            print(f"workers consuming; batch starts ({load()})", flush=True)
            started = utcnow()  # the batch's end is its finished_at, on the same clock
            batch_id = start_batch(ctx, ids, "bench", BatchSource.CLI)
            enqueue_batch(ctx, batch_id)
            if args.ack:
                acks["batch"] = paced(slash, ["credbot"], args.commands, args.interval)["credbot"]
                print(figures(f"ack, during the batch ({load()})", acks["batch"]))
            while True:
                time.sleep(0.5)
                with ctx.sessions() as session:
                    batch = session.get_one(CredentialBatch, batch_id)
                    if batch.status != BatchStatus.RUNNING:
                        counts = delivery_counts(session, batch_id)
                        assert batch.finished_at is not None
                        elapsed = (batch.finished_at - started).total_seconds()
                        break
            peaks = [peak_rss_mib(worker.pid) for worker in workers]
            cpus = [cpu_seconds(w.pid) - before for w, before in zip(workers, cpu_before, strict=True)]
            groups = split.split()
            ended_load = load()
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(60)
            jobs.shutdown()
            for key in client.scan_iter(match=f"{namespace}*"):
                client.delete(key)
            client.close()
            ctx.sessions.kw["bind"].dispose()
    sent = counts["sent"]
    time.sleep(SETTLE_SECONDS)  # the throw-away database dropped, the processes gone
    after = hashing_floor(args.employees, args.sample)
    print(
        f"hashing floor after the batch: {after[0] * 1000:.1f} ms per hash ({after[2] * 1000:.1f} ms of CPU) "
        f"-> {after[1]:.1f} s ({load()})"
    )
    floor, hash_cpu = min(floor, after[1]), min(hash_cpu, after[2])
    print(
        f"batch: {elapsed:.1f} s for {sent:,} sent "
        f"({counts['failed']} failed, {counts['in_doubt']} in doubt) "
        f"= {elapsed / floor:.2f}x the hashing floor (the lower one, {floor:.1f} s; "
        f"target <= 1.2x; {ended_load})"
    )
    print("peak RSS per worker process: " + ", ".join(f"{peak:,.0f} MiB" for peak in peaks))
    print(
        "CPU per worker process: "
        + ", ".join(f"{cpu:,.1f} s ({cpu * 1000 / args.employees:.1f} ms per employee)" for cpu in cpus)
    )
    busy = sum(groups.values())
    print(
        f"CPU of the whole machine during the batch: {busy:.1f} s of {elapsed * (os.cpu_count() or 2):.1f} s "
        f"({busy * 1000 / args.employees:.1f} ms per employee), of which:"
    )
    for group, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"  {group:<20} {seconds:7.1f} s  {seconds * 1000 / args.employees:5.1f} ms per employee")
    ours = (busy - groups["rest of the machine"]) / args.employees
    print(
        f"the batch's own CPU per employee / CPU per hash: {ours * 1000:.1f} / {hash_cpu * 1000:.1f} ms "
        f"= {ours / hash_cpu:.2f}x (the ratio on a machine of its own, if hashing kept every core busy)"
    )
    if acks:
        ratio = p99(acks["batch"]) / p99(acks["idle"])
        print(f"ack p99 during the batch / with no batch: {ratio:.2f}x (target <= 2x)")
    if sent != args.employees:
        raise SystemExit(f"only {sent} of {args.employees} sent")


if __name__ == "__main__":
    main()
