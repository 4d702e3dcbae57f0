"""Publishing App Home: on `app_home_opened`, after every change made from it, and when a batch ends (for
the admins who have it open)."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient

from bot.admins import is_admin, list_admins
from bot.audit import slack_actor
from bot.context import Context
from bot.home_views import home_hash, recent_viewers, remember_published
from bot.onboarding import desk
from bot.scim_notices import waiting_hires
from handlers.scim_messages import APP_HOME_LISTED, waiting_hires_blocks
from handlers.slack_calls import call_with_hash
from handlers.views_home import guest_home_view, home_view


def publish_home(
    ctx: Context, client: WebClient, user_id: str, admin: bool = True, view_hash: str | None = None
) -> None:
    """Build and publish App Home for `user_id`, on condition that Slack still shows the view of
    `view_hash` (the request's, else the one credbot published last): a view built before a newer one
    was shown is built again. A failure is audited, and nothing else can be done."""

    def build() -> dict[str, Any]:
        with ctx.sessions() as session:
            if admin:
                hires = waiting_hires(session, APP_HOME_LISTED)
                return home_view(desk(session), waiting_hires_blocks(hires, ctx.clock.now().date()))
            admins = [
                *sorted(ctx.settings.bootstrap_admin_ids),
                *(a.slack_user_id for a in list_admins(session)),
            ]
            return guest_home_view(list(dict.fromkeys(admins)))

    view_hash = view_hash or home_hash(ctx.sessions, user_id)
    actor = slack_actor(user_id)
    published = call_with_hash(
        ctx, actor, "views.publish", client.views_publish, build, view_hash, user_id=user_id
    )
    if published is not None:
        remember_published(ctx.sessions, user_id, published["view"].get("hash"))


def republish_homes(ctx: Context, client: WebClient) -> None:
    """App Home again for every admin who opened it recently (a batch has changed its figures)."""
    with ctx.sessions() as session:
        viewers = [
            user_id
            for user_id in recent_viewers(ctx.sessions, ctx.clock.now())
            if is_admin(session, user_id, ctx.settings.bootstrap_admin_ids)
        ]
    for user_id in viewers:
        publish_home(ctx, client, user_id)
