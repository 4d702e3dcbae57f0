"""SCIM Users through the real Flask app: create, read, list with filters and paging, replace, patch,
deactivate; each change audited as `scim:NAME`."""

from __future__ import annotations

from sqlalchemy import select

from bot.accounts import create_accounts
from bot.audit import AuditAction
from bot.context import Context
from bot.directory import list_employees
from models import Account
from tests.builders import audit_events, employee_ids
from tests.scim_helpers import CREDBOT, ENTERPRISE, USER_SCHEMA, scim_client, user_payload


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
    assert [(e.actor, e.target) for e in accounts] == [("scim:okta", "account:ada.lovelace")]


def test_discovery_describes_users_groups_and_the_start_date(context: Context) -> None:
    scim = scim_client(context)
    config = scim.get("/ServiceProviderConfig").body
    assert config["patch"] == {"supported": True} and config["filter"]["supported"] is True
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = {t["id"]: t for t in scim.get("/ResourceTypes").body["Resources"]}
    assert types["User"]["endpoint"] == "/Users" and types["Group"]["endpoint"] == "/Groups"
    assert [e["schema"] for e in types["User"]["schemaExtensions"]] == [ENTERPRISE, CREDBOT]
    schemas = {s["id"]: s for s in scim.get("/Schemas").body["Resources"]}
    assert [a["name"] for a in schemas[CREDBOT]["attributes"]] == ["startDate"]
    core = {a["name"]: a for a in schemas[USER_SCHEMA]["attributes"]}
    assert sorted(core) == ["active", "displayName", "emails", "name", "timezone", "userName"]  # stored only
    assert [s["name"] for s in core["name"]["subAttributes"] if s["required"]] == ["familyName", "givenName"]
    assert (
        "Europe/London" in core["timezone"]["canonicalValues"]
        and core["displayName"]["mutability"] == "readOnly"
    )
    number = next(a for a in schemas[ENTERPRISE]["attributes"] if a["name"] == "employeeNumber")
    assert number["required"] is True and number["mutability"] == "immutable"
    assert scim.get(f"/Schemas/{CREDBOT}").body["id"] == CREDBOT
    assert scim.get("/ResourceTypes/User").body["meta"]["location"].endswith("/scim/v2/ResourceTypes/User")


def test_pages_and_attribute_selection(context: Context) -> None:
    scim = scim_client(context)
    ids = [
        scim.post(
            "/Users", user_payload(f"user{n}", f"E{n}", work=f"u{n}@example.com", external_id=None)
        ).body["id"]
        for n in range(5)
    ]
    pages = [scim.get(f"/Users?startIndex={start}&count=2").body for start in (1, 3, 5, 7)]
    assert [[u["id"] for u in page["Resources"]] for page in pages] == [ids[:2], ids[2:4], ids[4:], []]
    assert {page["totalResults"] for page in pages} == {5}
    assert scim.get("/Users?count=0").body["Resources"] == []
    only = scim.get(f"/Users/{ids[0]}?attributes=userName,emails.value").body
    assert only == {
        "schemas": only["schemas"],
        "id": ids[0],
        "userName": "user0",
        "emails": [{"value": "u0@example.com"}],
    }
    without = scim.get(f"/Users?excludedAttributes=emails,{ENTERPRISE}:employeeNumber&count=1").body[
        "Resources"
    ][0]
    assert (
        "emails" not in without
        and "employeeNumber" not in without.get(ENTERPRISE, {})
        and without["userName"]
    )
    number = scim.get(f'/Users?filter={ENTERPRISE}:employeeNumber eq "E3"').body["Resources"]
    assert [u["id"] for u in number] == [ids[3]]
    either = scim.get('/Users?filter=userName eq "user1" or userName eq "user2"').body
    assert either["totalResults"] == 2


def test_delete_deactivates_and_put_replaces(context: Context) -> None:
    scim = scim_client(context, "entra")
    manager = scim.post("/Users", user_payload("boss", "M1", work="boss@example.com", external_id=None)).body[
        "id"
    ]
    ada = scim.post("/Users", user_payload(start_date="2026-12-07")).body["id"]
    full = user_payload("ada.king", time_zone="europe/london", work="ada@example.com")
    full[ENTERPRISE]["manager"] = {"value": manager}
    replaced = scim.put(f"/Users/{ada}", full).body
    assert replaced["userName"] == "ada.king" and replaced["timezone"] == "Europe/London"
    assert replaced[ENTERPRISE]["manager"] == {
        "value": manager,
        "$ref": f"http://localhost/scim/v2/Users/{manager}",
    }
    assert CREDBOT not in replaced  # left out of the PUT: cleared
    renamed = audit_events(context.sessions, AuditAction.ACCOUNT_RENAMED)
    assert [(e.actor, e.details["new_username"]) for e in renamed] == [("scim:entra", "ada.king")]
    assert scim.delete(f"/Users/{ada}").status == 204
    assert scim.get(f"/Users/{ada}").status == 404
    assert scim.delete(f"/Users/{ada}").status == 404
    assert scim.get("/Users").body["totalResults"] == 1
    events = audit_events(context.sessions, AuditAction.SCIM_USER_DEACTIVATED)
    assert [(e.target, e.details) for e in events] == [
        ("employee:E100", {"employee_id": int(ada), "account_disabled": True})
    ]
    assert [e.target for e in audit_events(context.sessions, AuditAction.ACCOUNT_DISABLED)] == [
        "account:ada.king"
    ]


def test_without_scim_create_accounts_the_username_waits_for_the_account(context: Context) -> None:
    settings = context.settings.model_copy(update={"scim_create_accounts": False})
    scim = scim_client(Context(settings=settings, sessions=context.sessions, clock=context.clock))
    ada = scim.post("/Users", user_payload()).body
    assert ada["userName"] == "ada.lovelace"
    assert scim.get('/Users?filter=userName eq "ada.lovelace"').body["totalResults"] == 1
    with context.sessions() as session:
        assert [e.employee_number for e in list_employees(session, "ada.lovelace")] == ["E100"]
    with context.sessions.begin() as session:
        assert session.scalar(select(Account).limit(1)) is None
        created = create_accounts(session, context.settings, "cli:hr", employee_ids(session, "E100"))
    assert [account.username for account in created.created] == ["ada.lovelace"]
    assert scim.get(f"/Users/{ada['id']}").body["userName"] == "ada.lovelace"


def test_a_user_provisioned_inactive_is_recorded_as_a_leaver(context: Context) -> None:
    scim = scim_client(context)
    created = scim.post("/Users", {**user_payload(), "active": False})
    assert created.status == 201 and created.body["active"] is False
    assert scim.get(f"/Users/{created.body['id']}").status == 404
    actions = [e.action for e in audit_events(context.sessions) if e.action.startswith("scim.user")]
    assert actions == [AuditAction.SCIM_USER_CREATED, AuditAction.SCIM_USER_DEACTIVATED]
