"""Fixture `cli`: run `credbot` commands with click's CliRunner against the test's database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import common
from bot.settings import Settings, get_settings
from credbot.cli import main

RunCli = Callable[..., Result]


def _forget_context() -> None:
    if common.context.cache_info().currsize:
        common.context().sessions.kw["bind"].dispose()
    common.context.cache_clear()
    get_settings.cache_clear()


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunCli]:
    """`cli("employees", "import", path)` -> click Result, against this test's database and outbox.

    Runs in tmp_path (so no `.env` is read); settings and the CLI context are rebuilt for the test.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("SENDGRID_API_KEY", "")
    _forget_context()
    runner = CliRunner()

    def run(*args: object, input: str | None = None) -> Result:
        return runner.invoke(main, [str(arg) for arg in args], input=input, catch_exceptions=False)

    yield run
    _forget_context()
