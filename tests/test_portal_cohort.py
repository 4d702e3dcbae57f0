"""A cohort's first morning: 40 new hires behind one office address sign in and change their passwords
at once, with the default limits. Before the failure limits were keyed by address and username, the
eleventh POST in a minute got "Too Many Requests"."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask

from bot.context import Context
from models import AccountStatus
from tests.builders import TEMP_PASSWORD, add_person
from tests.portal_helpers import Browser, get_account, make_portal_app

COHORT = 40
OFFICE = "203.0.113.10"


@pytest.fixture(params=["memory", "redis"])
def office_portal(request: pytest.FixtureRequest, context: Context) -> Flask:
    """The portal with the default limits, counting in memory or (as in production) in Redis."""
    if request.param == "memory":
        return make_portal_app(context)
    url = request.getfixturevalue("redis_server_url")
    ctx = Context(context.settings.model_copy(update={"redis_url": url}), context.sessions)
    return make_portal_app(ctx, RATELIMIT_KEY_PREFIX=request.getfixturevalue("redis_namespace"))


def first_morning(app: Flask, number: int) -> list[int]:
    """One new hire: sign in (every fourth mistypes once), change the password; the statuses seen."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = OFFICE
    browser = Browser(client)
    username = f"hire{number:02d}"
    seen = []
    if number % 4 == 0:
        seen.append(browser.sign_in(username, "TempPassw0rdXyzq").status_code)
    seen.append(browser.sign_in(username, TEMP_PASSWORD).status_code)
    browser.get("/portal/password")
    new = f"lantern-orchard-{number:02d}-meadow-pickle"
    seen.append(browser.post("/portal/password", {"new_password": new, "confirm_password": new}).status_code)
    seen.append(browser.get("/portal/").status_code)
    return seen


def test_forty_new_hires_behind_one_address_all_get_in(context: Context, office_portal: Flask) -> None:
    people = [
        add_person(
            context,
            username=f"hire{n:02d}",
            first_name=f"Hire{n:02d}",
            last_name="Newcomer",
            email=f"hire{n:02d}@example.com",
        )
        for n in range(COHORT)
    ]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: first_morning(office_portal, n), range(COHORT)))
    for number, seen in enumerate(results):
        expected = ([401] if number % 4 == 0 else []) + [303, 303, 200]
        assert seen == expected, f"hire{number:02d}: {seen}"
    for person in people:
        account = get_account(context, person.account_id)
        assert account.status == AccountStatus.ACTIVE and not account.must_change_password
