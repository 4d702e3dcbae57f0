"""Benchmark SendGrid's Event Webhook: signed POSTs of 1,000 events each, verified and applied.

    .venv/bin/python bench/bench_delivery_events.py [--posts 100] [--per-post 1000] [--hostile 0.1]
                                                     [--database-url postgresql://...]

Serves the real credbot web app (werkzeug, threaded) in a process of its own, against a throw-away
PostgreSQL database (created next to --database-url, default BENCH_DATABASE_URL or the local server)
holding one Slack batch with posts x per-post / 4 deliveries, and the Slack Web API stand-in in this
process. Then posts --posts signed batches of --per-post events in a row (processed and delivered for
each delivery's two emails, every 200th delivery bouncing), each signed with a real P-256 key, as
SendGrid does. --hostile of each POST's events (default 10%) are foreign or malformed instead: another
app's mail with generic args, another credbot install's, a message credbot never sent, a 20-digit id,
a bad timestamp, an event nested too deep; they are counted and ignored. Prints the time per POST
(median, 99th percentile: answered, so verified and applied), the load average, the server's resident
memory along the run, how many times the batch's summary was updated in Slack (chat.update), and how
many bounces were posted in its thread.

Targets: p99 <= 250 ms per POST of 1,000 events with 10% foreign or malformed; memory flat over 100,000
events; at most one summary update every few seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import SecretStr
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.audit import slack_actor
from bot.context import Context
from bot.installation import BATCH_ARG, DELIVERY_ARG, INSTANCE_ARG
from bot.settings import Settings
from credbot.web import create_web_app
from models import make_engine, utcnow
from tests.builders import insert_employees
from tests.databases import throwaway_database
from tests.standins.sendgrid_webhook import EventWebhookSender
from tests.standins.slack import ADMIN_ID, BOT_TOKEN, CHANNEL_ID, SIGNING_SECRET, SlackStandIn

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
INSTANCE = "bench"


def fill(url: str, deliveries: int, ts: str) -> int:
    """Employees, one finished Slack batch with its summary message, its sent deliveries; the batch id."""
    engine = make_engine(url)
    now = utcnow()
    summary = {
        "channel": CHANNEL_ID,
        "ts": ts,
        "text": "summary",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "summary"}}],
    }
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO credential_batches (id, requested_by, source, channel_id, mode, status, "
                "slack_message_ts, slack_summary, resumed, created_at) VALUES (1, :by, 'slack', :channel, "
                "'password', 'finished', :ts, :summary, 0, :now)"
            ).bindparams(sa.bindparam("summary", type_=sa.JSON)),
            {"by": slack_actor(ADMIN_ID), "channel": CHANNEL_ID, "ts": ts, "summary": summary, "now": now},
        )
        employee_ids = insert_employees(
            connection, deliveries, first=1, name=lambda _: ("Ada", "Lovelace"), accounts=False
        )
        connection.execute(
            sa.text(
                "INSERT INTO deliveries (id, batch_id, employee_id, email_address, status, attempts, "
                "welcome_message_id, username_message_id, bypass_bounce_list, created_at, updated_at) "
                "VALUES (:id, 1, :employee, :email, 'sent', 2, :welcome, :username, false, :now, :now)"
            ),
            [
                {
                    "id": i,
                    "employee": employee,
                    "email": f"user{i}@example.com",
                    "welcome": message_id("welcome", i),
                    "username": message_id("username", i),
                    "now": now,
                }
                for i, employee in enumerate(employee_ids, 1)
            ],
        )
    engine.dispose()
    return 1


def message_id(email: str, delivery: int) -> str:
    """The X-Message-Id SendGrid answered for a delivery's email (what credbot stored)."""
    return f"{email[0]}{delivery:021d}"


