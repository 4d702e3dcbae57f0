"""Fixtures shared by every test: a fresh database on each backend, settings and a context."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bot.context import Context
from bot.settings import Settings
from models import make_engine, make_session_factory
from tests.databases import PostgresDatabases, SqliteDatabases, postgres_admin_url

BACKENDS = ["sqlite", "postgresql"]

pytest_plugins = [
    "tests.standins.sendgrid",
    "tests.standins.slack",
    "tests.slack_requests",
    "tests.portal_helpers",
    "tests.cli_helpers",
    "tests.jobs_helpers",
]


@pytest.fixture(scope="session")
def database_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    templates: dict[str, object] = {"sqlite": SqliteDatabases(tmp_path_factory.mktemp("sqlite"))}
    admin_url = postgres_admin_url()
    if admin_url:
        templates["postgresql"] = PostgresDatabases(admin_url)
    yield templates
    for databases in templates.values():
        databases.close()  # type: ignore[attr-defined]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, database_templates: dict, tmp_path: Path) -> Iterator[str]:
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
        secret_key="test-secret-key",
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
