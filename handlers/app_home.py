"""Publishing App Home: on `app_home_opened`, and after every change made from it."""

from __future__ import annotations

import contextlib

from slack_sdk import WebClient

from bot.admins import list_admins
from bot.audit import slack_actor
from bot.context import Context
from bot.onboarding import desk
from handlers.slack_calls import SlackCallFailed, call
from handlers.views_home import guest_home_view, home_view


def publish_home(ctx: Context, client: WebClient, user_id: str, admin: bool = True) -> None:
    """Build and publish App Home for `user_id` (a failure is audited, and nothing else can be done)."""
    with ctx.sessions() as session:
        if admin:
            view = home_view(desk(session))
        else:
            admins = [
                *sorted(ctx.settings.bootstrap_admin_ids),
                *(a.slack_user_id for a in list_admins(session)),
            ]
            view = guest_home_view(list(dict.fromkeys(admins)))
    with contextlib.suppress(SlackCallFailed):
        call(ctx, slack_actor(user_id), "views.publish", client.views_publish, user_id=user_id, view=view)
