"""The Bolt app, built from settings; wrong or missing Slack settings stop it at start with a clear message.
Its listeners are the Slack adapter's: `handlers.create_bolt_app` registers them on it.

Acknowledging within Slack's 3 seconds: the app runs with `process_before_response=True`, so each
listener runs on the request's own thread and what it passed to `ack` is the HTTP response (or the
Socket Mode envelope reply) as soon as it returns; nothing waits on a polling loop. Work that calls
Slack or sends mail is started by the listener after its ack (handlers.background) on
`listener_executor`: a bounded thread pool per process, the same under `credbot serve`, gunicorn's
threaded workers and Socket Mode. Over HTTP, credbot.web holds that work back until the ack response has
been written, so the background thread never competes with it for the GIL.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import Executor, ThreadPoolExecutor
from urllib.error import URLError

from slack_bolt import App
from slack_bolt.error import BoltError
from slack_sdk import WebClient

from bot.clock import Clock, SystemClock
from bot.context import Context
from bot.settings import Settings
from bot.slack_rates import BudgetedRetryHandler

log = logging.getLogger(__name__)

BACKGROUND_THREADS = 16
"""Threads per process for the work listeners start after their ack: opening modals, channel messages,
credential batches."""
SLACK_TIMEOUT_SECONDS = 10

WHERE = {
    "SLACK_BOT_TOKEN": "api.slack.com/apps > your app > OAuth & Permissions > Bot User OAuth Token "
    "(starts with xoxb-; install the app to your workspace first)",
    "SLACK_SIGNING_SECRET": "api.slack.com/apps > your app > Basic Information > App Credentials > "
    "Signing Secret",
    "SLACK_APP_TOKEN": "api.slack.com/apps > your app > Basic Information > App-Level Tokens "
    "(generate one with the connections:write scope; starts with xapp-)",
}
SIGNING_SECRET = re.compile(r"^[0-9a-fA-F]{16,}$")


class _QuietTokenWarning(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN from the environment is unused when given a client: it is not,
    the client carries it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.App").addFilter(_QuietTokenWarning())


class SlackSettingsError(RuntimeError):
    """A Slack setting is missing or wrong; the message names it and says where to find it."""


def _secret(settings: Settings, name: str) -> str:
    value = getattr(settings, name.lower())
    return value.get_secret_value().strip() if value is not None else ""


def _problem(name: str, problem: str) -> SlackSettingsError:
    return SlackSettingsError(f"{name} {problem}: find it at {WHERE[name]}")


def check_slack_settings(settings: Settings, socket_mode: bool = False) -> None:
    """Raise SlackSettingsError for the first missing or malformed Slack setting."""
    token = _secret(settings, "SLACK_BOT_TOKEN")
    if not token:
        raise _problem("SLACK_BOT_TOKEN", "is not set")
    if not token.startswith("xoxb-"):
        raise _problem("SLACK_BOT_TOKEN", "is not a bot token (it starts with xoxb-)")
    secret = _secret(settings, "SLACK_SIGNING_SECRET")
    if not secret:
        raise _problem("SLACK_SIGNING_SECRET", "is not set")
    if not SIGNING_SECRET.match(secret):
        raise _problem("SLACK_SIGNING_SECRET", "does not look like a signing secret (hexadecimal digits)")
    if socket_mode:
        app_token = _secret(settings, "SLACK_APP_TOKEN")
        if not app_token:
            raise _problem("SLACK_APP_TOKEN", "is not set (Socket Mode needs it)")
        if not app_token.startswith("xapp-"):
            raise _problem("SLACK_APP_TOKEN", "is not an app-level token (it starts with xapp-)")


def slack_wanted(settings: Settings) -> bool:
    """Serve Slack? Always in production; in development only once a Slack setting is given, so that
    a fresh checkout can run the portal alone."""
    if settings.environment == "production":
        return True
    return any(_secret(settings, name) for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"))


def make_web_client(settings: Settings, clock: Clock | None = None) -> WebClient:
    """A Web API client for SLACK_API_URL that, when Slack rate-limits a call, holds its method off in the
    shared budget (bot.slack_rates) and retries after Retry-After."""
    client = WebClient(
        token=_secret(settings, "SLACK_BOT_TOKEN"),
        base_url=settings.slack_api_url,
        timeout=SLACK_TIMEOUT_SECONDS,
    )
    client.retry_handlers.append(BudgetedRetryHandler(settings, clock or SystemClock()))
    return client


def background_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(BACKGROUND_THREADS, thread_name_prefix="credbot-slack")


def new_bolt_app(
    ctx: Context, *, socket_mode: bool = False, verify_token: bool = True, executor: Executor | None = None
) -> App:
    """The Bolt app from settings, with no listener yet (`handlers.create_bolt_app` adds them).

    With `verify_token` (the default) the bot token is checked once with auth.test at start.
    `executor` runs the work listeners start after their ack (default: a pool of BACKGROUND_THREADS threads).
    """
    settings = ctx.settings
    check_slack_settings(settings, socket_mode=socket_mode)
    try:
        app = App(
            client=make_web_client(settings, ctx.clock),
            signing_secret=_secret(settings, "SLACK_SIGNING_SECRET"),
            process_before_response=True,
            token_verification_enabled=verify_token,
            listener_executor=executor or background_pool(),
        )
    except BoltError as error:
        raise _problem("SLACK_BOT_TOKEN", f"was refused by Slack ({error})") from error
    except (URLError, OSError) as error:
        raise SlackSettingsError(
            f"Cannot reach the Slack API at SLACK_API_URL={settings.slack_api_url}: {error}"
        ) from error
    return app
