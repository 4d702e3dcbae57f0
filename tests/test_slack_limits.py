"""Slack's limits as Slack documents them: one rate budget per method shared by every batch, views that
carry their hash, thread replies within the blocks' size limit, App Home kept current.

(The slash command answering through its response_url is in tests/test_slack_flow.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import jobs
from bot.clock import ManualClock
from bot.context import Context
from bot.delivery_events import MailState, Problem
from bot.outside_text import MAX_OUTSIDE_TEXT as MAX_REASON
from bot.rate_budget import BudgetStore, MemoryBudget, Priority, Rate, RedisBudget
from bot.sending.batches import BatchSummary, DeliveryOutcome
from bot.slack_app import make_web_client
from bot.slack_rates import METHOD_RATES, take_slot
from handlers import ids
from handlers.blocks import section
from handlers.delivery_messages import problem_messages
from handlers.message_blocks import detail_messages, summary_blocks, summary_text
from handlers.sending import PROGRESS_INTERVAL, ChannelTrail
from models import BatchStatus, CredentialBatch, DeliveryStatus
from tests.builders import add_employee, audit_events
from tests.slack_requests import RunningApp, slack_settings
from tests.standins.sendgrid import SendGridStandIn
from tests.standins.sendgrid_webhook import EventWebhookSender
from tests.standins.slack import ADMIN_ID, CHANNEL_ID, MAX_BLOCKS_JSON, SlackStandIn, check_message
from tests.test_delivery_events import delivery_text, send_from_slack, webhook_app  # noqa: F401
from tests.test_slack_flow import open_picker, review

T = 1_800_000_000.0
"""A wall-clock time (seconds) for the budget: tests pass the time in, nothing waits."""
RATE = Rate(calls=10, window=60.0, burst=4, reserve=2)
"""At most 10 calls a minute: 4 at once (2 only for urgent ones), then one every 10 s."""


# --- the budget, on both stores ---------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BudgetStore]:
    if request.param == "memory":
        yield MemoryBudget()
        return
    url = request.getfixturevalue("redis_server_url")
    client = redis.Redis.from_url(url)
    yield RedisBudget(client, request.getfixturevalue("redis_namespace"), MemoryBudget())
    client.close()


def takes(store: BudgetStore, now: float, priority: Priority, count: int = 1) -> list[float | None]:
    return [store.take("k", RATE, now, priority) for _ in range(count)]


def test_routine_calls_leave_the_reserve_and_skip_when_busy(store: BudgetStore) -> None:
    assert takes(store, T, Priority.SKIP, 3) == [0.0, 0.0, None]  # the burst less the reserve
    assert takes(store, T, Priority.URGENT, 2) == [0.0, 0.0]  # the reserve
    assert takes(store, T, Priority.URGENT) == [pytest.approx(10.0)]  # then one every 10 s
    assert takes(store, T, Priority.WAIT) == [pytest.approx(40.0)]  # behind the reserve's 20 s
    assert takes(store, T + 60, Priority.SKIP) == [0.0]


def test_no_window_holds_more_than_the_rate(store: BudgetStore) -> None:
    granted = []
    for second in range(0, 300, 2):  # a caller every 2 s for 5 minutes, each at its priority
        for priority in Priority:
            wait = store.take("k", RATE, T + second, priority)
            if wait is not None:
                granted.append(T + second + wait)
    for start in granted:
        assert len([at for at in granted if start <= at < start + RATE.window]) <= RATE.calls


def test_a_429_holds_every_caller_off(store: BudgetStore) -> None:
    store.hold_off("k", RATE, T, T + 30)
    assert takes(store, T, Priority.SKIP) == [None]
    assert takes(store, T, Priority.URGENT) == [pytest.approx(30.0)]
    assert takes(store, T + 40, Priority.URGENT) == [pytest.approx(0.0)]


TAKER = """
import sys, redis
from bot.rate_budget import MemoryBudget, Priority, Rate, RedisBudget
url, namespace, now = sys.argv[1], sys.argv[2], float(sys.argv[3])
store = RedisBudget(redis.Redis.from_url(url), namespace, MemoryBudget())
rate = Rate(calls=10, window=60.0, burst=4, reserve=2)
print(" ".join(repr(now + store.take("k", rate, now, Priority.URGENT)) for _ in range(10)))
"""


@pytest.mark.slow
def test_processes_share_one_budget_through_redis(redis_server_url: str, redis_namespace: str) -> None:
    """Three processes take ten slots each at the same moment: together they keep to the rate."""
    takers = [
        subprocess.Popen(
            [sys.executable, "-c", TAKER, redis_server_url, redis_namespace, repr(T)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        for _ in range(3)
    ]
    granted = sorted(float(at) for taker in takers for at in taker.communicate(timeout=60)[0].split())
    assert len(granted) == 30 and all(taker.returncode == 0 for taker in takers)
    assert granted[:4] == [T] * 4  # the burst, then one every 10 s whoever asks
    assert granted[4:] == pytest.approx([T + 10 * n for n in range(1, 27)])


def test_progress_updates_are_coalesced_when_chat_update_is_busy(
    context: Context, slack_standin: SlackStandIn
) -> None:
    """Other batches have spent chat.update's slots: progress is skipped, and a later one shows the newer
    counts. Time is the injected clock's: nothing sleeps."""
    clock = ManualClock()
    settings = slack_settings(context.settings, slack_standin)
    ctx = Context(settings, context.sessions, clock)
    client = make_web_client(settings, clock)
    trail = ChannelTrail(ctx, client, ADMIN_ID, CHANNEL_ID, batch_id=1)
    trail.ts, trail.to_send = client.chat_postMessage(channel=CHANNEL_ID, text="started")["ts"], 10
    sent = DeliveryOutcome(1, "1001", "Ada", "ada", "ada@example.com", DeliveryStatus.SENT, None)

    clock.advance(PROGRESS_INTERVAL)
    while take_slot(settings, clock, "chat.update", Priority.SKIP):  # the other batches' updates
        pass
    trail.progress(sent)
    assert slack_standin.calls_to("chat.update") == []  # skipped, not queued
    clock.advance(METHOD_RATES["chat.update"].interval)
    trail.progress(sent)
    (update,) = slack_standin.calls_to("chat.update")
    assert "2 of 10 done (2 sent, 0 failed)" in update.args["text"]


