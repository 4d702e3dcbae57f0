"""App Home, its modals and the digest as pure views: within Block Kit's limits at 1 and 100,000 people."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.accounts import AccountsChanged, LeftAlone, RolesEdited
from bot.digest import Digest
from bot.onboarding import Desk, Funnel, Person, Stage
from bot.reports import BatchLine
from handlers.digest import digest_message
from handlers.views_home import (
    PAGE_SIZE,
    changes_text,
    create_accounts_view,
    guest_home_view,
    home_view,
    list_view,
    manage_view,
    parse_page,
    rename_view,
    roles_text,
    roles_view,
    time_left,
)
from tests.standins.slack import check_home_view, check_message, check_view
from tests.test_slack_views import assert_valid_with_slack_sdk

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
LONG = "Bartholomew-Maximilian <!channel> & Sons " * 3


def person(n: int, hours: float | None = 30) -> Person:
    return Person(
        employee_id=n,
        employee_number=f"{n:06d}",
        name=f"{LONG}{n}",
        account_id=n,
        username=f"user{n}" + "x" * 80,
        deadline=NOW + timedelta(hours=hours) if hours is not None else None,
        locked_until=NOW + timedelta(minutes=12),
    )


def a_desk(count: int) -> Desk:
    people = [person(n) for n in range(1, min(count, 5) + 1)]
    batches = [
        BatchLine(
            n,
            "slack:UADMIN001" if n % 2 else "cli:<b>",
            "slack",
            NOW,
            "finished",
            count,
            3,
            2,
            1,
            {"delivered": count - 3, "bounced": 2, "dropped": 1} if n == 0 else {},
        )
        for n in range(5)
    ]
    return Desk(
        at=NOW,
        employees=count,
        counts=dict.fromkeys(Stage, count),
        samples=dict.fromkeys(Stage, people),
        funnel=Funnel(count, count, count // 2, count // 3),
        batches=batches,
    )


@pytest.mark.parametrize("count", [1, 100_000])
def test_home_view_fits_for_any_directory(count: int) -> None:
    view = home_view(a_desk(count))
    assert check_home_view(view) == []
    assert_valid_with_slack_sdk(view)
    text = json.dumps(view, ensure_ascii=False)
    assert f"Accounts never emailed: {count:,}" in text
    assert "&lt;!channel&gt; &amp; Sons" in text and "<!channel>" not in text
    assert ("…and 99,995 more" in text) == (count == 100_000)
    assert "<@UADMIN001>" in text and "`cli:&lt;b&gt;`" in text
    assert text.count("delivery problems") == 1 and "*3 delivery problems*" in text


def test_home_view_with_nobody_anywhere() -> None:
    desk = Desk(NOW, 0, dict.fromkeys(Stage, 0), {s: [] for s in Stage}, Funnel(0, 0, 0, 0), [])
    view = home_view(desk)
    assert check_home_view(view) == [] and "No credentials have been emailed yet" in json.dumps(view)
    assert_valid_with_slack_sdk(view)


@pytest.mark.parametrize("count", [1, 100_000])
@pytest.mark.parametrize("stage", list(Stage))
def test_list_pages_fit(stage: Stage, count: int) -> None:
    last = (count - 1) // PAGE_SIZE
    for page in {0, last}:
        people = [person(n) for n in range(page * PAGE_SIZE, min(count, (page + 1) * PAGE_SIZE))]
        view = list_view(stage, people, page, count, NOW)
        assert check_view(view) == []
        assert_valid_with_slack_sdk(view)
        assert f"Page {page + 1:,} of {last + 1:,}" in json.dumps(view)
        assert parse_page(f"{stage}:{page}") == (stage, page)
    assert parse_page("bogus:1") is None and parse_page("locked:x") is None


@pytest.mark.parametrize("count", [1, 100_000])
def test_create_accounts_confirmation_fits(count: int) -> None:
    view = create_accounts_view([person(n) for n in range(min(count, 300))], count, "12.nonce")
    assert check_view(view) == []
    assert_valid_with_slack_sdk(view)
    assert f"{count:,} active employee" in json.dumps(view)
    assert view["private_metadata"] == "12.nonce"


def test_the_forms_and_the_guest_view_fit() -> None:
    for view in (rename_view(), roles_view(), manage_view()):
        assert check_view(view) == []
        assert_valid_with_slack_sdk(view)
    guest = guest_home_view(["U1", "<!here>"])
    assert check_home_view(guest) == [] and "&lt;!here&gt;" in json.dumps(guest)
    assert_valid_with_slack_sdk(guest)
    assert "your HR or IT department" in json.dumps(guest_home_view([]))


def test_result_texts_escape_and_stay_short() -> None:
    changed = AccountsChanged(
        changed=[(f"<{n}>", f"u{n}") for n in range(1000)], unchanged=[("<!here>", LeftAlone.NOT_LOCKED)]
    )
    text = changes_text("Unlocked", changed)
    assert len(text) <= 3000 and "Unlocked 1,000 accounts" in text and "<!here>" not in text
    assert "Audited as action #7" in roles_text(RolesEdited(group=7, changed=3, without_account=["1"]))


def test_time_left_reads_naturally() -> None:
    assert time_left(NOW + timedelta(days=2, hours=3), NOW) == "2 days left"
    assert time_left(NOW + timedelta(hours=5, minutes=5), NOW) == "5 hours left"
    assert time_left(NOW + timedelta(minutes=30), NOW) == "30 minutes left"
    assert time_left(NOW - timedelta(hours=3), NOW) == "expired 3 hours ago"
    assert time_left(None, NOW) == "no expiry"


@pytest.mark.parametrize("count", [1, 100_000])
def test_digest_message_fits(count: int) -> None:
    people = [person(n, hours=5) for n in range(count)]
    digest = Digest(NOW, people, people, count, people, {})
    message = digest_message(digest)
    assert check_message(message) == []
    assert len(message["blocks"]) <= 50
    text = json.dumps(message)
    assert f"{count:,} expiring within 24 hours" in text and "<!channel>" not in text
