"""A SCIM client for tests: the real Flask app (bot.web's), a token from `create_token`, JSON in and out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from bot.context import Context
from bot.scim.api import init_scim
from bot.scim.tokens import create_token

SCIM_TYPE = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CREDBOT = "urn:ietf:params:scim:schemas:extension:credbot:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class ScimClient:
    """Requests to /scim/v2 of a Flask app serving SCIM, with a bearer token."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client, self.token = client, token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        content_type: str = SCIM_TYPE,
        data: bytes | None = None,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        raw = data if data is not None else (json.dumps(body).encode() if body is not None else None)
        response = self.client.open(
            "/scim/v2" + path,
            method=method,
            data=raw,
            headers=headers,
            content_type=content_type if raw is not None else None,
        )
        text = response.get_data(as_text=True)
        return Answer(response.status_code, json.loads(text) if text else None, dict(response.headers))

    def get(self, path: str) -> Answer:
        return self.call("GET", path)

    def post(self, path: str, body: Any) -> Answer:
        return self.call("POST", path, body)

    def put(self, path: str, body: Any) -> Answer:
        return self.call("PUT", path, body)

    def patch(self, path: str, body: Any) -> Answer:
        return self.call("PATCH", path, body)

    def delete(self, path: str) -> Answer:
        return self.call("DELETE", path)


def scim_client(ctx: Context, name: str = "okta") -> ScimClient:
    """A client of a Flask app serving only SCIM with `ctx`, bearing a new token `name`."""
    app = Flask("scim-test")
    init_scim(app, ctx)
    with ctx.sessions.begin() as session:
        token = create_token(session, name, "cli:test")
    return ScimClient(app.test_client(), token)


def user_payload(
    user_name: str = "ada.lovelace",
    number: str = "E100",
    *,
    given: str = "Ada",
    family: str = "Lovelace",
    work: str | None = "ada@example.com",
    home: str | None = None,
    external_id: str | None = "00u1",
    start_date: str | None = None,
    time_zone: str | None = None,
    department: str | None = None,
) -> dict[str, Any]:
    """A full User as Okta and Entra send it."""
    emails = [{"value": work, "type": "work", "primary": True}] if work else []
    emails += [{"value": home, "type": "home"}] if home else []
    payload: dict[str, Any] = {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": emails,
        "active": True,
        ENTERPRISE: {"employeeNumber": number},
    }
    if external_id:
        payload["externalId"] = external_id
    if time_zone:
        payload["timezone"] = time_zone
    if department:
        payload[ENTERPRISE]["department"] = department
    if start_date:
        payload["schemas"].append(CREDBOT)
        payload[CREDBOT] = {"startDate": start_date}
    return payload
