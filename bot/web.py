"""The web process: Slack's requests at POST /slack/events, a health check, and the portal."""

from __future__ import annotations

from flask import Flask, Response, request
from slack_bolt.adapter.flask import SlackRequestHandler

from bot.context import Context
from bot.portal import init_portal
from bot.slack_app import create_bolt_app

SLACK_EVENTS_PATH = "/slack/events"


def create_web_app(ctx: Context, *, verify_token: bool = True) -> Flask:
    """The Flask app: slash commands, interactivity and options all arrive at /slack/events."""
    bolt_app = create_bolt_app(ctx, verify_token=verify_token)
    handler = SlackRequestHandler(bolt_app)
    flask_app = Flask("credbot")
    flask_app.extensions["credbot_bolt"] = bolt_app

    @flask_app.post(SLACK_EVENTS_PATH)
    def slack_events() -> Response:
        return handler.handle(request)

    @flask_app.get("/healthz")
    def healthz() -> tuple[dict[str, str], int]:
        return {"status": "ok"}, 200

    init_portal(flask_app, ctx)
    return flask_app


def create_app() -> Flask:
    """Factory for gunicorn: `gunicorn 'bot.web:create_app()'` (settings from the environment and .env)."""
    return create_web_app(Context.from_settings())
