"""The Slack side of the managers' notices (`bot.manager_notices` decides who and what): a DM to each
manager whose report's credentials went out, after each run of a batch.

chat.postMessage takes its budget per conversation; each DM is a different one, so only the routine
priority keeps these behind the batch trails and what admins wait for.
"""

from __future__ import annotations

import contextlib

from bot import jobs
from bot.audit import AuditAction, batch_target, employee_target, record_now
from bot.context import Context
from bot.manager_notices import ManagerNotice, claim, due
from bot.rate_budget import Priority
from bot.slack_app import make_web_client
from handlers.blocks import escape
from handlers.slack_calls import SlackCallFailed, call

ACTOR = "credbot:manager-notices"


@jobs.job(max_retries=3)
def notify_managers(ctx: Context, batch_id: int) -> None:
    """Tell each manager, once, that their report's credentials went out in this batch."""
    client = make_web_client(ctx.settings, ctx.clock)
    while True:
        with ctx.sessions() as session:
            notices = due(session, ctx.settings, batch_id)
        told = 0
        for notice in notices:
            if not claim(ctx.sessions, notice.delivery_id, ctx.clock.now()):
                continue
            told += 1
            with contextlib.suppress(SlackCallFailed):  # audited; the employee's email went out anyway
                call(
                    ctx,
                    ACTOR,
                    "chat.postMessage",
                    client.chat_postMessage,
                    priority=Priority.WAIT,
                    channel=notice.manager_slack_user_id,
                    text=notice_text(notice),
                )
                record_now(
                    ctx.sessions,
                    ACTOR,
                    AuditAction.MANAGER_NOTIFIED,
                    employee_target(notice.employee_number),
                    batch=batch_target(batch_id),
                    manager_slack_user_id=notice.manager_slack_user_id,
                )
        if not told:
            return


def notice_text(notice: ManagerNotice) -> str:
    """The DM: who, which address, when they start, until when the credentials work; no secret."""
    day = notice.start_date
    start = f"{day:%A} {day.day} {day:%B %Y}" if day else None
    lines = [
        f":envelope_with_arrow: *{escape(notice.name)}* ({escape(notice.employee_number)}), who reports to "
        f"you, has been emailed their sign-in details at their {notice.address_kind} address "
        f"{escape(notice.address)}.",
        f"They start on {start}." if start else "Their start date is not recorded.",
    ]
    if notice.expires:
        lines.append(f"The credentials work until {notice.expires}; after that, an admin sends new ones.")
    lines.append("Nothing secret is in this message: only they received the password or link.")
    return "\n".join(lines)
