"""Slack's Web API rate limits as one budget per method and workspace (bot.rate_budget), and what a 429
teaches it.

Slack limits each method per workspace by tier (docs.slack.dev/apis/web-api/rate-limits): Tier 2 about
20 calls a minute, Tier 3 about 50, Tier 4 about 100, "sporadic bursts" welcome; chat.postMessage about
one a second per channel. credbot budgets a little under each (a call granted at the end of a window
can reach Slack after one granted at its start) and keeps part of each burst for urgent calls. A 429's
Retry-After holds the method off for every batch and process, and the client retries after it.
"""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import parse_qsl

from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bot.clock import Clock
from bot.rate_budget import BudgetStore, Priority, Rate, budget_store
from bot.settings import Settings

TIER_2 = Rate(calls=18, burst=4, reserve=2)
TIER_3 = Rate(calls=45, burst=12, reserve=10)
"""45 of Slack's 50: 12 at once, 10 of those kept for final summaries (ten batches ending together)."""
TIER_4 = Rate(calls=90, burst=20, reserve=10)
PER_CHANNEL = Rate(calls=55, burst=5, reserve=2)
"""chat.postMessage: about one a second in each channel, short bursts allowed."""

METHOD_RATES = {
    "chat.update": TIER_3,
    "chat.postMessage": PER_CHANNEL,
    "chat.postEphemeral": TIER_4,
    "views.open": TIER_4,
    "views.push": TIER_4,
    "views.update": TIER_4,
    "views.publish": TIER_4,
    "users.info": TIER_4,
    "conversations.info": TIER_3,
    "files.upload_v2": TIER_4,
}
PER_CHANNEL_METHODS = frozenset({"chat.postMessage"})
MAX_RATE_LIMITED_RETRIES = 5


def _workspace(settings: Settings) -> str:
    """Who Slack counts calls for: the API and the bot token (one token, one workspace), hashed."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    return hashlib.sha256(f"{settings.slack_api_url}|{token}".encode()).hexdigest()[:16]


def _key(settings: Settings, method: str, channel: str | None) -> str:
    where = f":{channel}" if method in PER_CHANNEL_METHODS and channel else ""
    return f"slack:{_workspace(settings)}:{method}{where}"


def _store(settings: Settings) -> BudgetStore:
    return budget_store(settings.redis_url, settings.redis_namespace)


def take_slot(
    settings: Settings, clock: Clock, method: str, priority: Priority, channel: str | None = None
) -> bool:
    """Wait for a slot of `method`'s budget (sleeping if needed); False when `priority` is SKIP and none is
    free now (the caller's next update supersedes this one)."""
    rate = METHOD_RATES.get(method, TIER_2)
    wait = _store(settings).take(_key(settings, method, channel), rate, clock.now().timestamp(), priority)
    if wait is None:
        return False
    if wait > 0:
        time.sleep(wait)
    return True


def hold_off(settings: Settings, clock: Clock, method: str, channel: str | None, seconds: float) -> None:
    """Slack answered 429 with Retry-After `seconds`: no call of `method` before then, in any process."""
    now = clock.now().timestamp()
    rate = METHOD_RATES.get(method, TIER_2)
    _store(settings).hold_off(_key(settings, method, channel), rate, now, now + seconds)


def _channel(request: HttpRequest) -> str | None:
    body = (request.data or b"").decode(errors="replace")
    try:
        args = json.loads(body) if body.startswith("{") else dict(parse_qsl(body))
    except ValueError:
        return None
    channel = args.get("channel") if isinstance(args, dict) else None
    return channel if isinstance(channel, str) else None


class BudgetedRetryHandler(RateLimitErrorRetryHandler):
    """Retry a rate-limited call after its Retry-After, having held its method off in the shared budget."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        super().__init__(max_retry_count=MAX_RATE_LIMITED_RETRIES)
        self.settings, self.clock = settings, clock

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if response is not None:
            header = {k.lower(): v for k, v in response.headers.items()}.get("retry-after") or ["1"]
            try:
                seconds = float(header[0])
            except ValueError:
                seconds = 1.0
            method = request.url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
            hold_off(self.settings, self.clock, method, _channel(request), seconds)
        super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)
