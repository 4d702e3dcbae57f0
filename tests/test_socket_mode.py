"""`credbot socket` for real: a subprocess connected to a Socket Mode stand-in, driven by envelopes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from bot.settings import Settings
from handlers import ids
from tests.builders import add_employee
from tests.slack_requests import TEAM_ID, fill_state
from tests.standins.slack import ADMIN_ID, APP_TOKEN, BOT_TOKEN, CHANNEL_ID, SIGNING_SECRET, SlackStandIn
from tests.standins.socket_mode import SocketModeStandIn


@pytest.fixture
def socket_mode_standin() -> Iterator[SocketModeStandIn]:
    standin = SocketModeStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def socket_app(
    settings: Settings, slack_standin: SlackStandIn, socket_mode_standin: SocketModeStandIn, tmp_path: Path
) -> Iterator[subprocess.Popen[str]]:
    """`credbot socket` in a process of its own, connected to the stand-ins."""
    slack_standin.socket_url = socket_mode_standin.url
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "OUTBOX_DIR": str(settings.outbox_dir),
        "SENDGRID_API_KEY": "",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": slack_standin.url,
        "ADMIN_SLACK_USER_IDS": ADMIN_ID,
    }
    credbot = Path(sys.executable).with_name("credbot")
    log = (tmp_path / "socket.log").open("w")
    process = subprocess.Popen(
        [str(credbot), "socket"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    try:
        socket_mode_standin.wait_connected()
        yield process
    except AssertionError:
        log.flush()
        raise AssertionError((tmp_path / "socket.log").read_text()) from None
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def command_payload(text: str = "") -> dict[str, Any]:
    return {
        "token": "deprecated-verification-token",
        "team_id": TEAM_ID,
        "channel_id": CHANNEL_ID,
        "user_id": ADMIN_ID,
        "command": ids.COMMAND,
        "text": text,
        "api_app_id": "ACREDBOT1",
        "response_url": "https://hooks.slack.invalid/commands/1",
        "trigger_id": "1.socket.trigger",
    }


def test_command_view_submission_and_app_home_over_socket_mode(
    socket_app: subprocess.Popen[str],
    socket_mode_standin: SocketModeStandIn,
    slack_standin: SlackStandIn,
    session: Session,
) -> None:
    socket = socket_mode_standin
    add_employee(session, "1001", "Ada", "Lovelace")
    session.commit()
    assert [call.token for call in slack_standin.calls_to("apps.connections.open")] == [APP_TOKEN]

    # The slash command: acknowledged (within 3 s, as Slack requires), then the picker opens.
    ack = socket.wait_ack(socket.send("slash_commands", command_payload("1001")))
    assert ack["after"] < 3 and not ack.get("payload")
    slack_standin.wait_for_call("views.open")
    picker = slack_standin.last_view()
    assert picker["callback_id"] == ids.PICKER_VIEW

    # A view submission: the ack itself carries the answer (response_action) back over the socket.
    submission = {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "standin"},
        "user": {"id": ADMIN_ID, "username": "admin", "team_id": TEAM_ID},
        "api_app_id": "ACREDBOT1",
        "trigger_id": "2.socket.trigger",
        "view": {**picker, "state": {"values": fill_state(picker, {})}},
    }
    ack = socket.wait_ack(socket.send("interactive", submission))
    assert ack["payload"]["response_action"] == "update"
    assert "Preparing the list" in json.dumps(ack["payload"]["view"])
    slack_standin.wait_for_call("views.update")
    assert slack_standin.last_view()["callback_id"] == ids.CONFIRM_VIEW

    # App Home: an Events API envelope, acknowledged, then views.publish.
    event = {
        "type": "event_callback",
        "team_id": TEAM_ID,
        "api_app_id": "ACREDBOT1",
        "event": {"type": "app_home_opened", "user": ADMIN_ID, "channel": "D0ADMIN01", "tab": "home"},
        "event_id": "Ev0SOCKET1",
        "event_time": 1,
    }
    ack = socket.wait_ack(socket.send("events_api", event, accepts_response_payload=False))
    assert ack["after"] < 3
    slack_standin.wait_for_call("views.publish")
    assert "Accounts never emailed: 1" in json.dumps(slack_standin.home_views[ADMIN_ID])
    assert socket.unexpected == [] and slack_standin.problems == []
    assert socket_app.poll() is None  # still connected and running
