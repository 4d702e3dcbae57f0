"""RFC 7643/7644 conformance of /scim/v2, checked by scim2-tester (the python-scim project's checker)
against the real web app served on loopback, with a bearer token made by the token service.

Every check must pass; a check the checker skips must be named in JUSTIFIED_SKIPS with its reason, and
the README's SCIM section names it too (an operator reads the justification there).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import CheckResult, Status, check_server
from werkzeug.serving import make_server

from bot.audit import cli_actor
from bot.context import Context
from bot.scim.tokens import create_token
from credbot.web import create_web_app

README = Path(__file__).resolve().parent.parent / "README.md"
PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
_RANDOM_FILL = ("check_add_attribute", "check_replace_attribute", "check_remove_attribute")
_FULL_USER = ("object_query_with_attributes", "object_list_with_attributes", "search_with_attributes")
JUSTIFIED_SKIPS: dict[tuple[str | None, str, str], str] = {
    **{
        (kind, "search_with_attributes", "searching several resource types at once"): (
            "POST /.search over every resource type is not served (501, as RFC 7644 §3.12 allows)"
        )
        for kind in ("User", "Group")
    },
    **{
        ("User", title, "employeeNumber cannot change"): (
            "the checker writes a new employeeNumber into an existing user; it identifies the employee "
            "and is published as immutable"
        )
        for title in ("object_replacement", *_RANDOM_FILL)
    },
    ("User", "check_remove_attribute", "is required: each employee needs one"): (
        "removing the enterprise extension removes employeeNumber, which every employee needs"
    ),
    ("User", "check_remove_attribute", "did not remove attribute 'active'"): (
        "a user served is active (`active: true`); removing `active` does not deactivate anyone"
    ),
    **{
        ("User", title, words): (
            "when the checker sets a random `active` to false the user is deactivated, and a deactivated "
            "user is hidden from SCIM (404, left out of lists), as the issue requires"
        )
        for title in (*_FULL_USER, "object_replacement", *_RANDOM_FILL)
        for words in ("not found", "could not find")
    },
    **{
        ("User", title, "for 'emails'"): (
            "credbot's work address is always the primary one (emails.primary is published read-only)"
        )
        for title in _RANDOM_FILL
    },
    **{
        ("Group", title, "externalId"): "a group is a role, which stores only its name: no externalId"
        for title in ("object_query_with_attributes", "object_list_with_attributes", *_RANDOM_FILL)
    },
    **{
        ("Group", title, "for 'members'"): (
            "a member's display is credbot's (the employee's name), not the one the checker writes"
        )
        for title in _RANDOM_FILL
    },
}
"""(resource type, check title, words of its reason) -> why that check may be skipped or fail for that
reason alone (a product rule); each title is named in the README too."""


@dataclass(frozen=True)
class ScimServer:
    url: str
    token: str


@pytest.fixture
def scim_server(context: Context) -> Iterator[ScimServer]:
    """The real web app on a free loopback port, and a token from the token service."""
    with context.sessions.begin() as session:
        token = create_token(session, "conformance", cli_actor("test"))
    server = make_server("127.0.0.1", 0, create_web_app(context), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ScimServer(f"http://127.0.0.1:{server.server_port}/scim/v2", token)
    finally:
        server.shutdown()
        thread.join(timeout=10)


def named(result: CheckResult) -> str:
    return f"{result.resource_type or '-'} {result.title}: {result.status.name} ({result.reason})"


def test_every_conformance_check_passes_or_its_skip_is_justified(scim_server: ScimServer) -> None:
    headers = {"Authorization": f"Bearer {scim_server.token}"}
    with httpx2.Client(base_url=scim_server.url, headers=headers, timeout=30) as http:
        client = SyncSCIMClient(http)
        client.discover()
        _date_examples(client)
        results = check_server(client)
    assert results, "the checker ran no check"
    failed = [named(r) for r in results if r.status not in PASSING | {Status.SKIPPED} and not justified(r)]
    unjustified = [named(r) for r in results if r.status == Status.SKIPPED and not justified(r)]
    assert not failed, "checks failed:\n" + "\n".join(failed)
    assert not unjustified, "skipped without a reason in JUSTIFIED_SKIPS:\n" + "\n".join(unjustified)
    readme = README.read_text()
    assert all(title in readme for _, title, _ in JUSTIFIED_SKIPS), "every justified skip is in the README"


def _date_examples(client: SyncSCIMClient) -> None:
    """Give the checker valid start dates to write: SCIM has no date type (startDate is a string,
    YYYY-MM-DD), so from the Schemas alone it would write random text, which credbot refuses."""
    user = client.get_resource_model("User")
    assert user is not None
    for extension in user.get_extension_models().values():
        field = extension.model_fields.get("start_date")
        if field is not None:
            field.examples = ["2026-12-07", "2027-01-04"]


def justified(result: CheckResult) -> bool:
    """Whether `result` is skipped or failed for a reason JUSTIFIED_SKIPS names."""
    return any(
        (kind, title) == (result.resource_type, result.title) and words in (result.reason or "")
        for kind, title, words in JUSTIFIED_SKIPS
    )
