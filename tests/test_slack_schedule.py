"""Scheduled sends in Slack: the confirmation's "When" with each moment summarised (1,000 employees in 20
zones within Block Kit's limits), the choice checked, the channel message with its Cancel button, the
trail at a moment, and Cancel."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.sending.schedule import When
from handlers import ids
from handlers.credentials_flow import review_view
from models import BatchStatus, CredentialBatch, Delivery, DeliveryStatus, Employee
from tests.builders import add_employee, audit_events, insert_employees
from tests.slack_requests import RunningApp
from tests.standins.slack import CHANNEL_ID, check_view
from tests.test_slack_flow import open_picker, review

ZONES = [
    "Europe/London",
    "Europe/Paris",
    "Europe/Helsinki",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
]


def hire(session: Session, number: str, zone: str, starts_in_days: int | None) -> Employee:
    employee = add_employee(session, number, "New", f"Hire{number}", email=f"hire{number}@example.com")
    employee.time_zone = zone
    employee.start_date = (
        None if starts_in_days is None else datetime.now(UTC).date() + timedelta(days=starts_in_days)
    )
    session.commit()
    return employee


def scheduled_message(app: RunningApp) -> tuple[str, str]:
    def posted() -> tuple[str, str] | None:
        for key, message in list(app.slack.messages.items()):
            if "thread_ts" not in message and "scheduled Self-Service credentials" in message.get("text", ""):
                return key
        return None

    found: tuple[str, str] = app.slack.wait_for(posted, what="the scheduled batch's message")
    return found


def when_values(when: When, **more: str) -> dict[str, Any]:
    return {ids.WHEN_ACTION: str(when), ids.START_TIME_ACTION: "08:00", ids.AT_TIME_ACTION: "08:00", **more}


def test_schedule_on_start_dates_posts_the_batch_with_cancel_and_cancel_stops_it(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    hire(session, "1", "Europe/London", 5)
    hire(session, "2", "Asia/Kolkata", 5)
    hire(session, "3", "Europe/London", None)
    confirm = review(app, open_picker(app, "1 2 3"), {})
    text = json.dumps(confirm)
    assert "On their start dates at 08:00:" in text
    assert "(Europe/London): 1" in text and "(Asia/Kolkata): 1" in text
    assert "1 cannot be scheduled: no start date" in text
    radio = next(b for b in confirm["blocks"] if b.get("block_id") == ids.WHEN_BLOCK)["element"]
    assert radio["initial_option"]["value"] == When.NOW

    answer = app.requests.submit(confirm, when_values(When.START_DATE)).json()
    assert answer["view"]["title"]["text"] == "Scheduling"
    channel, ts = scheduled_message(app)
    assert channel == CHANNEL_ID
    message = app.slack.messages[(channel, ts)]
    assert "2 employees, on their start dates at 08:00 in their time zones; first" in message["text"]
    assert "IST" in message["text"]  # 08:00 in Kolkata comes first
    button = message["blocks"][1]["elements"][0]
    assert button["action_id"] == ids.CANCEL_BATCH_ACTION
    app.slack.wait_for(lambda: app.slack.last_view()["title"]["text"] == "Scheduled", what="the view")
    with app.ctx.sessions() as check:
        batch = check.scalars(sa.select(CredentialBatch)).one()
        assert batch.status == BatchStatus.SCHEDULED and batch.slack_message_ts == ts
        found = dict(
            check.execute(
                sa.select(Employee.employee_number, Delivery.status).join(
                    Employee, Employee.id == Delivery.employee_id
                )
            ).all()
        )
    assert found == {"1": "scheduled", "2": "scheduled", "3": "skipped"}

    assert app.requests.block_action(ids.CANCEL_BATCH_ACTION, button["value"]).status == 200
    thread = app.slack.wait_for(lambda: app.slack.thread(channel, ts), what="the cancel in the thread")
    assert (
        "cancelled batch" in thread[0]["text"]
        and "2 employees not yet emailed will not be" in thread[0]["text"]
    )
    with app.ctx.sessions() as check:
        assert check.get_one(CredentialBatch, batch.id).status == BatchStatus.ABORTED
        assert set(check.scalars(sa.select(Delivery.status))) == {DeliveryStatus.SKIPPED}
    assert "credentials.batch_cancelled" in [e.action for e in audit_events(app.ctx.sessions)]
    assert "actions" not in json.dumps(app.slack.messages[(channel, ts)].get("blocks", []))
    assert app.slack.problems == []


def test_a_start_date_already_past_is_sent_at_its_moment_with_the_trail_in_the_thread(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    hire(session, "1", "UTC", -2)
    hire(session, "2", "UTC", 3)
    confirm = review(app, open_picker(app, "1 2"), {})
    assert "1 start date has passed: sent at once." in json.dumps(confirm)
    app.requests.submit(confirm, when_values(When.START_DATE))
    channel, ts = scheduled_message(app)
    replies = app.slack.wait_for(
        lambda: [m["text"] for m in app.slack.thread(channel, ts) if "wait, next" in m["text"]] or None,
        what="the moment's trail",
    )
    assert "1 sent, 0 failed, 0 skipped; 1 wait, next" in replies[0]
    texts = "\n".join(m["text"] for m in app.slack.thread(channel, ts))
    assert "the moment came for 1 employee" in texts
    with app.ctx.sessions() as check:
        assert check.scalars(sa.select(CredentialBatch.status)).one() == BatchStatus.SCHEDULED
    assert app.slack.problems == []


def test_at_a_date_and_time_needs_a_date_today_or_later(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    hire(session, "1", "UTC", None)
    confirm = review(app, open_picker(app, "1"), {})
    answer = app.requests.submit(confirm, when_values(When.AT)).json()
    assert answer["response_action"] == "errors" and ids.AT_DATE_BLOCK in answer["errors"]
    yesterday = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    answer = app.requests.submit(confirm, when_values(When.AT, **{ids.AT_DATE_ACTION: yesterday})).json()
    assert answer["errors"] == {ids.AT_DATE_BLOCK: "Pick today or a later date."}
    with app.ctx.sessions() as check:
        assert check.scalars(sa.select(CredentialBatch)).all() == []


def test_the_confirmation_can_open_with_start_dates_chosen(
    running_slack_app: RunningApp, session: Session
) -> None:
    employee = hire(session, "1", "UTC", 4)
    view = review_view(running_slack_app.ctx, "UADMIN", CHANNEL_ID, [employee.id], when=When.START_DATE)
    radio = next(b for b in view["blocks"] if b.get("block_id") == ids.WHEN_BLOCK)["element"]
    assert radio["initial_option"]["value"] == When.START_DATE


def test_a_thousand_employees_in_twenty_zones_are_summarised_within_block_kit_limits(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    ids_ = insert_employees(session, 1000)
    start = datetime.now(UTC).date() + timedelta(days=6)
    for index, employee_id in enumerate(ids_):
        session.execute(
            sa.update(Employee)
            .where(Employee.id == employee_id)
            .values(time_zone=ZONES[index % 20], start_date=start + timedelta(days=(index // 20) % 2))
        )
    session.commit()
    picker = open_picker(app, " ".join(f"E{i:07d}" for i in range(1000)))
    confirm = review(app, picker, {})
    assert check_view(confirm) == [] and app.slack.problems == []
    text = json.dumps(confirm)
    assert "On their start dates at 08:00:" in text
    summary = next(b["text"]["text"] for b in confirm["blocks"] if "On their start dates" in json.dumps(b))
    assert "more at 32 later moments" in summary, summary  # 20 zones x 2 days = 40 moments, 8 listed
    zones = next(b for b in confirm["blocks"] if b.get("block_id") == ids.AT_ZONE_BLOCK)["element"]["options"]
    assert len(zones) == 21


def test_app_home_lists_what_is_scheduled_with_a_cancel_button(
    running_slack_app: RunningApp, session: Session
) -> None:
    app = running_slack_app
    hire(session, "1", "Europe/London", 5)
    app.requests.submit(review(app, open_picker(app, "1"), {}), when_values(When.START_DATE))
    scheduled_message(app)
    before = len(app.slack.calls_to("views.publish"))
    assert app.requests.home_opened().status == 200
    app.slack.wait_for_call("views.publish", before + 1)
    home = app.slack.calls_to("views.publish")[-1].args["view"]
    home = json.loads(home) if isinstance(home, str) else home
    blocks = home["blocks"]
    start = next(i for i, b in enumerate(blocks) if b.get("text", {}).get("text") == "*Scheduled*")
    line = blocks[start + 1]
    assert "on their start dates at 08:00 in their time zones" in line["text"]["text"]
    assert "*1 waiting*" in line["text"]["text"]
    assert line["accessory"]["action_id"] == ids.CANCEL_BATCH_ACTION
    assert (
        app.requests.block_action(ids.CANCEL_BATCH_ACTION, line["accessory"]["value"], view=home).status
        == 200
    )
    app.slack.wait_for(
        lambda: app.ctx.sessions().scalars(sa.select(CredentialBatch.status)).one() == BatchStatus.ABORTED,
        what="the batch cancelled",
    )
    assert app.slack.problems == []