def events_for(first: int, count: int, at: int, hostile: float) -> list[dict[str, Any]]:
    """Four events per delivery (processed, then delivered or bounce, for both emails); `hostile` of them
    replaced by foreign or malformed ones."""
    events = []
    for delivery in range(first, first + count):
        for category in ("credbot-welcome", "credbot-username"):
            email = category.removeprefix("credbot-")
            common = {
                "email": f"user{delivery}@example.com",
                "timestamp": at,
                "category": [category],
                INSTANCE_ARG: INSTANCE,
                BATCH_ARG: "1",
                DELIVERY_ARG: str(delivery),
                "sg_message_id": f"{message_id(email, delivery)}.filter0001.16648.5515E0B88.0",
            }
            final: dict[str, Any] = {"event": "delivered", "response": "250 OK"}
            if delivery % 200 == 0:
                final = {
                    "event": "bounce",
                    "type": "bounce",
                    "status": "5.1.1",
                    "reason": "550 5.1.1 user unknown",
                }
            events.append({**common, "event": "processed", "sg_event_id": uuid.uuid4().hex})
            events.append({**common, **final, "timestamp": at + 2, "sg_event_id": uuid.uuid4().hex})
    every = round(1 / hostile) if hostile else 0
    for index in range(0, len(events), every) if every else ():
        events[index] = HOSTILE[index // every % len(HOSTILE)](events[index])
    return events


HOSTILE: list[Callable[[dict[str, Any]], dict[str, Any]]] = [
    lambda e: {  # another app's mail, with generic custom args
        "email": e["email"],
        "event": "bounce",
        "timestamp": e["timestamp"],
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": "Other.filter0001",
        "batch_id": "1",
        "delivery_id": e[DELIVERY_ARG],
        "category": ["newsletter"],
    },
    lambda e: {**e, INSTANCE_ARG: "another-install", "sg_event_id": uuid.uuid4().hex},
    lambda e: {**e, "sg_message_id": "NeverSent.filter0001", "sg_event_id": uuid.uuid4().hex},
    lambda e: {**e, DELIVERY_ARG: "1" * 20, "sg_event_id": uuid.uuid4().hex},
    lambda e: {**e, "timestamp": "soon", "sg_event_id": uuid.uuid4().hex},
    lambda e: {**e, "pool": [[[[[["too deep"]]]]]], "sg_event_id": uuid.uuid4().hex},
]
"""Foreign or malformed events, made from a genuine one."""


def serve(settings: dict[str, Any], conn: Connection) -> None:
    """The credbot web app, in this (child) process, until the parent closes the pipe."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    values = {
        key: SecretStr(value) if key.startswith(("slack_bot", "slack_signing", "sendgrid_api_key")) else value
        for key, value in settings.items()
    }
    ctx = Context.from_settings(Settings(_env_file=None, **values))
    server = make_server("127.0.0.1", 0, create_web_app(ctx, verify_token=False), threaded=True)
    conn.send(server.server_port)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    with suppress(EOFError):
        conn.recv()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(url: str, posts: int, per_post: int, hostile: float) -> None:
    slack = SlackStandIn().start()
    per_delivery = 4
    deliveries = posts * per_post // per_delivery
    sender = EventWebhookSender("")
    from slack_sdk import WebClient

    ts = WebClient(token=BOT_TOKEN, base_url=slack.url).chat_postMessage(channel=CHANNEL_ID, text="summary")[
        "ts"
    ]
    started = time.monotonic()
    fill(url, deliveries, ts)
    print(f"filled {deliveries:,} deliveries in {time.monotonic() - started:.1f} s")
    settings = {
        "database_url": url,
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": slack.url,
        "sendgrid_api_key": "SG.bench",
        "sendgrid_webhook_public_key": sender.public_key,
        "credbot_instance": INSTANCE,
        "secret_key": "bench",
    }
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=serve, args=(settings, child), daemon=True)
    process.start()
    port = parent.recv()
    sender.url = f"http://127.0.0.1:{port}/sendgrid/events"
    times, memory = [], {}
    cpu_before = cpu_seconds(process.pid)
    at = int(time.time())
    run_started = time.monotonic()
    for number in range(posts):
        events = events_for(number * per_post // per_delivery + 1, per_post // per_delivery, at, hostile)
        body = json.dumps(events).encode()
        begin = time.perf_counter()
        answer = sender.post(body=body)
        times.append(time.perf_counter() - begin)
        assert answer.status == 200, answer
        if number + 1 in (1, posts // 10, posts // 2, posts):
            memory[(number + 1) * per_post] = rss_mib(process.pid)
    elapsed = time.monotonic() - run_started
    cpu_per_post = (cpu_seconds(process.pid) - cpu_before) / posts
    quiet_since, seen = time.monotonic(), len(slack.calls)
    while time.monotonic() - quiet_since < 4:  # the last scheduled update and thread replies
        time.sleep(0.2)
        if len(slack.calls) != seen:
            quiet_since, seen = time.monotonic(), len(slack.calls)
    waited = time.monotonic() - run_started
    updates = [c for c in slack.calls_to("chat.update") if c.args.get("ts") == ts]
    posted = [c for c in slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == ts]
    first, warm = times[0], sorted(times[1:])
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    warm_p99 = warm[min(len(warm) - 1, int(len(warm) * 0.99))] if warm else first
    print(
        f"{posts} POSTs of {per_post:,} events ({posts * per_post:,} events, {hostile:.0%} foreign or "
        f"malformed) in {elapsed:.1f} s"
    )
    median = statistics.median(times) * 1000
    print(f"  per POST: median {median:.0f} ms, p99 {p99 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
    print(f"  the first POST (new connections) {first * 1000:.0f} ms; others p99 {warm_p99 * 1000:.0f} ms")
    print(f"  server CPU per POST {cpu_per_post * 1000:.0f} ms (PostgreSQL not counted, Slack updates are)")
    print(f"  load average at the end: {Path('/proc/loadavg').read_text().strip()} (target p99 <= 250 ms)")
    print(
        "  server memory (RSS) after "
        + ", ".join(f"{n:,} events: {mib:.0f} MiB" for n, mib in memory.items())
    )
    gaps = [b.at - a.at for a, b in itertools.pairwise(updates)]
    shortest = f", shortest gap {min(gaps):.1f} s" if gaps else ""
    employees = sum(str(c.args.get("text", "")).count("did not get their credentials") for c in posted)
    print(f"  Slack: {len(updates)} summary updates (chat.update) in {waited:.0f} s{shortest}")
    print(f"  Slack: {employees} bounced employees posted in {len(posted)} thread replies")
    if updates:
        print(f"  last delivery line: {updates[-1].args.get('text', '').splitlines()[-1]}")
    parent.close()
    process.join(10)
    slack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--per-post", type=int, default=1000)
    parser.add_argument("--hostile", type=float, default=0.1, help="share of foreign or malformed events")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    args = parser.parse_args()
    with throwaway_database("postgresql", None, args.database_url) as url:
        run(url, args.posts, args.per_post, args.hostile)


if __name__ == "__main__":
    main()
