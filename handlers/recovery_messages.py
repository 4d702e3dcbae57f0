"""The recovery request's approval card in the audit channel, and the modal asking why it is denied.

Everything on the card that came from outside (names, the address) goes through `escape`; what a third
party wrote (the requester's user agent, a mail server's bounce reason) is made inert first (no links, no
formatting), since whoever asks or runs a mail server can write anything there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.audit import slack_user_of
from bot.outside_text import inert
from bot.portal.recovery import RecoveryCard
from handlers import ids
from handlers.blocks import Block, actions, button, context, escape, header, input_block, modal, section
from models import RecoveryStatus

MAX_USER_AGENT_SHOWN = 200


def when(moment: datetime | None) -> str:
    """A time Slack shows in the reader's own time zone (UTC as the fallback text)."""
    if moment is None:
        return "never"
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def who_decided(actor: str | None) -> str:
    user = slack_user_of(actor or "")
    return f"<@{escape(user)}>" if user else escape(actor or "someone")


def card_message(card: RecoveryCard) -> tuple[str, list[Block]]:
    """(fallback text, blocks) of the card: who, how they were emailed, who asked and from where."""
    text = f"Recovery request from {card.name} ({card.employee_number}): new credentials asked for"
    times = f" ({card.request_count} requests)" if card.request_count > 1 else ""
    facts = "\n".join(
        [
            f"*Who:* {escape(card.name)} ({escape(card.employee_number)}) · `{escape(card.username)}`",
            f"*Address on file:* {escape(card.address) if card.address else '_none_'}",
            f"*Last emailed:* {when(card.last_emailed_at)} · "
            f"*Delivery:* {escape(inert(card.delivery_state))}",
            f"*Asked:* {when(card.requested_at)}{times} · *expires* {when(card.expires_at)}",
            f"*From:* {escape(card.client_address or 'unknown address')} · "
            f"{escape(inert(card.user_agent or 'no user agent', MAX_USER_AGENT_SHOWN))}",
        ]
    )
    blocks: list[Block] = [
        header("Recovery request: new credentials"),
        section(
            "Someone on the portal said this invited employee never got their credentials, or that "
            "they expired. Approve only if you know it is them.\n" + facts
        ),
    ]
    if card.status == RecoveryStatus.PENDING:
        value = str(card.request_id)
        blocks.append(
            actions(
                button("Approve", ids.RECOVERY_APPROVE_ACTION, value, "primary"),
                button("Deny", ids.RECOVERY_DENY_ACTION, value, "danger"),
                block_id=f"recovery_{card.request_id}",
            )
        )
    else:
        blocks.append(context(_outcome(card)))
    return text, blocks


def _outcome(card: RecoveryCard) -> str:
    if card.status == RecoveryStatus.APPROVED:
        by = who_decided(card.decided_by)
        return f":white_check_mark: Approved by {by}: the confirmation opened for them to send."
    if card.status == RecoveryStatus.DENIED:
        return f":no_entry: Denied by {who_decided(card.decided_by)}: {escape(card.reason or '')}"
    return ":hourglass: Expired: nobody decided within 24 hours. The employee can ask again."


def deny_view(card: RecoveryCard) -> dict[str, Any]:
    """Ask why the request is denied; the request's id travels in private_metadata."""
    blocks: list[Block] = [
        section(f"Deny the recovery request of *{escape(card.name)}* (`{escape(card.username)}`)?"),
        input_block(
            ids.REASON_BLOCK,
            "Why (kept in the audit log)",
            {
                "type": "plain_text_input",
                "action_id": ids.REASON_ACTION,
                "multiline": True,
                "max_length": 500,
            },
        ),
    ]
    return modal(
        ids.RECOVERY_DENY_VIEW,
        "Deny request",
        blocks,
        submit="Deny",
        close="Cancel",
        private_metadata=str(card.request_id),
    )
