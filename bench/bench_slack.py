"""Benchmark the Slack endpoint with 100,000 employees: slash command and options (type-ahead) requests.

    .venv/bin/python bench/bench_slack.py [--employees 100000] [--commands 1000] [--searches 60]
                                          [--database-url postgresql://...]

Serves the real credbot web app and a bare Bolt app that only acks (same signing secret, same Bolt
settings, same werkzeug threaded server on 127.0.0.1) against the Slack Web API stand-in, and sends
them the same correctly signed requests, alternating between the two, from a client in a process of
its own (as Slack is: a client thread inside the server's process would share its interpreter lock
and time the lock, not the answer). After each slash command the
benchmark waits until credbot's background work (views.open) is done, plus --pause, so every request
is measured on its own, as Slack's sparse traffic arrives. Prints median and 99th percentile in milliseconds.

Targets: options p99 <= 50 ms; slash command p99 <= 1.2 x the bare app's.
With --stages, also prints where each slash command's time goes (instrumentation only, off by default):
the server's part (request received by the app -> response handed to werkzeug) and the part after it
(-> the benchmark, a thread of this same process, has read the answer), and how many of credbot's
answers were read only after its background work (opening the picker) had started running.
Always measures a fresh SQLite file in a temp dir; with --database-url (or BENCH_DATABASE_URL) also
that PostgreSQL server, in a throw-away database created next to it.

With --paced, the slash command is measured as an admin meets it instead: each app is served by gunicorn
(the Procfile's gthread worker) in a process of its own, and a third process sends --commands commands
to each, alternating, one every --interval seconds, without waiting for background work. Prints both
apps' median and p99 and their ratio (target: p99 <= 1.2 x the bare app's).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from flask import Flask, request
from pydantic import SecretStr
from slack_bolt import Ack, App
from slack_bolt.adapter.flask import SlackRequestHandler
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.admins import add_admin
from bot.context import Context
from bot.settings import Settings
from bot.slack_app import make_web_client
from credbot.web import create_web_app
from handlers import ids
from models import make_engine, make_session_factory
from tests.builders import insert_employees
from tests.databases import throwaway_database
from tests.slack_requests import SlackRequests
from tests.standins.slack import ADMIN_ID, BOT_TOKEN, SIGNING_SECRET, SlackStandIn

FIRST = ["Anna", "José", "Zoë", "Mark", "Chloé", "Jürgen", "Aiko", "Sven", "Priya", "Łukasz", "Ada", "Alan"]
LAST = [
    "Smith",
    "Núñez",
    "Müller",
    "Dubois",
    "Tanaka",
    "Østergaard",
    "Kowalski",
    "Patel",
    "Lovelace",
    "Turing",
]
QUERIES = [
    "anna",  # a common first name
    "muller",  # accent-folded last name
    "anna smith",  # two words
    "e0054321",  # one exact employee number
    "user777",  # part of an email / username
    "@example.com",  # matches everyone
    "zzzz",  # matches nobody: a full scan
    "nobody here",  # two words, nobody
]


def fill_directory(url: str, employees: int) -> None:
    """`employees` people with pending accounts in the migrated database at `url`, and the admin."""
    engine = make_engine(url)
    with engine.begin() as connection:
        insert_employees(
            connection, employees, name=lambda i: (FIRST[i % len(FIRST)], LAST[i // len(FIRST) % len(LAST)])
        )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        add_admin(session, ADMIN_ID, "bench")  # checked in the database, not via ADMIN_SLACK_USER_IDS
    engine.dispose()


def bare_app(settings: Settings) -> Flask:
    """A Bolt app that only acks, with credbot's Bolt settings."""
    app = App(client=make_web_client(settings), signing_secret=SIGNING_SECRET, process_before_response=True)

    @app.command(ids.COMMAND)
    def ack_command(ack: Ack) -> None:
        ack()

    @app.options(ids.EMPLOYEES_ACTION)
    def ack_options(ack: Ack) -> None:
        ack(options=[])

    handler = SlackRequestHandler(app)
    flask_app = Flask("bare")
    flask_app.add_url_rule("/slack/events", "events", lambda: handler.handle(request), methods=["POST"])
    return flask_app


def bare_from_env() -> Flask:
    """gunicorn's factory for the bare app in --paced mode (settings from the environment)."""
    return bare_app(Settings())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn(app: str, env: dict[str, str], cwd: str) -> Iterator[str]:
    """Serve the WSGI factory `app` with gunicorn as the Procfile does (one gthread worker); its URL."""
    port = free_port()
    bench_dir = str(Path(__file__).resolve().parent)
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        *("--bind", f"127.0.0.1:{port}", "--worker-class", "gthread", "--workers", "1", "--threads", "8"),
        *("--pythonpath", f"{bench_dir},{Path(bench_dir).parent}", "--log-level", "warning", app),
    ]
    server = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn {app} did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/slack/events"
    finally:
        server.terminate()
        server.wait(timeout=30)


