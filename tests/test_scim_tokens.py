"""`credbot scim token create/list/revoke`: printed once, stored as a hash, refused once revoked."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select

from bot.audit import AuditAction
from bot.context import Context
from bot.scim.api import init_scim
from models import ScimToken
from tests.builders import audit_events
from tests.cli_helpers import RunCli
from tests.scim_helpers import ScimClient


def test_tokens_are_created_listed_and_revoked(cli: RunCli, context: Context) -> None:
    created = cli("scim", "token", "create", "Okta")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("credbot_scim_") and len(token) > 40
    with context.sessions() as session:
        stored = session.scalars(select(ScimToken)).one()
        assert stored.name == "okta" and token not in stored.token_hash and len(stored.token_hash) == 64
    app = Flask("scim-test")
    init_scim(app, context)
    scim = ScimClient(app.test_client(), token)
    assert scim.get("/ServiceProviderConfig").status == 200

    listed = cli("scim", "token", "list")
    assert "okta" in listed.output and token not in listed.output
    assert cli("scim", "token", "create", "okta").exit_code != 0
    bad = cli("scim", "token", "create", "Okta prod!")
    assert bad.exit_code != 0 and "token name must be" in bad.output

    assert cli("scim", "token", "revoke", "okta").exit_code == 0
    assert scim.get("/ServiceProviderConfig").status == 401
    assert cli("scim", "token", "revoke", "okta").exit_code != 0
    actions = [e.action for e in audit_events(context.sessions) if e.action.startswith("scim.token")]
    assert actions == [AuditAction.SCIM_TOKEN_CREATED, AuditAction.SCIM_TOKEN_REVOKED]
