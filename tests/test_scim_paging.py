"""Paging through /Users: the page after one served lately resumes from its last user (keyset), so that a
provider paging through a directory that changes meanwhile neither misses nor repeats a user."""

from __future__ import annotations

import dataclasses

from bot.clock import ManualClock
from bot.context import Context
from bot.scim.paging import RESUME_FOR
from tests.scim_helpers import ScimClient, scim_client, user_payload


def _ids(scim: ScimClient, start: int) -> list[str]:
    return [user["id"] for user in scim.get(f"/Users?startIndex={start}&count=2").body["Resources"]]


def _users(scim: ScimClient, count: int) -> list[str]:
    return [
        scim.post(
            "/Users", user_payload(f"user{n}", f"E{n}", work=f"u{n}@example.com", external_id=None)
        ).body["id"]
        for n in range(count)
    ]


def test_the_next_page_goes_on_after_the_last_user_served(context: Context) -> None:
    scim = scim_client(dataclasses.replace(context, clock=ManualClock()))
    ids = _users(scim, 6)
    assert _ids(scim, 1) == ids[:2]
    assert scim.delete(f"/Users/{ids[0]}").status == 204  # a leaver while the provider pages
    second = scim.get("/Users?startIndex=3&count=2").body
    assert [user["id"] for user in second["Resources"]] == ids[2:4]  # OFFSET would skip ids[2]
    assert second["totalResults"] == 6  # the 2 already served and the 4 after them
    assert _ids(scim, 5) == ids[4:]


def test_a_page_asked_for_later_is_counted_from_the_start(context: Context) -> None:
    clock = ManualClock()
    scim = scim_client(dataclasses.replace(context, clock=clock))
    ids = _users(scim, 5)
    assert _ids(scim, 1) == ids[:2]
    assert scim.delete(f"/Users/{ids[0]}").status == 204
    clock.advance(RESUME_FOR.total_seconds() + 1)
    later = scim.get("/Users?startIndex=3&count=2").body
    assert [user["id"] for user in later["Resources"]] == ids[3:5]
    assert later["totalResults"] == 4
