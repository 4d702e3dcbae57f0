"""Background jobs: Dramatiq actors, the broker from settings, and a scheduler for periodic jobs.

With REDIS_URL set, jobs go through Dramatiq's RedisBroker: web processes only enqueue, and
`credbot worker` processes run them. Without it, the StubBroker is used and an in-process Dramatiq
worker is started on first use, so the same actors run the same way in the quick start.

Declaring a job (in the core, add the module to JOB_MODULES so that every process imports it; in the
Slack adapter, which the core never imports, to `credbot.wiring.SLACK_JOB_MODULES`)::

    from bot import jobs

    @jobs.job(max_retries=5)
    def send_report(ctx: Context, report_id: int) -> None:   # ctx: the process's Context
        ...

    send_report.send(42)          # enqueue; arguments must be JSON (ids, strings, numbers)

An actor never receives the Context as an argument: the layer passes the process's one (settings and
sessions). `on_give_up(ctx, error, *args)` runs once the last retry failed, e.g. to audit the failure.

Periodic jobs: `jobs.every(60)(some_job)` or `jobs.daily(at="07:30")(some_job)` (at may also be a
function of the Settings, e.g. `lambda s: s.digest_time`). `credbot worker` enqueues each due run;
when several workers run, only one enqueues it (a Redis `SET NX` per due run; without Redis, only
the process holding a file lock schedules).

Tests point the layer at their own Context, and at the stub or at Redis with a namespace of their own:
`jobs.configure(ctx, redis_url=..., namespace=...)`, `jobs.join()`, `jobs.shutdown()`.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any, Generic, ParamSpec, TypeVar

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage

from bot.context import Context
from bot.settings import Settings

log = logging.getLogger(__name__)

JOB_MODULES = [
    "bot.notices",
    "bot.scim_notices",
    "bot.portal.recovery",
    "bot.delivery_events",
    "bot.sending.jobs",
]
"""The core's modules that declare jobs; every process that configures the layer imports them. The Slack
adapter's are imported by the entry points (`credbot.wiring`)."""

IN_PROCESS_THREADS = 4
DEFAULT_MIN_BACKOFF_MS = 2_000
DEFAULT_MAX_BACKOFF_MS = 120_000

P = ParamSpec("P")
R = TypeVar("R")


class Job(Generic[P, R]):
    """A declared job: call it directly with a Context, or `send(...)` it to run in a worker."""

    def __init__(
        self,
        fn: Callable[..., R],
        name: str,
        options: dict[str, Any],
        on_give_up: Callable[..., None] | None,
    ) -> None:
        self.fn, self.name, self.options, self.on_give_up = fn, name, options, on_give_up

    def __call__(self, ctx: Context, *args: Any) -> R:
        return self.fn(ctx, *args)

    def send(self, *args: Any, delay_seconds: float | None = None) -> None:
        """Enqueue one run with JSON `args`."""
        actor = _actor(self.name)
        delay = int(delay_seconds * 1000) if delay_seconds else None
        actor.send_with_options(args=args, delay=delay)
        _state.kick()

    def _run(self, *args: Any) -> None:
        """The actor body: the job with the process's Context; after the last retry, `on_give_up`."""
        ctx = context()
        try:
            self.fn(ctx, *args)
        except Exception as error:
            message = CurrentMessage.get_current_message()
            retries = message.options.get("retries", 0) if message else 0
            last = retries >= self.options.get("max_retries", 0)
            if not last or self.on_give_up is None:
                raise
            log.exception("job %s gave up after %d retries", self.name, retries)
            self.on_give_up(ctx, error, *args)


_jobs: dict[str, Job[Any, Any]] = {}


def declared() -> set[str]:
    """The names of every declared job (the job modules loaded)."""
    _ensure()
    return set(_jobs)


def by_name(name: str) -> Job[Any, Any]:
    """The declared job called `name` (see `declared`)."""
    _ensure()
    return _jobs[name]


def job(
    name: str | None = None,
    *,
    max_retries: int = 0,
    min_backoff_ms: int = DEFAULT_MIN_BACKOFF_MS,
    max_backoff_ms: int = DEFAULT_MAX_BACKOFF_MS,
    time_limit_ms: int = 10 * 60 * 1000,
    queue: str = "default",
    on_give_up: Callable[..., None] | None = None,
) -> Callable[[Callable[..., R]], Job[Any, R]]:
    """Declare `fn(ctx, *json_args)` as a job (see the module docstring)."""

    def declare(fn: Callable[..., R]) -> Job[Any, R]:
        options = {
            "max_retries": max_retries,
            "min_backoff": min_backoff_ms,
            "max_backoff": max_backoff_ms,
            "time_limit": time_limit_ms,
            "queue_name": queue,
        }
        declared = Job[Any, R](fn, name or f"{fn.__module__}.{fn.__name__}", options, on_give_up)
        _jobs[declared.name] = declared
        with _state.lock:
            if _state.broker is not None:
                _declare(_state.broker, declared)
        return declared

    return declare


