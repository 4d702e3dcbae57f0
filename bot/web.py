"""The web process: Slack's requests at POST /slack/events, SendGrid's events at POST /sendgrid/events,
a health check, and the portal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from slack_bolt.adapter.flask import SlackRequestHandler

from bot import jobs
from bot.context import Context
from bot.delivery_events import apply_events
from bot.mail.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventWebhookVerifier, event_array
from bot.portal import init_portal
from bot.scim.api import init_scim
from bot.slack_app import background_pool, create_bolt_app, slack_wanted

SLACK_EVENTS_PATH = "/slack/events"
SENDGRID_EVENTS_PATH = "/sendgrid/events"
SIGNED_PATHS = frozenset({SLACK_EVENTS_PATH, SENDGRID_EVENTS_PATH})
"""Endpoints whose callers prove who they are by a signature, never by a session cookie."""
MAX_EVENTS_BODY = 4 * 1024 * 1024
"""Largest Event Webhook POST accepted: SendGrid batches its events into posts far below this."""
NO_WEBHOOK_KEY_NOTICE = (
    "SENDGRID_WEBHOOK_PUBLIC_KEY is not set: POST /sendgrid/events answers 404 and delivery events are not "
    "tracked. See the README's section on the Event Webhook."
)
NO_SLACK_NOTICE = (
    "Slack is not configured (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET): serving the portal only. "
    "See the README's Slack section to connect the app."
)

log = logging.getLogger(__name__)

RELEASE_PAUSE_SECONDS = 0.005
"""How long background work submitted while answering waits once the answer is written (see below)."""

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class AfterResponseExecutor(Executor):
    """Runs jobs on a thread pool, but holds back jobs submitted while a request is answered until the
    response has been sent: listeners start their background work during dispatch, and a thread running
    Python at once would make the ack wait for the GIL (5 ms switch interval) on a busy process.

    Released jobs then wait `pause` seconds more before they run. The written response woke whoever reads
    it (the proxy in front of gunicorn, or any caller on the same small host), and the kernel tends to
    queue that reader on the CPU that just woke it, where a job starting at once would burn its CPU
    first: measured on 2 cores, the reader then got the answer up to one scheduler tick (4 ms) later at
    p99. Nobody notices a modal opening 5 ms later; an answer is what Slack times.
    """

    def __init__(self, pool: ThreadPoolExecutor, pause: float = RELEASE_PAUSE_SECONDS) -> None:
        self.pool, self.pause = pool, pause
        self._local = threading.local()

    @contextmanager
    def holding(self) -> Iterator[list[_Job]]:
        """Collect the jobs submitted by this thread inside the block; pass them to `release` later."""
        held: list[_Job] = []
        self._local.held = held
        try:
            yield held
        finally:
            self._local.held = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        held: list[_Job] | None = getattr(self._local, "held", None)
        if held is None:
            return self.pool.submit(fn, *args, **kwargs)
        future: Future[Any] = Future()
        held.append((future, fn, args, kwargs))
        return future

    def release(self, held: list[_Job]) -> None:
        """Start the held jobs on the pool, each after `pause`."""
        for future, fn, args, kwargs in held:
            started = self.pool.submit(_after_pause, self.pause, fn, args, kwargs)
            started.add_done_callback(partial(_copy, target=future))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed session cookie, except on SIGNED_PATHS: Slack and SendGrid send none, and opening
    a session builds a signing serializer per request, a measurable part of the time before credbot
    answers Slack. There Flask uses a null session, which refuses to be written."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        return None if request.path in SIGNED_PATHS else super().open_session(app, request)


def _after_pause(pause: float, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    time.sleep(pause)
    return fn(*args, **kwargs)


def _copy(source: Future[Any], target: Future[Any]) -> None:
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


def create_web_app(ctx: Context, *, verify_token: bool = True) -> Flask:
    """The Flask app: slash commands, interactivity and options all arrive at /slack/events.

    In development with no Slack setting at all, only the portal and /healthz are served.
    """
    jobs.use(ctx)
    flask_app = Flask("credbot")
    if slack_wanted(ctx.settings):
        _serve_slack(flask_app, ctx, verify_token)
    else:
        log.warning(NO_SLACK_NOTICE)
    _serve_sendgrid_events(flask_app, ctx, update_slack=slack_wanted(ctx.settings))

    @flask_app.get("/healthz")
    def healthz() -> tuple[dict[str, str], int]:
        return {"status": "ok"}, 200

    init_portal(flask_app, ctx)
    init_scim(flask_app, ctx)
    flask_app.session_interface = CookieSessions()
    return flask_app


def _serve_slack(flask_app: Flask, ctx: Context, verify_token: bool) -> None:
    executor = AfterResponseExecutor(background_pool())
    bolt_app = create_bolt_app(ctx, verify_token=verify_token, executor=executor)
    handler = SlackRequestHandler(bolt_app)
    flask_app.extensions["credbot_bolt"] = bolt_app

    @flask_app.post(SLACK_EVENTS_PATH)
    def slack_events() -> Response:
        with executor.holding() as held:
            response = handler.handle(request)
        if held:
            response.call_on_close(lambda: executor.release(held))
        return response


def _serve_sendgrid_events(flask_app: Flask, ctx: Context, update_slack: bool) -> None:
    """POST /sendgrid/events: SendGrid's signed Event Webhook. Verified and stored; the batches' Slack
    messages are updated by a job enqueued for when each is due (`update_slack` False: events only stored).
    """
    from handlers.delivery_trail import enqueue_delivery_update

    key = ctx.settings.sendgrid_webhook_public_key
    verifier = EventWebhookVerifier(key) if key and key.strip() else None  # a bad key stops the app here
    told = threading.Event()

    @flask_app.post(SENDGRID_EVENTS_PATH)
    def sendgrid_events() -> Response:
        if verifier is None:
            if not told.is_set():
                told.set()
                log.warning(NO_WEBHOOK_KEY_NOTICE)
            return Response("Not found\n", 404, mimetype="text/plain")
        if (request.content_length or 0) > MAX_EVENTS_BODY:
            return Response("Too large\n", 413, mimetype="text/plain")
        body = request.stream.read(MAX_EVENTS_BODY + 1)
        if len(body) > MAX_EVENTS_BODY:
            return Response("Too large\n", 413, mimetype="text/plain")
        headers = request.headers
        now = ctx.clock.now().timestamp()
        problem = verifier.problem(headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER), body, now)
        if problem:
            log.warning("refused a SendGrid event POST: %s", problem)
            return Response("Forbidden\n", 403, mimetype="text/plain")
        events = event_array(body)
        if events is None:
            log.warning("refused a SendGrid event POST: the body is not a JSON array")
            return Response("Bad request: a JSON array of events is expected\n", 400, mimetype="text/plain")
        result = apply_events(ctx, events)
        log.info("SendGrid events: %s", result.describe())
        if update_slack:
            for batch_id, due in result.scheduled.items():
                enqueue_delivery_update(ctx, batch_id, due)
        return Response("", 200)


def create_app() -> Flask:
    """Factory for gunicorn: `gunicorn 'bot.web:create_app()'` (settings from the environment and .env)."""
    ctx = Context.from_settings()
    jobs.start_background(ctx)
    return create_web_app(ctx)
