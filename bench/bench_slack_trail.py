"""Benchmark the Slack trail of many batches at once: chat.update within its tier, and how soon after the
last delivery event every batch's summary is final.

    .venv/bin/python bench/bench_slack_trail.py [--batches 10] [--employees 1000] [--delay 0.15]
                                               [--database-url postgresql://...] [--sqlite]

Serves the real credbot web app (werkzeug, threaded) for SendGrid's signed Event Webhook, with the Slack
Web API stand-in (which enforces Slack's tiers: chat.update 50 a minute, 429 with Retry-After beyond) and
the SendGrid stand-in (answering in --delay seconds) in this process, on a throw-away database
(PostgreSQL next to --database-url, default BENCH_DATABASE_URL or the local server; --sqlite: a file).
Starts --batches Slack batches of --employees each at once on the in-process job worker, as
"Send emails" does, while a thread posts SendGrid's events for every email accepted so far once a
second (every 100th address bounces). Then waits until every batch's summary shows its final delivery
line ("0 waiting").

Prints chat.update calls: the most in any 60 s window (Slack's Tier 3 allows about 50), how many were
answered 429, and the time from the last event posted to the last summary written (target <= 10 s).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot import jobs
from bot.audit import slack_actor
from bot.context import Context
from bot.sending.batches import start_batch
from bot.sending.jobs import enqueue_batch
from bot.settings import Settings
from credbot.web import create_web_app
from models import BatchSource, CredentialBatch
from tests.builders import insert_employees
from tests.databases import throwaway_database
from tests.standins.sendgrid import API_KEY, SendGridStandIn
from tests.standins.sendgrid_webhook import EventWebhookSender
from tests.standins.slack import ADMIN_ID, BOT_TOKEN, CHANNEL_ID, SIGNING_SECRET, SlackStandIn

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
EVENTS_PER_POST = 1000
WINDOW = 60.0


class EventStream:
    """Posts every new SendGrid event once a second, as SendGrid batches them; remembers the last post."""

    def __init__(self, sendgrid: SendGridStandIn, sender: EventWebhookSender) -> None:
        self.sendgrid, self.sender = sendgrid, sender
        self.seen: set[tuple[str, str, str]] = set()
        """(message, address, event) already posted: the stand-in makes new event ids at each call."""
        self.last_posted = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            self.post_new()

    def post_new(self) -> int:
        new = [e for e in self.sendgrid.events() if _key(e) not in self.seen]
        for start in range(0, len(new), EVENTS_PER_POST):
            chunk = new[start : start + EVENTS_PER_POST]
            answer = self.sender.post(chunk)
            if answer.status != 200:
                raise SystemExit(f"the webhook answered {answer.status}: {answer.body[:200]}")
            self.seen.update(_key(e) for e in chunk)
            self.last_posted = time.monotonic()
        return len(new)


def _key(event: dict[str, Any]) -> tuple[str, str, str]:
    return event["sg_message_id"], event["email"], event["event"]


def final_line(message: dict[str, Any]) -> bool:
    text = str(message.get("text", ""))
    return "Delivery:" in text and "· 0 waiting" in text


def run(url: str, batches: int, employees: int, delay: float) -> None:
    slack, sendgrid = SlackStandIn().start(), SendGridStandIn(delay=delay).start()
    sender = EventWebhookSender("")
    settings = Settings(
        _env_file=None,
        database_url=url,
        slack_bot_token=SecretStr(BOT_TOKEN),
        slack_signing_secret=SecretStr(SIGNING_SECRET),
        slack_api_url=slack.url,
        admin_slack_user_ids=ADMIN_ID,
        sendgrid_api_key=SecretStr(API_KEY),
        sendgrid_api_host=sendgrid.url,
        sendgrid_webhook_public_key=sender.public_key,
    )
    ctx = Context.from_settings(settings)
    jobs.IN_PROCESS_THREADS = batches + 8  # every batch at once, and the trail's update jobs beside them
    jobs.configure(ctx, redis_url="")
    server = make_server("127.0.0.1", 0, create_web_app(ctx), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sender.url = f"http://127.0.0.1:{server.server_port}/sendgrid/events"

    with ctx.sessions.begin() as session:
        ids = insert_employees(session, batches * employees)
    for number in range(0, batches * employees, 100):
        sendgrid.bounce(f"user{number}@example.com", "550 5.1.1 The email account does not exist")
    stream = EventStream(sendgrid, sender)
    started = time.monotonic()
    stream.thread.start()
    batch_ids = []
    for batch in range(batches):
        chunk = ids[batch * employees : (batch + 1) * employees]
        batch_id = start_batch(ctx, chunk, slack_actor(ADMIN_ID), BatchSource.SLACK, channel_id=CHANNEL_ID)
        enqueue_batch(ctx, batch_id)
        batch_ids.append(batch_id)

    def finished() -> bool:
        with ctx.sessions() as session:
            rows = session.execute(
                select(CredentialBatch.finished_at).where(CredentialBatch.id.in_(batch_ids))
            )
            return all(finished_at is not None for (finished_at,) in rows)

    while not finished():
        time.sleep(0.5)
    sent_in = time.monotonic() - started
    stream.stop.set()
    stream.thread.join()
    while stream.post_new():  # the events of the last emails
        pass
    last_event = stream.last_posted

    def summaries() -> dict[int, tuple[str, str]]:
        with ctx.sessions() as session:
            rows = session.execute(
                select(CredentialBatch.id, CredentialBatch.slack_summary).where(
                    CredentialBatch.id.in_(batch_ids)
                )
            )
            return {i: (s["channel"], s["ts"]) for i, s in rows if s}

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        keys = summaries()
        if len(keys) == batches and all(final_line(slack.messages.get(key, {})) for key in keys.values()):
            break
        time.sleep(0.05)
    else:
        raise SystemExit("not every summary reached its final delivery line within 300 s")
    finals = []
    for _, ts in summaries().values():
        calls = [
            c for c in slack.calls_to("chat.update")
            if c.args.get("ts") == ts and c not in slack.rate_limited and final_line(c.args)
        ]  # fmt: skip
        finals.append(calls[0].at)
    updates = [c.at for c in slack.calls_to("chat.update") if c not in slack.rate_limited]
    busiest = max(len([at for at in updates if start <= at < start + WINDOW]) for start in updates)
    span = (max(updates) - min(updates)) / 60 if len(updates) > 1 else 0
    print(
        f"  sent in {sent_in:.1f} s; chat.update: {len(updates)} calls over {span:.1f} min, at most "
        f"{busiest} in any {WINDOW:.0f} s (Tier 3: ~50), {len(slack.rate_limited)} answered 429; "
        f"last event -> last summary written: {max(finals) - last_event:.2f} s (target <= 10 s)"
    )
    print(
        f"  Slack problems: {slack.problems[:3] or 'none'}; load {Path('/proc/loadavg').read_text().strip()}"
    )
    # The threads' lists of every employee may still be being posted (Slack takes about one post a second
    # per channel, so ten lists of 1,000 take minutes); they are not measured here, and stop with the bench.
    for name in ("dramatiq", "handlers", "bot"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    jobs.shutdown()
    server.shutdown()
    slack.stop()
    sendgrid.stop()
    ctx.sessions.kw["bind"].dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--employees", type=int, default=1000, help="per batch")
    parser.add_argument("--delay", type=float, default=0.15, help="SendGrid stand-in answer time in seconds")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    kind = "sqlite" if args.sqlite else "postgresql"
    print(
        f"{args.batches} batches of {args.employees:,} employees at once on {kind}, {os.cpu_count()} CPUs; "
        f"load before {Path('/proc/loadavg').read_text().strip()}"
    )
    with tempfile.TemporaryDirectory() as tmp, throwaway_database(kind, Path(tmp), args.database_url) as url:
        run(url, args.batches, args.employees, args.delay)


if __name__ == "__main__":
    main()
