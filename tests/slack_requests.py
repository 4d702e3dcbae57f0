"""Requests as Slack sends them (form-encoded, signed with the signing secret), and the app under test.

`running_slack_app` serves the real Flask + Bolt app with werkzeug on 127.0.0.1 (any free port); a
`SlackRequests` posts slash commands, options requests, view submissions (state filled from the view
JSON the app opened, the way Slack fills it) and block actions to it.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from werkzeug.serving import make_server

from bot.context import Context
from bot.settings import Settings
from credbot.web import create_web_app
from models import make_engine, make_session_factory
from tests.builders import present
from tests.standins.slack import ADMIN_ID, BOT_TOKEN, CHANNEL_ID, SIGNING_SECRET, SlackStandIn

TEAM_ID = "TSTANDIN1"


@dataclass(frozen=True)
class Response:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SlackRequests:
    """Signed requests to `url` (the app's /slack/events)."""

    def __init__(
        self, url: str, signing_secret: str = SIGNING_SECRET, standin: SlackStandIn | None = None
    ) -> None:
        self.url, self.standin = url, standin
        self.verifier = SignatureVerifier(signing_secret)
        self._triggers = 0

    def post(
        self,
        body: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        content_type: str = "application/x-www-form-urlencoded",
    ) -> Response:
        timestamp = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": signature
            or present(self.verifier.generate_signature(timestamp=str(timestamp), body=body)),
        }
        request = urllib.request.Request(self.url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback only)
                return Response(answer.status, answer.read().decode())
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read().decode())

    def trigger_id(self) -> str:
        self._triggers += 1
        return f"{self._triggers}.trigger.standin"

    def command_body(self, user_id: str = ADMIN_ID, text: str = "", channel_id: str = CHANNEL_ID) -> str:
        return urlencode(
            {
                "token": "deprecated-verification-token",
                "team_id": TEAM_ID,
                "team_domain": "standin",
                "channel_id": channel_id,
                "channel_name": "general",
                "user_id": user_id,
                "user_name": user_id.lower(),
                "command": "/email-credentials",
                "text": text,
                "api_app_id": "ACREDBOT1",
                "response_url": self.standin.response_url()
                if self.standin
                else "https://hooks.slack.invalid/commands/1",
                "trigger_id": self.trigger_id(),
            }
        )

    def command(self, user_id: str = ADMIN_ID, text: str = "", channel_id: str = CHANNEL_ID) -> Response:
        return self.post(self.command_body(user_id, text, channel_id))

    def interactive(self, payload: dict[str, Any]) -> Response:
        return self.post(urlencode({"payload": json.dumps(payload)}))

    def _base(self, kind: str, user_id: str) -> dict[str, Any]:
        return {
            "type": kind,
            "team": {"id": TEAM_ID, "domain": "standin"},
            "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
            "api_app_id": "ACREDBOT1",
            "token": "deprecated-verification-token",
        }

    def options(self, value: str, user_id: str = ADMIN_ID, view: dict[str, Any] | None = None) -> Response:
        from handlers import ids

        payload = {
            **self._base("block_suggestion", user_id),
            "action_id": ids.EMPLOYEES_ACTION,
            "block_id": ids.EMPLOYEES_BLOCK,
            "value": value,
            "view": view or {"id": "VUNKNOWN", "callback_id": ids.PICKER_VIEW, "type": "modal"},
        }
        return self.interactive(payload)

    def submit(
        self, view: dict[str, Any], values: dict[str, Any] | None = None, user_id: str = ADMIN_ID
    ) -> Response:
        """Submit `view` as Slack would, with `values` ({action_id: value}) filled into its state."""
        submitted = {**view, "state": {"values": fill_state(view, values or {})}}
        payload = {
            **self._base("view_submission", user_id),
            "trigger_id": self.trigger_id(),
            "view": submitted,
            "response_urls": [],
        }
        return self.interactive(payload)

    def event(self, event: dict[str, Any]) -> Response:
        """An Events API request (JSON, signed) carrying `event`."""
        body = {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "ACREDBOT1",
            "event": {"event_ts": str(time.time()), **event},
            "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}",
            "event_time": int(time.time()),
        }
        return self.post(json.dumps(body), content_type="application/json")

    def home_opened(self, user_id: str = ADMIN_ID) -> Response:
        """`app_home_opened` for the Home tab, as Slack sends it when `user_id` opens it."""
        return self.event({"type": "app_home_opened", "user": user_id, "channel": "D0ADMIN01", "tab": "home"})

    def block_action(
        self,
        action_id: str,
        value: str,
        user_id: str = ADMIN_ID,
        channel_id: str = CHANNEL_ID,
        view: dict[str, Any] | None = None,
    ) -> Response:
        """A button click: in a message in `channel_id`, or in `view` (App Home or a modal) when given."""
        if view is not None:
            where: dict[str, Any] = {
                "container": {"type": "view", "view_id": view.get("id", "VHOME")},
                "view": {"id": "VHOME", **view, "state": {"values": {}}},
            }
        else:
            where = {
                "container": {"type": "message", "message_ts": "1.0", "channel_id": channel_id},
                "channel": {"id": channel_id, "name": "general"},
                "message": {"ts": "1.0", "text": "summary"},
            }
        payload = {
            **self._base("block_actions", user_id),
            "trigger_id": self.trigger_id(),
            **where,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b1",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        return self.interactive(payload)


def fill_state(view: dict[str, Any], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`view.state.values` as Slack sends it, for the input blocks of `view`.

    `values` maps action ids to what the user chose: for selects and checkboxes a list of option values
    (looked up in the element's options / initial options, or given as (value, label) pairs for
    external selects), for text inputs a string. Elements not in `values` keep their initial state.
    """
    state: dict[str, dict[str, Any]] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block["element"]
        action_id, kind = element["action_id"], element["type"]
        known = {o["value"]: o for o in element.get("options", []) + element.get("initial_options", [])}
        if kind in ("multi_external_select", "checkboxes", "multi_static_select"):
            if action_id in values:
                chosen = []
                for item in values[action_id]:
                    value, label = item if isinstance(item, tuple) else (item, None)
                    option = known.get(value) or {"text": {"type": "plain_text", "text": label or value}}
                    chosen.append({"text": option["text"], "value": value})
            else:
                chosen = element.get("initial_options", [])
            state[block["block_id"]] = {action_id: {"type": kind, "selected_options": chosen}}
        elif kind in ("external_select", "static_select", "radio_buttons"):
            chosen_one = None
            if action_id in values:
                value, label = (
                    values[action_id] if isinstance(values[action_id], tuple) else (values[action_id], None)
                )
                option = known.get(value) or {"text": {"type": "plain_text", "text": label or value}}
                chosen_one = {"text": option["text"], "value": value}
            state[block["block_id"]] = {action_id: {"type": kind, "selected_option": chosen_one}}
        else:
            state[block["block_id"]] = {action_id: {"type": kind, "value": values.get(action_id)}}
    return state


@dataclass
class RunningApp:
    """The app under test, served over HTTP, and what it talks to."""

    ctx: Context
    url: str
    slack: SlackStandIn
    requests: SlackRequests
    flask_app: Any


def slack_settings(settings: Settings, standin: SlackStandIn, **update: Any) -> Settings:
    """Test settings pointing at the Slack stand-in, with ADMIN_ID as the bootstrap admin."""
    values: dict[str, Any] = {
        "slack_bot_token": SecretStr(BOT_TOKEN),
        "slack_signing_secret": SecretStr(SIGNING_SECRET),
        "slack_api_url": standin.url,
        "admin_slack_user_ids": ADMIN_ID,
    }
    values.update(update)
    return settings.model_copy(update=values)


@pytest.fixture
def running_slack_app(settings: Settings, slack_standin: SlackStandIn) -> Iterator[RunningApp]:
    """The real web app (Flask + Bolt) on a loopback port, talking to the Slack stand-in."""
    yield from serve_app(slack_settings(settings, slack_standin), slack_standin)


def serve_app(settings: Settings, standin: SlackStandIn) -> Iterator[RunningApp]:
    engine = make_engine(settings.database_url, pool_size=settings.mail_concurrency + 8)
    ctx = Context(settings=settings, sessions=make_session_factory(engine))
    flask_app = create_web_app(ctx)
    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/slack/events"
    try:
        yield RunningApp(ctx, url, standin, SlackRequests(url, standin=standin), flask_app)
    finally:
        server.shutdown()
        flask_app.extensions["credbot_bolt"].listener_runner.listener_executor.shutdown(wait=True)
        engine.dispose()
