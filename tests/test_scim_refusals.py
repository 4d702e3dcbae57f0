"""Every refusal of /scim/v2 is a SCIM error (status, scimType, detail), never a 500 nor an HTML page."""

from __future__ import annotations

from typing import Any

import pytest

from bot.context import Context
from bot.scim.api import MAX_BODY
from tests.builders import add_employee
from tests.scim_helpers import ENTERPRISE, PATCH_SCHEMA, Answer, ScimClient, scim_client, user_payload

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def _refused(answer: Answer, status: int, scim_type: str | None, words: str = "") -> None:
    assert answer.status == status, answer.body
    assert answer.headers["Content-Type"] == "application/scim+json"
    assert answer.body["schemas"] == [ERROR_SCHEMA] and answer.body["status"] == str(status)
    assert answer.body.get("scimType") == scim_type
    assert words in answer.body["detail"]


@pytest.fixture
def scim(context: Context) -> ScimClient:
    return scim_client(context)


def test_a_missing_or_wrong_token_gets_401(scim: ScimClient) -> None:
    for token in ("", "credbot_scim_not-a-token", "Basic abc"):
        answer = scim.call("GET", "/Users", token=token)
        _refused(answer, 401, None, "bearer token")
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/Schemas", "GET"),
        ("DELETE", "/ServiceProviderConfig", "GET"),
        ("PATCH", "/ResourceTypes/User", "GET"),
        ("PUT", "/Users", "GET, POST"),
        ("POST", "/Users/1", "GET, PUT, PATCH, DELETE"),
    ],
)
def test_a_known_endpoint_asked_with_another_method_is_405(
    scim: ScimClient, method: str, path: str, allowed: str
) -> None:
    answer = scim.call(method, path)
    _refused(answer, 405, None, f"answers only {allowed}")
    assert answer.headers["Allow"] == allowed


def test_unknown_endpoints_are_404_and_search_over_every_type_is_501(scim: ScimClient) -> None:
    _refused(scim.call("POST", "/Nothing"), 404, None, "no SCIM endpoint")
    _refused(scim.call("GET", "/Users/1/more"), 404, None, "no SCIM endpoint")
    _refused(scim.post("/.search", {}), 501, None, "not served")


def test_bodies_that_are_not_a_json_object_are_refused(scim: ScimClient) -> None:
    _refused(scim.call("POST", "/Users", data=b"{not json"), 400, "invalidSyntax", "not JSON")
    _refused(scim.call("POST", "/Users", data=b"[1, 2]"), 400, "invalidSyntax", "JSON object")
    _refused(
        scim.call("POST", "/Users", data=b"{}", content_type="text/plain"), 415, None, "application/scim+json"
    )
    _refused(
        scim.call("POST", "/Users", data=b"{}", content_type="application/x-www-form-urlencoded"), 415, None
    )
    oversized = b'{"userName": "' + b"a" * MAX_BODY + b'"}'
    _refused(scim.call("POST", "/Users", data=oversized), 413, None, "larger than")
    assert scim.call("POST", "/Users", user_payload(), content_type="application/json").status == 201