# --- views carry their hash --------------------------------------------------------------------------------


def test_a_stale_app_home_is_rebuilt_on_hash_conflict(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    assert app.requests.home_opened().status == 200
    app.slack.wait_for(lambda: ADMIN_ID in app.slack.home_views, what="App Home")
    shown = app.slack.home_views[ADMIN_ID]
    assert "Accounts never emailed: 0" in json.dumps(shown)

    # An employee arrives, and another publish (an app_home_opened in another process) shows it first:
    # the Refresh below was clicked on the older view.
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    app.slack.home_views[ADMIN_ID] = {**shown, "hash": "hash-newer"}
    assert app.requests.block_action(ids.HOME_REFRESH, "", view=shown).status == 200
    app.slack.wait_for_call("views.publish", 3)
    stale, fresh = app.slack.calls_to("views.publish")[1:]
    assert stale.args["hash"] == shown["hash"] and "hash" not in fresh.args
    assert "Accounts never emailed: 1" in json.dumps(app.slack.home_views[ADMIN_ID])
    failures = [e.details for e in audit_events(app.ctx.sessions, "slack.call_failed")]
    assert failures == [{"method": "views.publish", "error": "hash_conflict"}]


def test_a_list_modal_page_is_rebuilt_on_hash_conflict(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    for number in range(1, 4):
        add_employee(session, f"100{number}", "Never", f"Emailed{number}", email=f"p{number}@example.com")
    session.commit()
    assert app.requests.block_action(ids.HOME_SHOW_ALL, "never_emailed", view={"id": "VHOME"}).status == 200
    app.slack.wait_for_call("views.open")
    modal = dict(app.slack.last_view())
    app.slack.views[modal["id"]]["hash"] = "hash-changed-meanwhile"
    assert app.requests.block_action(ids.LIST_PAGE_ACTION, "never_emailed:0", view=modal).status == 200
    app.slack.wait_for_call("views.update", 2)
    stale, fresh = app.slack.calls_to("views.update")
    assert stale.args["hash"] == modal["hash"] and "hash" not in fresh.args
    assert app.slack.problems == []


# --- thread replies within the blocks' size ------------------------------------------------------------


def problem(number: int) -> Problem:
    reason = f"550 5.1.1 <person{number}@example.com>: " + "x" * MAX_REASON
    return Problem(
        number, number, f"{1000 + number}", f"Person {number}", f"person{number}@example.com",
        MailState.BOUNCED, reason[:MAX_REASON],
    )  # fmt: skip


def test_twenty_long_bounce_reasons_are_split_into_replies_slack_accepts() -> None:
    problems = [problem(number) for number in range(1, 21)]
    messages = problem_messages(problems)
    assert len(messages) > 1  # one reply of 20 would pass Slack's limit
    assert [p for _, _, chunk in messages for p in chunk] == problems  # everyone, once, in order
    for text, blocks, chunk in messages:
        assert check_message({"text": text, "blocks": blocks}) == []
        assert len(json.dumps(blocks, separators=(",", ":"))) <= MAX_BLOCKS_JSON
        assert all(f"*{p.name}*" in text for p in chunk)


def test_a_summary_of_twenty_failures_with_long_reasons_is_whole() -> None:
    """Twenty failed, twenty in doubt and twenty skipped employees, each with its own 300-character reason:
    the summary counts the reasons it leaves out and keeps its last line; the thread lists everyone."""

    def outcomes(status: DeliveryStatus, kind: str) -> list[DeliveryOutcome]:
        reason = f"{kind} {{}} " + "x" * 290
        return [
            DeliveryOutcome(n, f"{n}", f"Person {n}", f"u{n}", f"p{n}@example.com", status, reason.format(n))
            for n in range(1, 21)
        ]

    summary = BatchSummary(
        batch_id=7,
        status=BatchStatus.FINISHED,
        sent=[],
        failed=outcomes(DeliveryStatus.FAILED, "refused"),
        skipped=outcomes(DeliveryStatus.SKIPPED, "skipped"),
        error=None,
        in_doubt=outcomes(DeliveryStatus.IN_DOUBT, "timeout"),
    )
    blocks = summary_blocks(ADMIN_ID, summary)
    text = blocks[0]["text"]["text"]
    assert check_message({"text": summary_text(ADMIN_ID, summary), "blocks": blocks}) == []
    assert text == summary_text(ADMIN_ID, summary)  # not cut
    assert text.count("15 other reasons") == 3 and text.endswith("Every employee is listed in the thread.")
    replies = detail_messages(summary)
    assert all(check_message({"text": reply, "blocks": [section(reply)]}) == [] for reply in replies)
    listed = "\n".join(replies)
    assert all(f"refused {n} " + "x" * 290 in listed for n in range(1, 21))  # every reason, whole


def test_twenty_long_bounces_reach_the_thread(
    webhook_app: tuple[RunningApp, EventWebhookSender],  # noqa: F811
    session: Session,
    sendgrid_standin: SendGridStandIn,
) -> None:
    app, sender = webhook_app
    for number in range(1, 21):
        add_employee(session, f"{1000 + number}", "Person", f"N{number}", email=f"p{number}@example.com")
    session.commit()
    _, channel, ts = send_from_slack(app, " ".join(f"{1000 + n}" for n in range(1, 21)))
    for number in range(1, 21):
        sendgrid_standin.bounce(f"p{number}@example.com", "550 5.1.1 " + "mailbox unavailable " * 20)
    assert sender.post(sendgrid_standin.events()).status == 200
    app.slack.wait_for(lambda: "20 bounced" in delivery_text(app, channel, ts), what="20 bounced")

    def told() -> list[dict[str, Any]]:
        replies = [m for m in app.slack.thread(channel, ts) if "did not get their credentials" in m["text"]]
        return replies if sum(m["text"].count(":warning:") for m in replies) == 20 else []

    assert len(app.slack.wait_for(told, what="all 20 in the thread")) >= 2
    assert app.slack.problems == []


# --- many batches, one budget -------------------------------------------------------------------------------

BATCHES = 10
PEOPLE = 6
SCALED_WINDOW = 3.0
"""Slack's minute, scaled down so that the test takes seconds: the stand-in and credbot both use it."""


def test_ten_batches_at_once_share_chat_update_and_end_right(
    webhook_app: tuple[RunningApp, EventWebhookSender],  # noqa: F811
    session: Session,
    sendgrid_standin: SendGridStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, sender = webhook_app
    scaled = Rate(calls=9, window=SCALED_WINDOW, burst=4, reserve=3)
    monkeypatch.setitem(METHOD_RATES, "chat.update", scaled)
    monkeypatch.setattr(jobs, "IN_PROCESS_THREADS", 24)
    app.slack.rate_window, app.slack.limits["chat.update"] = SCALED_WINDOW, 10
    app.slack.fail("chat.update", status=429, retry_after=1, times=2)  # another app's calls, say
    for batch in range(BATCHES):
        for person in range(PEOPLE):
            number = f"{batch + 1}{person:03d}"
            add_employee(session, number, "Person", number, email=f"p{number}@example.com")
    session.commit()
    sendgrid_standin.bounce("p1000@example.com", "550 5.1.1 no such user")

    # The events stream in while the batches run, as SendGrid posts them.
    stop = threading.Event()

    answers: list[int] = []

    def stream() -> None:
        posted: set[tuple[str, str, str]] = set()  # the stand-in makes new event ids at each call
        while not stop.wait(0.3):
            new = [
                e
                for e in sendgrid_standin.events()
                if (e["sg_message_id"], e["email"], e["event"]) not in posted
            ]
            if new:
                answers.append(sender.post(new).status)
                posted.update((e["sg_message_id"], e["email"], e["event"]) for e in new)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        for batch in range(BATCHES):  # the ten confirmations, one after the other: ten batches at once
            keys = " ".join(f"{batch + 1}{person:03d}" for person in range(PEOPLE))
            picker = open_picker(app, keys)
            assert app.requests.submit(review(app, picker, {})).status == 200
        summaries = app.slack.wait_for(lambda: all_summaries(app), timeout=120, what="ten summaries")
        assert len(summaries) == BATCHES
        for _, (channel, ts) in summaries.items():

            def settled(channel: str = channel, ts: str = ts) -> bool:
                return "· 0 waiting" in delivery_text(app, channel, ts)

            app.slack.wait_for(
                settled,
                timeout=60,
                what="0 waiting",
            )
    finally:
        stop.set()
        streamer.join()

    assert answers and set(answers) == {200}
    for batch_id, (channel, ts) in summaries.items():
        message = app.slack.messages[(channel, ts)]
        bounced = 1 if batch_id == first_batch(app) else 0
        assert f"*{PEOPLE} sent*, *0 failed*" in message["text"]
        assert f"{PEOPLE - bounced} delivered · {bounced} bounced · 0 dropped · 0 waiting" in delivery_text(
            app, channel, ts
        )
    failed = [e.details for e in audit_events(app.ctx.sessions, "slack.call_failed")]
    assert not [f for f in failed if f["error"] == "ratelimited"]  # every 429 was waited out
    assert app.slack._failures[0].remaining == 0  # (the scripted ones included)
    assert app.slack.problems == []
    accepted = [c.at for c in app.slack.calls_to("chat.update") if c not in app.slack.rate_limited]
    for start in accepted:
        assert len([at for at in accepted if start <= at < start + SCALED_WINDOW]) <= 10


def all_summaries(app: RunningApp) -> dict[int, tuple[str, str]] | None:
    """Every batch's (channel, ts) once each shows its final summary and its delivery line."""
    with app.ctx.sessions() as session:
        stored = session.execute(select(CredentialBatch.id, CredentialBatch.slack_summary)).all()
    if len(stored) < BATCHES or any(summary is None for _, summary in stored):
        return None
    return {batch_id: (summary["channel"], summary["ts"]) for batch_id, summary in stored}


def first_batch(app: RunningApp) -> int:
    with app.ctx.sessions() as session:
        return min(session.scalars(select(CredentialBatch.id)))


# --- App Home when a batch ends -----------------------------------------------------------------------------


def test_app_home_is_republished_for_admins_who_have_it_open_when_a_batch_ends(
    webhook_app: tuple[RunningApp, EventWebhookSender],  # noqa: F811
    session: Session,
) -> None:
    app, _ = webhook_app
    add_employee(session, "1001", "Ada", "Lovelace", email="ada@example.com")
    session.commit()
    assert app.requests.home_opened().status == 200
    app.slack.wait_for(lambda: ADMIN_ID in app.slack.home_views, what="App Home")
    assert "Accounts never emailed: 1" in json.dumps(app.slack.home_views[ADMIN_ID])
    send_from_slack(app, "1001")
    app.slack.wait_for(
        lambda: "Accounts never emailed: 0" in json.dumps(app.slack.home_views[ADMIN_ID]),
        what="App Home republished",
    )
    assert {c.args["user_id"] for c in app.slack.calls_to("views.publish")} == {ADMIN_ID}
