"""SCIM Users through the real Flask app: create, read, list with filters and paging, replace, patch,
deactivate; each change audited as `scim:NAME`."""

from __future__ import annotations

from bot.audit import AuditAction
from bot.context import Context
from tests.builders import audit_events
from tests.scim_helpers import CREDBOT, ENTERPRISE, scim_client, user_payload


def test_a_provisioned_user_is_an_employee_with_an_account(context: Context) -> None:
    scim = scim_client(context)
    payload = user_payload(start_date="2026-12-07", time_zone="Europe/London", home="ada@home.example")
    created = scim.post("/Users", payload)
    assert created.status == 201, created.body
    user = created.body
    assert user["userName"] == "ada.lovelace"
    assert user[ENTERPRISE]["employeeNumber"] == "E100"
    assert user[CREDBOT]["startDate"] == "2026-12-07"
    assert user["timezone"] == "Europe/London"
    assert {e["type"]: e["value"] for e in user["emails"]} == {
        "work": "ada@example.com",
        "home": "ada@home.example",
    }
    assert created.headers["Location"].endswith(f"/scim/v2/Users/{user['id']}")
    assert scim.get(f"/Users/{user['id']}").body == user
    found = scim.get('/Users?filter=userName eq "Ada.Lovelace"').body
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == user["id"]
    events = audit_events(context.sessions, AuditAction.SCIM_USER_CREATED)
    assert [(e.actor, e.target, e.details["employee_id"]) for e in events] == [
        ("scim:okta", "employee:E100", int(user["id"]))
    ]
    accounts = audit_events(context.sessions, AuditAction.ACCOUNT_CREATED)
    assert [(e.actor, e.target) for e in accounts] == [("scim:okta", "ada.lovelace")]
