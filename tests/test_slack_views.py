"""Block Kit builders on plain data: escaping, Slack's limits, summaries of long lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_sdk.models.views import View

from bot.search import EmployeeChoice
from bot.sending.batches import BatchSummary, DeliveryOutcome
from bot.sending.recipients import Recipient
from handlers import ids
from handlers.blocks import MAX_MESSAGE_TEXT, escape, listed_sections, modal, pack_lines, section
from handlers.commands import parse_command_text
from handlers.message_blocks import detail_messages, summary_blocks, summary_text
from handlers.middleware import form_values
from handlers.views_credentials import FlowState, confirm_view, picker_view
from models import BatchStatus, DeliveryStatus
from tests.standins.slack import check_message, check_view


def recipient(n: int, problem: str | None = None, name: str = "Ada Lovelace") -> Recipient:
    return Recipient(
        employee_id=n,
        employee_number=f"{n:06d}",
        name=f"{name} {n}",
        username=f"alovelace{n}",
        address=f"ada.lovelace.{n}@example.com",
        problem=problem,
        last_emailed_at=datetime(2026, 1, 2, tzinfo=UTC) if n % 3 == 0 else None,
    )


def outcome(n: int, status: DeliveryStatus, error: str | None = None) -> DeliveryOutcome:
    return DeliveryOutcome(n, f"{n:06d}", f"Ada <b>{n}</b>", f"ada{n}", f"ada{n}@example.com", status, error)


def test_escape_neutralises_mentions_and_entities() -> None:
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert escape("&amp;") == "&amp;amp;"


def test_pack_lines_never_exceeds_the_limit() -> None:
    lines = [f"line {n} " + "x" * (n % 50) for n in range(500)] + ["y" * 5000]
    chunks = pack_lines(lines, 300)
    assert all(len(chunk) <= 300 for chunk in chunks)
    assert sum(chunk.count("\n") + 1 for chunk in chunks) == len(lines)


def test_listed_sections_counts_what_it_leaves_out() -> None:
    blocks = listed_sections([f"line {n}" for n in range(2000)], max_sections=2)
    shown = sum(block["text"]["text"].count("\n") + 1 for block in blocks[:2])
    assert len(blocks) == 3
    assert blocks[2]["elements"][0]["text"] == f"…and {2000 - shown:,} more."


def test_modal_refuses_what_slack_would_refuse() -> None:
    with pytest.raises(ValueError, match="at most 100 blocks"):
        modal("x", "t", [section("a")] * 101)
    with pytest.raises(ValueError, match="private_metadata"):
        modal("x", "t", [], private_metadata="m" * 3001)


@pytest.mark.parametrize("count", [1, 1000, 100_000])
def test_confirm_view_fits_block_kit_for_any_selection(count: int) -> None:
    recipients = [recipient(n, "no address" if n % 10 == 0 else None) for n in range(1, count + 1)]
    view = confirm_view(recipients, "password", FlowState("C1", "12.nonce"))
    assert check_view(view) == []
    text = json.dumps(view)
    mailable = sum(1 for r in recipients if r.problem is None)
    assert f"Will be emailed ({mailable:,})" in text
    assert view["submit"]["text"] == "Send emails"
    assert FlowState.load(view["private_metadata"]) == FlowState("C1", "12.nonce")


def test_confirm_view_lists_address_username_and_reasons() -> None:
    view = confirm_view([recipient(1), recipient(2, "account disabled")], "link", FlowState())
    text = json.dumps(view)
    assert "ada.lovelace.1@example.com" in text and "`alovelace1`" in text
    assert "Cannot be emailed (1)" in text and "account disabled" in text
    assert "single-use link" in text and "`link`" in text


def test_confirm_view_without_anyone_mailable_has_no_send_button() -> None:
    view = confirm_view([recipient(1, "no account")], "password", FlowState())
    assert "submit" not in view
    assert check_view(view) == []


def test_picker_view_fits_and_caps_initial_options() -> None:
    choices = [EmployeeChoice(n, f"{n}", "A" * 200, f"user{n}", True) for n in range(150)]
    view = picker_view(FlowState("C1"), choices, never_emailed_count=12_345, unknown_keys=["<!here>"] * 3)
    assert check_view(view) == []
    assert len(view["blocks"][1]["element"]["initial_options"]) == 100
    assert "Everyone never emailed (12,345)" in json.dumps(view)
    assert "&lt;!here&gt;" in json.dumps(view)


def test_flow_state_ignores_garbage() -> None:
    assert FlowState.load("not json") == FlowState()
    assert FlowState.load('["a"]') == FlowState()
    assert FlowState.load('{"channel": 5, "selection": "1.a"}') == FlowState(None, "1.a")


def test_summary_and_thread_stay_within_limits_for_a_thousand() -> None:
    summary = BatchSummary(
        batch_id=7,
        status=BatchStatus.FINISHED,
        sent=[outcome(n, DeliveryStatus.SENT) for n in range(990)],
        failed=[outcome(n, DeliveryStatus.FAILED, f"refused <{n % 2}>") for n in range(990, 998)],
        skipped=[outcome(n, DeliveryStatus.SKIPPED, "no address") for n in range(998, 1000)],
        error=None,
    )
    text = summary_text("U1", summary)
    assert "*990 sent*, *8 failed*, *2 skipped*" in text
    assert "refused &lt;0&gt; (4)" in text and "no address (2)" in text
    assert check_message({"text": text, "blocks": summary_blocks("U1", summary)}) == []
    chunks = detail_messages(summary)
    assert all(len(chunk) <= MAX_MESSAGE_TEXT for chunk in chunks)
    joined = "\n".join(chunks)
    assert joined.count("• ") == 1000 and "<b>" not in joined
    assert joined.index("Failed (8)") < joined.index("Skipped (2)") < joined.index("Sent (990)")


def test_form_values_flattens_slack_state() -> None:
    state: dict[str, dict[str, dict[str, Any]]] = {
        "b1": {"a1": {"type": "multi_external_select", "selected_options": [{"value": "1"}, {"value": "2"}]}},
        "b2": {"a2": {"type": "checkboxes", "selected_options": []}},
        "b3": {"a3": {"type": "plain_text_input", "value": "hi"}},
        "b4": {"a4": {"type": "static_select", "selected_option": None}},
    }
    assert form_values(state) == {"a1": ["1", "2"], "a2": [], "a3": "hi", "a4": None}


def test_command_text_parsing() -> None:
    assert parse_command_text("") == (False, [])
    assert parse_command_text(" Pending ") == (True, [])
    assert parse_command_text("<mailto:a@b.example|a@b.example>") == (False, ["a@b.example"])
    assert parse_command_text("1001, ada@example.com;1002 1001 pending") == (
        True,
        ["1001", "ada@example.com", "1002"],
    )


def test_ids_are_unique() -> None:
    values = [value for name, value in vars(ids).items() if name.isupper()]
    assert len(values) == len(set(values))


def assert_valid_with_slack_sdk(view: dict[str, Any]) -> None:
    """`view` passes slack_sdk's Block Kit models (every block and element parsed and validated) and,
    once rebuilt by them, loses nothing: an unknown block or field would be dropped and show here."""
    model = View(**view)
    model.validate_json()
    rebuilt = model.to_dict()
    assert len(rebuilt["blocks"]) == len(view["blocks"])
    for ours, theirs in zip(view["blocks"], rebuilt["blocks"], strict=True):
        assert set(ours) <= set(theirs) | {"block_id"}, (ours, theirs)
