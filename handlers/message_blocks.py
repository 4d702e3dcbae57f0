"""The channel audit trail of a batch as pure functions: start, progress, summary and thread details."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from bot.sending.batches import BatchSummary, DeliveryOutcome
from handlers import ids
from handlers.blocks import (
    MAX_MESSAGE_TEXT,
    Block,
    actions,
    button,
    escape,
    pack_lines,
    person_line,
    section,
    shorten,
)

TOP_REASONS = 5
REASON_SHOWN = 150
"""Characters of each reason in the summary (the thread lists each employee with the whole reason): five
reasons for each of failed, in doubt and skipped stay within one section's 3,000."""
IN_DOUBT_ADVICE = (
    "the mail service may have accepted these; the password in that email works if it arrived. "
    "Ask the employee before sending again: a new send replaces it"
)


def started_text(user_id: str, batch_id: int, to_send: int, skipped: int) -> str:
    skip = f" ({skipped:,} skipped: they cannot be emailed)" if skipped else ""
    return (
        f":outbox_tray: <@{user_id}> is emailing Self-Service credentials to *{to_send:,}* "
        f"employee{'s' if to_send != 1 else ''}{skip}. Batch #{batch_id}."
    )


def progress_text(user_id: str, batch_id: int, to_send: int, sent: int, failed: int) -> str:
    done = sent + failed
    return (
        f":hourglass_flowing_sand: <@{user_id}> is emailing Self-Service credentials: "
        f"{done:,} of {to_send:,} done ({sent:,} sent, {failed:,} failed). Batch #{batch_id}."
    )


def resumed_text(batch_id: int, left: int) -> str:
    return (
        f":arrows_counterclockwise: Batch #{batch_id} resumed: the worker sending it stopped. "
        f"{left:,} employee{'s' if left != 1 else ''} left to email; nobody is emailed twice "
        "except those whose email was in flight."
    )


def moment_text(batch_id: int, due: int, waiting: int) -> str:
    later = f"; {waiting:,} wait for a later moment" if waiting else ""
    return (
        f":alarm_clock: Batch #{batch_id}: the moment came for {due:,} "
        f"employee{'s' if due != 1 else ''}; emailing them now{later}."
    )


def waiting_text(user_id: str, batch_id: int, counts: dict[str, int], next_at: str) -> str:
    """A scheduled batch between two moments: what is done, what waits and when next."""
    done = {s: counts.get(s, 0) for s in ("sent", "failed", "in_doubt", "skipped")}
    doubt = f", {done['in_doubt']:,} in doubt" if done["in_doubt"] else ""
    return (
        f":calendar: <@{user_id}>'s scheduled credentials, batch #{batch_id}: {done['sent']:,} sent, "
        f"{done['failed']:,} failed{doubt}, {done['skipped']:,} skipped; "
        f"{counts.get('scheduled', 0):,} wait, next {next_at}."
    )


def _reasons(outcomes: Sequence[DeliveryOutcome]) -> str:
    counts = Counter(outcome.error or "no reason given" for outcome in outcomes)
    top = counts.most_common(TOP_REASONS)
    parts = [f"{escape(shorten(reason, REASON_SHOWN))} ({count:,})" for reason, count in top]
    if len(counts) > TOP_REASONS:
        parts.append(f"{len(counts) - TOP_REASONS:,} other reasons")
    return "; ".join(parts)


def summary_text(user_id: str, summary: BatchSummary) -> str:
    """The final state of the batch message: counts, and the reasons for failures and skips."""
    sent, failed, skipped = len(summary.sent), len(summary.failed), len(summary.skipped)
    doubt = len(summary.in_doubt)
    icon = ":white_check_mark:" if not failed and not doubt and not summary.error else ":warning:"
    in_doubt = f", *{doubt:,} in doubt*" if doubt else ""
    lines = [
        f"{icon} <@{user_id}> emailed Self-Service credentials (batch #{summary.batch_id}): "
        f"*{sent:,} sent*, *{failed:,} failed*{in_doubt}, *{skipped:,} skipped*."
    ]
    if summary.error:
        lines.append(
            f":x: Sending stopped: {escape(summary.error)}. Nobody left in the batch was emailed; "
            "they can be picked again."
        )
    if failed:
        lines.append(f"Failed: {_reasons(summary.failed)}.")
    if doubt:
        lines.append(f"In doubt ({IN_DOUBT_ADVICE}): {_reasons(summary.in_doubt)}.")
    if skipped:
        lines.append(f"Skipped: {_reasons(summary.skipped)}.")
    if sent or failed or skipped or doubt:
        lines.append("Every employee is listed in the thread.")
    return "\n".join(lines)


def summary_blocks(user_id: str, summary: BatchSummary) -> list[Block]:
    """The summary as blocks, with a button to pick the failed employees again when there are some."""
    blocks = [section(summary_text(user_id, summary))]
    if summary.failed:
        again = f"Pick the {len(summary.failed):,} failed again"
        blocks.append(actions(button(again, ids.RETRY_FAILED_ACTION, str(summary.batch_id))))
    return blocks


def outcome_line(outcome: DeliveryOutcome) -> str:
    return person_line(
        outcome.name, outcome.employee_number, outcome.username, outcome.address, outcome.error
    )


def detail_messages(summary: BatchSummary) -> list[str]:
    """Thread replies listing every employee (failed, skipped, then sent), each within Slack's limits."""
    lines: list[str] = []
    for title, outcomes in (
        ("Failed", summary.failed),
        ("In doubt", summary.in_doubt),
        ("Skipped", summary.skipped),
        ("Sent", summary.sent),
    ):
        if outcomes:
            lines.append(f"*{title} ({len(outcomes):,})*")
            lines.extend(outcome_line(outcome) for outcome in outcomes)
    return pack_lines(lines, MAX_MESSAGE_TEXT)