@pytest.mark.parametrize(
    ("change", "status", "scim_type", "words"),
    [
        ({"schemas": ["urn:example:unknown"]}, 400, "invalidSyntax", "schema"),
        (
            {"schemas": [ENTERPRISE, "urn:ietf:params:scim:schemas:core:2.0:User", "urn:example:x"]},
            400,
            None,
            "",
        ),
        ({ENTERPRISE: {}}, 400, "invalidValue", "employeeNumber"),
        ({ENTERPRISE: {"employeeNumber": "  "}}, 400, "invalidValue", "employeeNumber"),
        ({"userName": "Ada Lovelace"}, 400, "invalidValue", "lower-case letters"),
        ({"userName": "ada@example.com"}, 400, "invalidValue", "Self-Service username"),
        ({"userName": "ada\u202elovelace"}, 400, "invalidValue", "control character"),
        ({"name": {"givenName": "Ada\x1b[31m", "familyName": "L"}}, 400, "invalidValue", "control character"),
        ({"name": {"familyName": "Lovelace"}}, 400, "invalidValue", "missing first name"),
        ({"emails": [{"type": "work", "value": "not-an-address"}]}, 400, "invalidValue", ""),
        ({"emails": [{"type": "work", "value": "ada@invalid..example"}]}, 400, "invalidValue", ""),
        ({"timezone": "Mars/Olympus"}, 400, "invalidValue", "unknown time zone"),
        (
            {"urn:ietf:params:scim:schemas:extension:credbot:2.0:User": {"startDate": "07/12/2026"}},
            400,
            "invalidValue",
            "not a date",
        ),
        (
            {ENTERPRISE: {"employeeNumber": "E100", "manager": {"value": "999"}}},
            400,
            "invalidValue",
            "manager",
        ),
        ({"unknownAttribute": 1}, 400, "invalidSyntax", "unknownAttribute"),
        ({"externalId": "x" * 256}, 400, "invalidValue", "externalId is longer"),
        ({"externalId": "a\nb"}, 400, "invalidValue", "control character"),
        ({ENTERPRISE: {"employeeNumber": "E" * 65}}, 400, "invalidValue", "longer than 64"),
        ({"name": {"givenName": "A" * 201, "familyName": "L"}}, 400, "invalidValue", "longer than 200"),
        ({"active": "perhaps"}, 400, "invalidValue", ""),
    ],
)
def test_bad_users_are_refused(
    scim: ScimClient, change: dict[str, Any], status: int, scim_type: str | None, words: str
) -> None:
    payload = {**user_payload(), **change}
    answer = scim.post("/Users", payload)
    assert answer.status == status, answer.body
    if scim_type is not None:
        _refused(answer, status, scim_type, words)
    assert scim.get("/Users").body["totalResults"] == 0


def test_what_is_another_employees_is_refused_as_uniqueness(context: Context, scim: ScimClient) -> None:
    with context.sessions() as session:
        add_employee(
            session, "E9", email="taken@example.com", username="taken.name"
        ).personal_email = "home@example.com"
        session.commit()
    assert scim.post("/Users", user_payload(work="TAKEN@example.com")).body["scimType"] == "uniqueness"
    _refused(scim.post("/Users", user_payload(home="Home@example.com")), 409, "uniqueness", "home")
    _refused(scim.post("/Users", user_payload("taken.name")), 409, "uniqueness", "userName")
    _refused(scim.post("/Users", user_payload(number="E9", work="new@example.com")), 409, "uniqueness", "E9")
    ada = scim.post("/Users", user_payload()).body["id"]
    grace = scim.post("/Users", user_payload("grace", "E2", work="grace@example.com")).body["id"]
    patch = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "path": "userName", "value": "grace"}],
    }
    _refused(scim.patch(f"/Users/{ada}", patch), 409, "uniqueness", "grace")
    number = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "E2"}],
    }
    _refused(scim.patch(f"/Users/{ada}", number), 400, "mutability")
    assert grace


@pytest.mark.parametrize(
    ("query", "scim_type"),
    [
        ("userName eq", "invalidFilter"),
        ('userName eq "a" and', "invalidFilter"),
        ('title eq "boss"', "invalidFilter"),
        ('userName sw "a"', "invalidFilter"),
        ("nickName pr", "invalidFilter"),
        ('phoneNumbers[type eq "work"].value eq "1"', "invalidFilter"),
        ('emails[type eq "work" or value eq "x@example.com"]', "invalidFilter"),
        ('noSuchThing eq "x"', "invalidFilter"),
    ],
)
def test_filters_that_are_not_supported_are_refused(scim: ScimClient, query: str, scim_type: str) -> None:
    answer = scim.get(f"/Users?filter={query}")
    _refused(answer, 400, scim_type)


def test_bad_paths_and_patches_are_refused(scim: ScimClient) -> None:
    ada = scim.post("/Users", user_payload()).body["id"]
    _refused(scim.get('/Users?attributes=emails[type eq "work"]'), 400, "invalidPath")
    bad_path = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}],
    }
    _refused(scim.patch(f"/Users/{ada}", bad_path), 400, "invalidPath")
    no_ops = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "jump", "path": "userName", "value": "x"}]}
    assert scim.patch(f"/Users/{ada}", no_ops).status == 400
    _refused(scim.get("/Users/999999"), 404, None)
    _refused(scim.get("/Users/not-a-number"), 404, None)
    _refused(scim.get("/Groups/1x"), 404, None)
    _refused(scim.get("/Nothing/here"), 404, None)
    _refused(scim.get("/Users?startIndex=one"), 400, "invalidValue")
    assert scim.get("/Users?startIndex=99999999999999999999&count=99999999").body["Resources"] == []
