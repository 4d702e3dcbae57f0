"""`credbot serve` (HTTP, for development) and `credbot socket` (Socket Mode, no public URL needed)."""

from __future__ import annotations

import logging

import click

from bot import jobs
from bot.cli.common import context
from bot.mail import outbox_notice
from bot.slack_app import SlackSettingsError


@click.command()
@click.option("--port", type=int, default=None, help="Port to listen on (default: PORT, 3000).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
def serve(port: int | None, host: str) -> None:
    """Run the Slack endpoint and the portal (development server).

    Uses Flask's development server.

    In development with no Slack setting at all, only the portal is served.

    For production use the Procfile (gunicorn). Slack must reach https://YOUR-HOST/slack/events.
    """
    from credbot.web import create_web_app

    ctx = context()
    try:
        app = create_web_app(ctx)
    except (SlackSettingsError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    jobs.start_background(ctx)
    port = port or ctx.settings.port
    _show_info()
    slack = "Slack: /slack/events, " if "credbot_bolt" in app.extensions else ""
    click.echo(f"credbot listening on http://{host}:{port} ({slack}portal: /portal)")
    if ctx.settings.uses_outbox:
        click.echo(outbox_notice(ctx.settings))
    app.run(host=host, port=port, threaded=True)


@click.command()
def socket() -> None:
    """Connect to Slack over Socket Mode (no public URL needed).

    Needs SLACK_APP_TOKEN.
    """
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from handlers import create_bolt_app

    ctx = context()
    try:
        app = create_bolt_app(ctx, socket_mode=True)
    except SlackSettingsError as error:
        raise click.ClickException(str(error)) from error
    app_token = ctx.settings.slack_app_token
    assert app_token is not None  # checked by create_bolt_app
    jobs.start_background(ctx)
    _show_info()
    click.echo("credbot connected over Socket Mode; press Ctrl+C to stop.")
    SocketModeHandler(app, app_token.get_secret_value()).start()


def _show_info() -> None:
    """Let Bolt's and credbot's INFO lines through (unless -v already asked for DEBUG)."""
    root = logging.getLogger()
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