def credbot_env(database_url: str, slack_api_url: str, **more: str) -> dict[str, str]:
    """The environment of credbot's web app under `gunicorn` against the Slack stand-in (`more` adds)."""
    return {
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_api_url,
        "SECRET_KEY": "bench-" + "k" * 32,
        "SENDGRID_API_KEY": "",
        **more,
    }


def paced(client: Client, names: Sequence[str], commands: int, interval: float) -> dict[str, list[float]]:
    """Ack times (ms) of `commands` slash commands to each app in `names`, alternating, `interval` s apart."""
    times: dict[str, list[float]] = {name: [] for name in names}
    next_at = time.monotonic()
    for _ in range(commands):
        for name in names:
            next_at += interval
            times[name].append(client.time(name, "command"))
            time.sleep(max(0.0, next_at - time.monotonic()))
    return times


def run_paced(label: str, url: str, args: argparse.Namespace) -> None:
    """--paced: both apps under gunicorn in processes of their own, commands paced --interval apart."""
    print(f"\n{label}: building {args.employees:,} employees ...", flush=True)
    fill_directory(url, args.employees)
    standin = SlackStandIn().start()
    env = credbot_env(url, standin.url)
    try:
        with (
            tempfile.TemporaryDirectory() as cwd,  # no .env is read there
            gunicorn("credbot.web:create_app()", env, cwd) as real,
            gunicorn("bench_slack:bare_from_env()", env, cwd) as bare,
            Client({"credbot": real, "bare": bare}) as client,
        ):
            for _ in range(20):  # warm up both (connections, caches, the admin check)
                client.time("credbot", "command")
                client.time("bare", "command")
            standin.wait_for_call("views.open", 20, timeout=30)
            times = paced(client, ("credbot", "bare"), args.commands, args.interval)
            standin.wait_for_call("views.open", 20 + args.commands, timeout=60)
    finally:
        standin.stop()
    print(figures("slash command, credbot (paced)", times["credbot"]))
    print(figures("slash command, bare Bolt app (paced)", times["bare"]))
    ratio = p99(times["credbot"]) / p99(times["bare"])
    median_ratio = statistics.median(times["credbot"]) / statistics.median(times["bare"])
    print(
        f"  paced slash command credbot/bare: p99 {ratio:.2f}x (target <= 1.20), median {median_ratio:.2f}x"
    )
    if standin.problems:
        print(f"  Slack stand-in saw invalid views: {standin.problems[:3]}")


@contextmanager
def serving(flask_app: Flask) -> Iterator[str]:
    """Serve `flask_app` on a free loopback port; its /slack/events URL."""
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/slack/events"
    finally:
        server.shutdown()


def client_loop(conn: Connection, urls: dict[str, str]) -> None:
    """The client process: sends each signed request it is asked for and returns when it was answered."""
    apps = {name: SlackRequests(url) for name, url in urls.items()}
    while (job := conn.recv()) is not None:
        name, kind, value = job
        started = time.perf_counter()
        answer = apps[name].command() if kind == "command" else apps[name].options(value)
        ended = time.perf_counter()  # CLOCK_MONOTONIC: comparable with the server process's stamps
        conn.send((started, ended, answer.status, str(answer.body)[:200]))


class Client:
    """Times requests sent from a separate process; the server process waits on a pipe meanwhile."""

    def __init__(self, urls: dict[str, str]) -> None:
        spawn = multiprocessing.get_context("spawn")
        self._conn, child = spawn.Pipe()
        self._process = spawn.Process(target=client_loop, args=(child, urls), daemon=True)
        self._process.start()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self._conn.send(None)
        self._process.join(timeout=10)

    def time(
        self, name: str, kind: str, value: str = "", stamps: list[tuple[float, float]] | None = None
    ) -> float:
        """Milliseconds from sending `kind` ("command" or "options") to app `name` to its answer."""
        self._conn.send((name, kind, value))
        started, ended, status, body = self._conn.recv()
        if status != 200:
            raise RuntimeError(f"unexpected answer {status}: {body}")
        if stamps is not None:
            stamps.append((started, ended))
        return (ended - started) * 1000