def _declare(broker: dramatiq.Broker, declared: Job[Any, Any]) -> None:
    if declared.name in broker.actors:
        return
    options = dict(declared.options)
    queue_name = options.pop("queue_name")
    dramatiq.Actor(
        declared._run,
        actor_name=declared.name,
        queue_name=queue_name,
        priority=0,
        broker=broker,
        options=options,
    )


# --- the broker and the in-process worker -------------------------------------------------------------


@dataclass
class _State:
    lock: threading.RLock = field(default_factory=threading.RLock)
    broker: dramatiq.Broker | None = None
    ctx: Context | None = None
    namespace: str = "credbot"
    redis: redis.Redis | None = None
    in_process: bool = True
    worker: dramatiq.Worker | None = None

    def kick(self) -> None:
        """Start the in-process worker on first use (StubBroker, or a test asking for one)."""
        if self.worker is None and self.in_process:
            start_worker(IN_PROCESS_THREADS)


_state = _State()


def configure(
    ctx: Context,
    *,
    redis_url: str | None = None,
    namespace: str | None = None,
    in_process: bool | None = None,
) -> dramatiq.Broker:
    """Point the layer at `ctx` and a broker: Redis at `redis_url` (default REDIS_URL), else the stub.

    `in_process`: start a worker in this process on the first enqueue (default: only with the stub).
    """
    shutdown()
    url = ctx.settings.redis_url if redis_url is None else redis_url
    namespace = namespace or ctx.settings.redis_namespace
    broker: dramatiq.Broker
    with _state.lock:
        if url:
            # A queue that does not answer fails an enqueue in seconds (it waits in the outbox).
            client = redis.Redis.from_url(url, socket_connect_timeout=5)
            broker = RedisBroker(client=client, namespace=namespace)
            _state.redis = client
        else:
            broker = StubBroker()
            broker.emit_after("process_boot")
            _state.redis = None
        broker.add_middleware(CurrentMessage())
        _state.broker, _state.ctx, _state.namespace = broker, ctx, namespace
        _state.in_process = (not url) if in_process is None else in_process
        load_job_modules()
        for declared in _jobs.values():
            _declare(broker, declared)
        dramatiq.set_broker(broker)
    return broker


def load_job_modules() -> None:
    for module in JOB_MODULES:
        importlib.import_module(module)


def use(ctx: Context) -> None:
    """Configure the layer for `ctx` unless it is configured already (web app, CLI, enqueuing helpers)."""
    with _state.lock:
        if _state.broker is None:
            configure(ctx)


def _ensure() -> dramatiq.Broker:
    with _state.lock:
        if _state.broker is None:
            configure(Context.from_settings())
        assert _state.broker is not None
        return _state.broker


def _actor(name: str) -> dramatiq.Actor[Any, Any]:
    return _ensure().get_actor(name)


def context() -> Context:
    """The Context jobs run with (configure's, or one built from the environment)."""
    _ensure()
    assert _state.ctx is not None
    return _state.ctx


def redis_client() -> redis.Redis | None:
    """The Redis connection jobs use, or None with the stub broker."""
    _ensure()
    return _state.redis


def key(*parts: str) -> str:
    """A Redis key in this layer's namespace."""
    return ":".join([_state.namespace, *parts])


def start_worker(threads: int) -> dramatiq.Worker:
    """Start a Dramatiq worker in this process on the configured broker (idempotent)."""
    broker = _ensure()
    with _state.lock:
        if _state.worker is None:
            worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
            worker.start()
            _state.worker = worker
        return _state.worker


def start_background(ctx: Context) -> None:
    """For a web or Socket Mode process: without Redis, run jobs and the scheduler in this process."""
    use(ctx)
    if _state.in_process:
        start_worker(IN_PROCESS_THREADS)
        Scheduler().start()


