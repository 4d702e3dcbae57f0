"""Work a listener starts after its ack: views.open/update, channel messages, batches, account changes.

The ack function acks, then hands the slow part to `Background.start`, which runs it on the process's
background executor (the Bolt app's `listener_executor`). Over HTTP, credbot.web holds that work back until
the ack response has been written; under Socket Mode it starts at once. Bolt's lazy listeners did the
same at the price of a deep copy of the whole request (its WebClient included) for every one of them,
the largest part of credbot's ack time.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Concatenate, ParamSpec

from slack_sdk import WebClient

from bot.context import Context
from handlers.slack_calls import errors_told

P = ParamSpec("P")


class Background:
    """Starts work for one request with credbot's context and the request's Web API client."""

    def __init__(
        self, executor: Executor, ctx: Context, client: WebClient, response_url: str | None = None
    ) -> None:
        """`response_url`: the request's, where an unexpected failure is told (see `tell_user`)."""
        self.executor, self.ctx, self.client, self.response_url = executor, ctx, client, response_url

    def start(
        self,
        doing: str,
        user_id: str,
        channel_id: str | None,
        work: Callable[Concatenate[Context, WebClient, P], object],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        """Run `work(ctx, client, *args, **kwargs)` in the background; if it fails unexpectedly, the user
        is told (ephemeral in `channel_id`, else a DM) what credbot was `doing`, and the log has why."""
        self.executor.submit(self._run, doing, user_id, channel_id, work, args, kwargs)

    def _run(
        self,
        doing: str,
        user_id: str,
        channel_id: str | None,
        work: Callable[..., object],
        args: tuple[object, ...],
        kwargs: dict[str, object],
    ) -> None:
        with errors_told(self.ctx, self.client, user_id, channel_id, doing, self.response_url):
            work(self.ctx, self.client, *args, **kwargs)


def clicked_by(body: dict[str, Any]) -> tuple[str, str | None]:
    """(user id, channel id) of a button's click (no channel on App Home): where the work started in the
    background tells the admin what went wrong."""
    return body["user"]["id"], (body.get("channel") or {}).get("id")
