"""Fixtures shared by every test: a fresh database on each backend, settings and a context."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session

from bot import passwords
from bot.context import Context
from bot.settings import Settings
from models import make_engine, make_session_factory
from tests.databases import PostgresDatabases, SqliteDatabases, postgres_admin_url

Databases = SqliteDatabases | PostgresDatabases

BACKENDS = ["sqlite", "postgresql"]

pytest_plugins = [
    "tests.standins.sendgrid",
    "tests.standins.slack",
    "tests.slack_requests",
    "tests.portal_helpers",
    "tests.cli_helpers",
    "tests.jobs_helpers",
]


# --- Password hashing at a test's cost (issue 18: the suite's speed) -------------------------------------
# argon2id at OWASP's cost takes 18 ms of CPU per hash on an idle core and ten times that on a loaded one, and
# the suite hashes thousands of passwords (every batch, every builder's account, every sign-in verifies two).
# Only tests marked `owasp_hash_cost` check the cost itself; every other test hashes with the same scheme at
# the smallest cost argon2 allows. The decoy hash that unknown usernames are verified against is made at the
# same cost, so sign-ins still cost the same whoever is named. Processes a test starts hash at full cost.
CHEAP_ARGON2 = {"argon2__memory_cost": 64, "argon2__rounds": 1}


def _hash_at(extra: dict[str, int]) -> tuple[dict[str, object], str]:
    """The hashing configuration and its decoy hash: production's, with `extra` over it."""
    context = passwords.password_context.copy(**extra)
    return context.to_dict(), context.hash("decoy-password-for-tests")


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[dict[str, tuple[dict[str, object], str]]]:
    costs = {
        "owasp": (passwords.password_context.to_dict(), passwords.DUMMY_HASH),
        "cheap": _hash_at(CHEAP_ARGON2),
    }
    with pytest.MonkeyPatch.context() as patch:
        passwords.password_context.load(costs["cheap"][0])
        patch.setattr(passwords, "DUMMY_HASH", costs["cheap"][1])
        yield costs
    passwords.password_context.load(costs["owasp"][0])


@pytest.fixture(autouse=True)
def _owasp_hash_cost(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    _cheap_password_hashing: dict[str, tuple[dict[str, object], str]],
) -> Iterator[None]:
    """Tests marked `owasp_hash_cost` hash at production's cost, restored for them alone."""
    if request.node.get_closest_marker("owasp_hash_cost") is None:
        yield
        return
    owasp, cheap = _cheap_password_hashing["owasp"], _cheap_password_hashing["cheap"]
    passwords.password_context.load(owasp[0])
    monkeypatch.setattr(passwords, "DUMMY_HASH", owasp[1])
    yield
    passwords.password_context.load(cheap[0])


@pytest.fixture(scope="session")
def database_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Databases]]:
    templates: dict[str, Databases] = {"sqlite": SqliteDatabases(tmp_path_factory.mktemp("sqlite"))}
    admin_url = postgres_admin_url()
    if admin_url:
        templates["postgresql"] = PostgresDatabases(admin_url, ahead=True)
    yield templates
    for databases in templates.values():
        databases.close()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, database_templates: dict[str, Databases], tmp_path: Path
) -> Iterator[str]:
    """A migrated, empty database of its own for this test, on SQLite and on PostgreSQL."""
    databases = database_templates.get(request.param)
    if databases is None:
        if os.environ.get("CREDBOT_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required (CREDBOT_REQUIRE_POSTGRES) but not reachable")
        pytest.skip("PostgreSQL not reachable: set TEST_DATABASE_URL to run these tests on it")
    url = databases.create(tmp_path)
    yield url
    databases.drop(url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a test: its own database and outbox, no `.env`, no SendGrid key."""
    return Settings(
        _env_file=None,
        database_url=database_url,
        outbox_dir=tmp_path / "outbox",
        sendgrid_api_key=None,
        slack_bot_token=None,
        slack_signing_secret=None,
        secret_key=SecretStr("test-secret-key"),
    )


@pytest.fixture
def context(settings: Settings) -> Iterator[Context]:
    engine = make_engine(settings.database_url, pool_size=settings.mail_concurrency + 8)
    yield Context(settings=settings, sessions=make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def session(context: Context) -> Iterator[Session]:
    with context.sessions() as session:
        yield session