def figures(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"  {label:<42} n={len(times):>4}  median {statistics.median(times):6.1f} ms  p99 {p99:6.1f} ms"


def p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


class Stages:
    """--stages: time stamps of each request in the servers and of credbot's background jobs."""

    def __init__(self) -> None:
        self.client: dict[str, list[tuple[float, float]]] = {"credbot": [], "bare": []}
        self.server: dict[str, list[tuple[float, float]]] = {"credbot": [], "bare": []}
        self.job_starts: list[float] = []

    def watch(self, name: str, flask_app: Flask) -> None:
        """Stamp when the app gets each request and when it hands the response back to werkzeug."""
        inner = flask_app.wsgi_app

        def stamped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            received = time.perf_counter()
            body = inner(environ, start_response)
            self.server[name].append((received, time.perf_counter()))
            return body

        flask_app.wsgi_app = stamped  # type: ignore[method-assign]

    def watch_jobs(self, credbot: Flask) -> None:
        """Stamp when each of credbot's background jobs starts running on its pool."""
        pool = credbot.extensions["credbot_bolt"].listener_runner.listener_executor.pool
        submit = pool.submit

        def stamped_submit(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            def job(*job_args: Any, **job_kwargs: Any) -> Any:
                self.job_starts.append(time.perf_counter())
                return fn(*job_args, **job_kwargs)

            return submit(job, *args, **kwargs)

        pool.submit = stamped_submit

    def report(self) -> None:
        print("  stages of the slash commands (--stages); server: received -> response handed to werkzeug,")
        print("  after: handed -> read by the benchmark's client process")
        for name in ("credbot", "bare"):
            server, after, overlapped, others = [], [], [], []
            jobs = self.job_starts
            for sent, answered in self.client[name]:
                inside = [s for s in self.server[name] if sent <= s[0] <= answered]
                if not inside:
                    continue
                received, handed = inside[0]
                server.append((handed - received) * 1000)
                after.append((answered - handed) * 1000)
                if any(handed <= start <= answered for start in jobs):
                    overlapped.append(after[-1])
                else:
                    others.append(after[-1])
            print(figures(f"{name}: server", server))
            print(figures(f"{name}: after", after))
            print(
                f"  {name}: {len(overlapped)} of {len(after)} answers read after a credbot background job "
                "had started"
            )
            if overlapped:
                print(figures(f"{name}: those answers' 'after'", overlapped))
            if others:
                print(figures(f"{name}: the other answers' 'after'", others))


def run(label: str, url: str, args: argparse.Namespace) -> None:
    print(f"\n{label}: building {args.employees:,} employees ...", flush=True)
    fill_directory(url, args.employees)
    standin = SlackStandIn().start()
    settings = Settings(
        _env_file=None,
        database_url=url,
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=standin.url,
        secret_key=SecretStr("bench"),
    )
    ctx = Context.from_settings(settings)
    credbot = create_web_app(ctx)
    bare_flask = bare_app(settings)
    stages = Stages() if args.stages else None
    if stages:
        stages.watch("credbot", credbot)
        stages.watch("bare", bare_flask)
        stages.watch_jobs(credbot)
    try:
        with (
            serving(credbot) as real,
            serving(bare_flask) as bare,
            Client({"credbot": real, "bare": bare}) as client,
        ):
            for _ in range(20):  # warm up both (connections, caches)
                client.time("credbot", "options", "anna")
                client.time("bare", "options", "anna")
            command_times: dict[str, list[float]] = {"credbot": [], "bare": []}
            for _ in range(args.commands):
                opened = len(standin.calls_to("views.open"))
                command_times["credbot"].append(
                    client.time("credbot", "command", stamps=stages and stages.client["credbot"])
                )
                standin.wait_for_call("views.open", opened + 1, timeout=30)
                time.sleep(args.pause)  # its background work (after views.open) ends too
                command_times["bare"].append(
                    client.time("bare", "command", stamps=stages and stages.client["bare"])
                )
            option_times: dict[str, list[float]] = {query: [] for query in QUERIES}
            bare_options: list[float] = []
            for _ in range(args.searches):
                for query in QUERIES:
                    option_times[query].append(client.time("credbot", "options", query))
                    bare_options.append(client.time("bare", "options", query))
    finally:
        credbot.extensions["credbot_bolt"].listener_runner.listener_executor.shutdown(wait=True)
        standin.stop()
        ctx.sessions.kw["bind"].dispose()

    print(figures("slash command, credbot", command_times["credbot"]))
    print(figures("slash command, bare Bolt app (ack only)", command_times["bare"]))
    ratio = p99(command_times["credbot"]) / p99(command_times["bare"])
    median_ratio = statistics.median(command_times["credbot"]) / statistics.median(command_times["bare"])
    print(f"  slash command credbot/bare: p99 {ratio:.2f}x (target <= 1.20), median {median_ratio:.2f}x")
    if stages:
        stages.report()
    every_search: list[float] = []
    for query, times in option_times.items():
        print(figures(f"options {query!r}", times))
        every_search += times
    print(figures("options, all queries, credbot", every_search))
    print(figures("options, bare Bolt app (ack only)", bare_options))
    print(f"  options p99: {p99(every_search):.1f} ms (target <= 50)")
    if standin.problems:
        print(f"  Slack stand-in saw invalid views: {standin.problems[:3]}")


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--commands", type=int, default=1000, help="slash commands sent to each app")
    parser.add_argument("--searches", type=int, default=60, help="rounds of the options queries")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.05,
        help="seconds between commands, as real ones arrive seconds apart",
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument(
        "--stages", action="store_true", help="also print where each slash command's time goes"
    )
    parser.add_argument(
        "--paced",
        action="store_true",
        help="slash commands only, each app under gunicorn in a process of its own, paced --interval apart",
    )
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between two --paced commands")
    args = parser.parse_args()
    measure = run_paced if args.paced else run
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}")
    with tempfile.TemporaryDirectory() as directory, throwaway_database("sqlite", Path(directory)) as url:
        measure("SQLite", url, args)
    if args.database_url:
        with throwaway_database("postgresql", None, args.database_url) as url:
            measure("PostgreSQL", url, args)


if __name__ == "__main__":
    main()
