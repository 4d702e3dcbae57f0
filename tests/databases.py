"""Throw-away databases for tests and benchmarks: a migrated template per backend, copied for each use."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from models import make_engine, upgrade_database

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_admin_url() -> str | None:
    """TEST_DATABASE_URL (or the local default) when PostgreSQL answers, else None."""
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)
    if not url:
        return None
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError:
        return None
    return url


class SqliteDatabases:
    """Each test gets a copy of one migrated SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.template = directory / "template.db"
        engine = make_engine(f"sqlite:///{self.template}")
        upgrade_database(engine)
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()

    def create(self, directory: Path) -> str:
        target = directory / "credbot.db"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"

    def drop(self, url: str) -> None:
        """Remove the file and its journal, so a later copy to the same place starts clean."""
        path = make_url(url).database
        assert path
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing to do: the template lives in pytest's tmp dir."""


class PostgresDatabases:
    """Each test gets `CREATE DATABASE ... TEMPLATE` of one migrated database, dropped afterwards.

    With `ahead=True` (the test suite) the server does that work beside the tests rather than between them:
    the next test's database is copied while a test runs, and a finished test's is dropped in the background
    (a copy and a drop take 0.3 to 2 s of waiting each on a loaded machine), each in a thread of its own so
    that a copy never waits behind drops. `close` waits for both.
    """

    def __init__(self, admin_url: str, prefix: str = "credbot", ahead: bool = False) -> None:
        admin_url = admin_url.replace("postgresql://", "postgresql+psycopg://", 1)
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.admin_url = make_url(admin_url)
        self.prefix = prefix
        self.template = f"{prefix}_tpl_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{self.template}"')
        engine = make_engine(self._url(self.template))
        upgrade_database(engine)
        engine.dispose()
        self._copier = ThreadPoolExecutor(1, thread_name_prefix="test-database-copy") if ahead else None
        self._dropper = ThreadPoolExecutor(1, thread_name_prefix="test-database-drop") if ahead else None
        self._next: Future[str] | None = self._copier.submit(self._copy) if self._copier else None
        self._drops: list[Future[None]] = []

    def _url(self, name: str) -> str:
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def _execute(self, statement: str) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(statement)

    def _copy(self) -> str:
        name = f"{self.prefix}_t_{uuid.uuid4().hex[:12]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return self._url(name)

    def create(self, _directory: Path | None = None) -> str:
        if self._copier is None or self._next is None:
            return self._copy()
        url, self._next = self._next.result(), self._copier.submit(self._copy)
        return url

    def drop(self, url: str) -> None:
        statement = f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'
        if self._dropper is None:
            self._execute(statement)
            return
        for finished in [dropping for dropping in self._drops if dropping.done()]:
            finished.result()  # a drop that failed fails here, in a later test's teardown
        self._drops = [dropping for dropping in self._drops if not dropping.done()]
        self._drops.append(self._dropper.submit(self._execute, statement))

    def close(self) -> None:
        """Wait for the background drops, drop the unused copy made ahead, then the template."""
        for dropping in self._drops:
            dropping.result()
        if self._next is not None:
            self._execute(f'DROP DATABASE IF EXISTS "{make_url(self._next.result()).database}" WITH (FORCE)')
        for executor in (self._copier, self._dropper):
            if executor is not None:
                executor.shutdown()
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self.admin.dispose()


@contextmanager
def throwaway_database(kind: str, directory: Path | None, admin_url: str | None = None) -> Iterator[str]:
    """One migrated, empty database, removed afterwards (for benchmarks): `sqlite`, a file in
    `directory`, or `postgresql`, a database named credbot_bench_... on the server of `admin_url`."""
    databases: SqliteDatabases | PostgresDatabases
    if kind == "sqlite":
        assert directory, "a SQLite database needs a directory"
        databases = SqliteDatabases(directory)
        url = databases.create(directory)
    else:
        assert admin_url, "a PostgreSQL database needs the server's URL"
        databases = PostgresDatabases(admin_url, prefix="credbot_bench")
        url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)
        databases.close()