def join(timeout: float = 60.0) -> None:
    """Wait until every queue is empty and the in-process worker is idle (tests, the CLI)."""
    broker = _state.broker
    if broker is None:
        return
    deadline = time.monotonic() + timeout
    for queue in list(broker.get_declared_queues()):
        remaining = max(1, int((deadline - time.monotonic()) * 1000))
        broker.join(queue, timeout=remaining)
    if _state.worker is not None:
        _state.worker.join()


def shutdown(timeout_seconds: float = 10.0) -> None:
    """Stop the in-process worker (waiting up to `timeout_seconds` for its jobs) and forget the broker
    (tests; process exit)."""
    with _state.lock:
        worker, broker, client = _state.worker, _state.broker, _state.redis
        _state.worker = _state.broker = _state.ctx = _state.redis = None
    if worker is not None:
        worker.stop(timeout=int(timeout_seconds * 1000))
    if broker is not None:
        broker.close()
    if client is not None:
        client.close()


# --- periodic jobs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Schedule:
    job: Job[Any, Any]
    seconds: float | Callable[[Settings], float] | None = None
    at: str | Callable[[Settings], str] | None = None

    def due_slot(self, settings: Settings, now: datetime) -> str | None:
        """An id for the run due at `now` (None: nothing due): a time slot, or today's date."""
        if self.seconds is not None:
            seconds = self.seconds(settings) if callable(self.seconds) else self.seconds
            return f"{seconds:g}:{int(now.timestamp() // seconds)}"
        at = self.at(settings) if callable(self.at) else self.at
        if not at:
            return None  # switched off (e.g. DIGEST_TIME empty)
        hours, minutes = (int(part) for part in at.split(":"))
        occurrence = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
        if occurrence > now:
            occurrence -= timedelta(days=1)
        if now - occurrence > timedelta(hours=1):
            return None  # missed by more than an hour (worker down): wait for the next one
        return occurrence.date().isoformat()

    claim_seconds = 2 * 86_400 + 60
    """How long a claimed due run is remembered in Redis (longer than any period or day)."""


_schedules: dict[str, _Schedule] = {}


def every(seconds: float | Callable[[Settings], float]) -> Callable[[Job[Any, Any]], Job[Any, Any]]:
    """Register a job (no arguments) to run every `seconds` (or a function of settings), on one worker."""

    def register(declared: Job[Any, Any]) -> Job[Any, Any]:
        _schedules[declared.name] = _Schedule(declared, seconds=seconds)
        return declared

    return register


def daily(at: str | Callable[[Settings], str]) -> Callable[[Job[Any, Any]], Job[Any, Any]]:
    """Register a job (no arguments) to run once a day at `at` ("HH:MM" UTC, or a function of settings)."""

    def register(declared: Job[Any, Any]) -> Job[Any, Any]:
        _schedules[declared.name] = _Schedule(declared, at=at)
        return declared

    return register


class Scheduler:
    """Enqueues due periodic jobs, once per due run across every worker process."""

    def __init__(self, tick_seconds: float = 1.0) -> None:
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="credbot-scheduler", daemon=True)
        self._claimed: set[tuple[str, str]] = set()
        self._lock_file: IO[str] | None = None

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._lock_file is not None:
            self._lock_file.close()

    def run_due(self, now: datetime | None = None) -> list[str]:
        """Enqueue what is due now and not yet claimed by any process; the names enqueued."""
        now = now or datetime.now(UTC)
        settings = context().settings
        enqueued = []
        for name, schedule in list(_schedules.items()):
            slot = schedule.due_slot(settings, now)
            if slot is not None and self._claim(name, slot, schedule.claim_seconds):
                schedule.job.send()
                enqueued.append(name)
        return enqueued

    def _claim(self, name: str, slot: str, ttl: int) -> bool:
        if (name, slot) in self._claimed:
            return False
        client = redis_client()
        if client is not None:
            won = bool(client.set(key("schedule", name, slot), "1", nx=True, ex=ttl))
        else:
            won = self._leader()
        if won:
            self._claimed.add((name, slot))
        return won

    def _leader(self) -> bool:
        """Without Redis: true in the one process holding the scheduler's file lock for this database."""
        if self._lock_file is None:
            digest = hashlib.sha256(context().settings.database_url.encode()).hexdigest()[:16]
            path = f"{tempfile.gettempdir()}/credbot-scheduler-{digest}.lock"
            self._lock_file = open(path, "a")  # noqa: SIM115 (held for the process's life)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_due()
            except Exception:  # Redis or the database away for a moment: try again at the next tick
                log.exception("the scheduler could not enqueue due jobs")
            self._stop.wait(self.tick_seconds)
