"""The web process: health check, portal mounted next to Slack, and start-up checks of Slack settings."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from click.testing import Result
from pydantic import SecretStr

from bot.context import Context
from bot.settings import Settings
from bot.slack_app import SlackSettingsError, check_slack_settings
from credbot.web import AfterResponseExecutor, create_web_app
from handlers import create_bolt_app
from tests.slack_requests import RunningApp, slack_settings
from tests.standins.slack import SIGNING_SECRET, SlackStandIn


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 (loopback only)
        return answer.status, answer.read().decode()


def test_health_check_and_portal_share_the_server(running_slack_app: RunningApp) -> None:
    base = running_slack_app.url.removesuffix("/slack/events")
    assert get(base + "/healthz") == (200, '{"status":"ok"}\n')
    status, page = get(base + "/portal/login")
    assert status == 200 and "<form" in page


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"slack_bot_token": None}, "SLACK_BOT_TOKEN is not set: find it at api.slack.com/apps"),
        ({"slack_bot_token": SecretStr("xoxp-user")}, "SLACK_BOT_TOKEN is not a bot token"),
        ({"slack_signing_secret": None}, "SLACK_SIGNING_SECRET is not set: find it at api.slack.com/apps > "),
        ({"slack_signing_secret": SecretStr("my secret")}, "SLACK_SIGNING_SECRET does not look like"),
    ],
)
def test_missing_or_malformed_settings_are_named(update: dict[str, Any], message: str) -> None:
    settings = Settings(
        _env_file=None, slack_bot_token=SecretStr("xoxb-1"), slack_signing_secret=SecretStr(SIGNING_SECRET)
    ).model_copy(update=update)
    with pytest.raises(SlackSettingsError, match=message):
        check_slack_settings(settings)


def test_socket_mode_needs_an_app_token() -> None:
    settings = Settings(
        _env_file=None, slack_bot_token=SecretStr("xoxb-1"), slack_signing_secret=SecretStr("ab" * 16)
    )
    check_slack_settings(settings)
    with pytest.raises(SlackSettingsError, match=r"SLACK_APP_TOKEN is not set .*App-Level Tokens"):
        check_slack_settings(settings, socket_mode=True)
    with pytest.raises(SlackSettingsError, match="SLACK_APP_TOKEN is not an app-level token"):
        check_slack_settings(
            settings.model_copy(update={"slack_app_token": SecretStr("xoxb-2")}), socket_mode=True
        )


def test_a_refused_token_stops_the_app_at_start(context: Context, slack_standin: SlackStandIn) -> None:
    settings = slack_settings(context.settings, slack_standin, slack_bot_token=SecretStr("xoxb-wrong"))
    with pytest.raises(SlackSettingsError, match=r"SLACK_BOT_TOKEN was refused by Slack .*invalid_auth"):
        create_bolt_app(Context(settings, context.sessions))
    assert [call.method for call in slack_standin.calls] == ["auth.test"]


def test_an_unreachable_slack_api_stops_the_app_at_start(
    context: Context, slack_standin: SlackStandIn
) -> None:
    settings = slack_settings(context.settings, slack_standin, slack_api_url="http://127.0.0.1:9/api/")
    with pytest.raises(
        SlackSettingsError, match=r"Cannot reach the Slack API at SLACK_API_URL=http://127\.0\.0\.1:9"
    ):
        create_bolt_app(Context(settings, context.sessions))


def test_serve_names_the_missing_setting(cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    result = cli("serve")
    assert result.exit_code == 1
    assert "SLACK_BOT_TOKEN is not set: find it at api.slack.com/apps" in result.output


def test_socket_names_the_missing_app_token(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SIGNING_SECRET)
    monkeypatch.setenv("SLACK_APP_TOKEN", "")
    result = cli("socket")
    assert result.exit_code == 1
    assert "SLACK_APP_TOKEN is not set (Socket Mode needs it)" in result.output


def test_work_submitted_while_answering_starts_a_pause_after_the_response() -> None:
    executor = AfterResponseExecutor(ThreadPoolExecutor(2), pause=0.05)
    ran: list[tuple[str, float]] = []
    with executor.holding() as held:
        future = executor.submit(lambda: ran.append(("held", time.monotonic())))
    executor.submit(lambda: ran.append(("direct", time.monotonic()))).result(timeout=5)
    assert [name for name, _ in ran] == ["direct"] and not future.done()
    released = time.monotonic()
    executor.release(held)
    assert future.result(timeout=5) is None
    assert [name for name, _ in ran] == ["direct", "held"]
    assert ran[1][1] - released >= 0.05
    executor.shutdown()


def test_without_any_slack_setting_development_serves_the_portal_alone(
    context: Context, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_web_app(context).test_client()
    assert app.get("/healthz").status_code == 200
    assert app.get("/portal/login").status_code == 200
    assert app.post("/slack/events", data="x").status_code == 404
    assert "Slack is not configured (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET)" in caplog.text


def test_production_without_slack_settings_refuses_to_start(context: Context) -> None:
    settings = context.settings.model_copy(update={"environment": "production"})
    with pytest.raises(SlackSettingsError, match="SLACK_BOT_TOKEN is not set"):
        create_web_app(Context(settings, context.sessions))
