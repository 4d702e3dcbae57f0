"""The /email-credentials flow through the real app over HTTP, signed like Slack, against stand-ins."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from handlers import ids
from models import AuditEvent
from tests.slack_data import add_employee
from tests.slack_requests import RunningApp
from tests.standins.slack import ADMIN_ID, CHANNEL_ID


def audit_actions(app: RunningApp) -> list[str]:
    with app.ctx.sessions() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def test_command_acks_at_once_and_opens_the_picker(running_slack_app: RunningApp, session: Session) -> None:
    app = running_slack_app
    add_employee(session, "1001", "Ada", "Lovelace")
    add_employee(session, "1002", "Alan", "Turing")
    session.commit()

    answer = app.requests.command(text="1001 nobody@example.com")

    assert answer.status == 200
    assert answer.body == ""
    call = app.slack.wait_for_call("views.open")[0]
    assert call.args["trigger_id"].endswith(".trigger.standin")
    view = app.slack.last_view()
    assert view["callback_id"] == ids.PICKER_VIEW
    picker = view["blocks"][1]["element"]
    assert [o["value"] for o in picker["initial_options"]] == [str(1)]
    assert "Ada Lovelace" in picker["initial_options"][0]["text"]["text"]
    assert "Not found: nobody@example.com" in json.dumps(view)
    assert "Everyone never emailed (2)" in json.dumps(view)
    assert json.loads(view["private_metadata"])["channel"] == CHANNEL_ID
    assert app.slack.problems == []
