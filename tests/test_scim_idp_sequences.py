"""Okta's and Microsoft Entra ID's provisioning sequences, as their SCIM documentation describes the
requests they send, played against the real app."""

from __future__ import annotations

from sqlalchemy import select

from bot.audit import AuditAction
from bot.context import Context
from models import Account, AccountStatus, Employee
from tests.builders import audit_events
from tests.scim_helpers import ENTERPRISE, GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA, scim_client, user_payload


def _okta_user(number: str, user_name: str, given: str, family: str) -> dict[str, object]:
    """A user as Okta creates it: its own login mapped to a username, a password it may sync, a locale."""
    payload = user_payload(user_name, number, given=given, family=family, work=f"{user_name}@example.com")
    payload.update(displayName=f"{given} {family}", locale="en-US", password="t1meMa$heen", groups=[])
    return payload


def test_okta_sequence(context: Context) -> None:
    scim = scim_client(context, "okta")
    # Connection test, then "does this user exist?" before creating it.
    connection = scim.get("/Users?startIndex=1&count=2")
    assert connection.status == 200
    assert connection.body["totalResults"] == 0 and connection.body["Resources"] == []
    missing = scim.get('/Users?filter=userName eq "ada.lovelace"&startIndex=1&count=100')
    assert missing.body["totalResults"] == 0
    created = scim.post("/Users", _okta_user("E1", "ada.lovelace", "Ada", "Lovelace"))
    assert created.status == 201, created.body
    ada = created.body["id"]
    scim.post("/Users", _okta_user("E2", "charles.babbage", "Charles", "Babbage"))
    page = scim.get("/Users?startIndex=1&count=2")
    assert page.body["totalResults"] == 2 and page.body["itemsPerPage"] == 2

    # A profile change: Okta PUTs the whole user.
    full = _okta_user("E1", "ada.lovelace", "Augusta Ada", "King")
    full.update(id=ada)
    full[ENTERPRISE] = {"employeeNumber": "E1", "department": "Analytics"}
    replaced = scim.put(f"/Users/{ada}", full)
    assert replaced.status == 200, replaced.body
    assert replaced.body["name"] == {"givenName": "Augusta Ada", "familyName": "King"}
    assert replaced.body[ENTERPRISE]["department"] == "Analytics"

    # Group push: create with a member, rename, add and remove members, delete.
    group = scim.post(
        "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Approvers", "members": [{"value": ada}]}
    )
    assert group.status == 201, group.body
    group_id = group.body["id"]
    ada_ref = f"http://localhost/scim/v2/Users/{ada}"
    assert group.body["members"] == [
        {"value": ada, "display": "Augusta Ada King", "$ref": ada_ref, "type": "User"}
    ]
    babbage = scim.get('/Users?filter=userName eq "charles.babbage"').body["Resources"][0]["id"]
    renamed = scim.patch(
        f"/Groups/{group_id}",
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "replace", "value": {"id": group_id, "displayName": "Expense approvers"}},
                {"op": "add", "path": "members", "value": [{"value": babbage, "display": "Charles Babbage"}]},
                {"op": "remove", "path": f'members[value eq "{ada}"]'},
            ],
        },
    )
    assert renamed.status == 200, renamed.body
    assert renamed.body["displayName"] == "Expense approvers"
    assert [member["value"] for member in renamed.body["members"]] == [babbage]
    with context.sessions() as session:
        roles = {
            account.username: [role.name for role in account.roles]
            for account in session.scalars(select(Account))
        }
    assert roles["charles.babbage"] == ["Employee", "Expense approvers"]
    assert roles["ada.lovelace"] == ["Employee"]

    # Deactivation: PATCH active false. The account is disabled; the user is gone from SCIM.
    deactivated = scim.patch(
        f"/Users/{ada}",
        {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    assert deactivated.status == 200, deactivated.body
    assert deactivated.body["active"] is False
    assert scim.get(f"/Users/{ada}").status == 404
    assert scim.get('/Users?filter=userName eq "ada.lovelace"').body["totalResults"] == 0
    with context.sessions() as session:
        employee = session.scalars(select(Employee).where(Employee.employee_number == "E1")).one()
        assert employee.active is False and employee.account is not None
        assert employee.account.status == AccountStatus.DISABLED and employee.account.session_version == 1
    assert scim.delete(f"/Groups/{group_id}").status == 204
    assert scim.get(f"/Groups/{group_id}").status == 404
    with context.sessions() as session:
        babbage_account = session.scalars(select(Account).where(Account.username == "charles.babbage")).one()
        assert [role.name for role in babbage_account.roles] == ["Employee"]

    actors = {
        event.actor
        for event in audit_events(context.sessions)
        if event.action.startswith(("scim.user", "scim.group"))
    }
    assert actors == {"scim:okta"}
    deactivations = audit_events(context.sessions, AuditAction.SCIM_USER_DEACTIVATED)
    assert [(e.target, e.details["employee_id"]) for e in deactivations] == [("employee:E1", int(ada))]


def test_entra_sequence(context: Context) -> None:
    scim = scim_client(context, "entra")
    assert scim.get('/Users?filter=userName eq "grace.hopper"').body["totalResults"] == 0
    payload = user_payload("grace.hopper", "E7", given="Grace", family="Hopper", work="grace@example.com")
    payload.update(
        externalId="9950b140-90a0-4201-9d65-b5f209fb4cd0",
        displayName="Grace Hopper",
        meta={"resourceType": "User"},
        roles=[],
    )
    payload["name"] = {"formatted": "Grace Hopper", "givenName": "Grace", "familyName": "Hopper"}
    created = scim.post("/Users", payload)
    assert created.status == 201, created.body
    grace = created.body["id"]
    by_external = scim.get('/Users?filter=externalId eq "9950b140-90a0-4201-9d65-b5f209fb4cd0"')
    assert [user["id"] for user in by_external.body["Resources"]] == [grace]
    assert (
        scim.get('/Users?filter=externalId eq "9950B140-90A0-4201-9D65-B5F209FB4CD0"').body["totalResults"]
        == 0
    )
    by_work = scim.get('/Users?filter=emails[type eq "work"].value eq "GRACE@example.com"')
    assert [user["id"] for user in by_work.body["Resources"]] == [grace]
    both = scim.get('/Users?filter=userName eq "grace.hopper" and externalId eq "nope"')
    assert both.body["totalResults"] == 0

    boss = scim.post("/Users", user_payload("boss", "M1", work="boss@example.com", external_id="b1")).body[
        "id"
    ]
    manager = {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": boss}
    with_manager = scim.patch(f"/Users/{grace}", {"schemas": [PATCH_SCHEMA], "Operations": [manager]})
    boss_ref = f"http://localhost/scim/v2/Users/{boss}"
    assert with_manager.body[ENTERPRISE]["manager"] == {"value": boss, "$ref": boss_ref}, with_manager.body

    # Capitalised ops, a value-filtered path, and a string boolean.
    updated = scim.patch(
        f"/Users/{grace}",
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "g.hopper@example.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Hopper-Murray"},
                {"op": "Add", "path": "nickName", "value": "Amazing Grace"},
                {"op": "Replace", "path": "active", "value": "True"},
            ],
        },
    )
    assert updated.status == 200, updated.body
    assert updated.body["emails"][0]["value"] == "g.hopper@example.com"
    assert updated.body["name"]["familyName"] == "Hopper-Murray"
    changed = audit_events(context.sessions, AuditAction.SCIM_USER_UPDATED)
    assert [sorted(e.details["changed"]) for e in changed] == [["manager"], ["email", "last_name"]]

    # Groups: create, look up by name without members, add and remove a member as Entra sends them.
    group = scim.post(
        "/Groups",
        {
            "schemas": [GROUP_SCHEMA],
            "externalId": "g1",
            "displayName": "Payroll",
            "members": [],
            "meta": {"resourceType": "Group"},
        },
    )
    assert group.status == 201, group.body
    group_id = group.body["id"]
    looked_up = scim.get('/Groups?excludedAttributes=members&filter=displayName eq "payroll"')
    assert [found["id"] for found in looked_up.body["Resources"]] == [group_id]
    member = {"$ref": None, "value": grace}
    added = scim.patch(
        f"/Groups/{group_id}",
        {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "Add", "path": "members", "value": [member]}]},
    )
    assert added.status == 200, added.body
    check = scim.get(f'/Groups?filter=id eq "{group_id}" and members eq "{grace}"&excludedAttributes=members')
    assert check.body["totalResults"] == 1 and "members" not in check.body["Resources"][0]
    removed = scim.patch(
        f"/Groups/{group_id}",
        {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "Remove", "path": "members", "value": [member]}]},
    )
    assert removed.status == 200, removed.body
    assert "members" not in removed.body
    memberships = audit_events(context.sessions, AuditAction.SCIM_GROUP_CHANGED)
    per_user = [(e.target, e.details["member"]) for e in memberships if "employee_id" in e.details]
    assert per_user == [("employee:E7", "added"), ("employee:E7", "removed")]

    # Soft delete by PATCH, with Entra's string boolean.
    disabled = scim.patch(
        f"/Users/{grace}",
        {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]},
    )
    assert disabled.status == 200, disabled.body
    assert scim.get(f"/Users/{grace}").status == 404
    assert [e.actor for e in audit_events(context.sessions, AuditAction.SCIM_USER_DEACTIVATED)] == [
        "scim:entra"
    ]
    assert USER_SCHEMA in created.body["schemas"]
