"""Fixtures for background jobs: the layer pointed at the test's Context, on the stub or on Redis.

Redis tests use a namespace of their own and delete its keys afterwards (others share the server).
They skip when Redis is unreachable, unless CREDBOT_REQUIRE_REDIS=1 (then they fail).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from bot import jobs
from bot.context import Context

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_reachable(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
    except redis.RedisError:
        return False
    return True


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """TEST_REDIS_URL (default the local Redis) if it answers; skips (or fails when required) if not."""
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    if not redis_reachable(url):
        if os.environ.get("CREDBOT_REQUIRE_REDIS"):
            pytest.fail("Redis is required (CREDBOT_REQUIRE_REDIS) but not reachable at " + url)
        pytest.skip("Redis not reachable: set TEST_REDIS_URL to run these tests on it")
    return url


@pytest.fixture
def redis_namespace(redis_server_url: str) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test."""
    namespace = f"credbot-test-{uuid.uuid4().hex[:12]}"
    yield namespace
    client = redis.Redis.from_url(redis_server_url)
    for name in client.scan_iter(match=f"{namespace}*", count=500):
        client.delete(name)
    client.close()


@pytest.fixture(params=["stub", "redis"])
def job_broker(request: pytest.FixtureRequest, context: Context) -> Iterator[str]:
    """The job layer on this test's Context, with an in-process worker: on the stub, then on Redis."""
    if request.param == "redis":
        url = request.getfixturevalue("redis_server_url")
        namespace = request.getfixturevalue("redis_namespace")
        jobs.configure(context, redis_url=url, namespace=namespace, in_process=True)
    else:
        jobs.configure(context, redis_url="")
    yield request.param
    jobs.shutdown()


@pytest.fixture(autouse=True)
def _jobs_layer_reset() -> Iterator[None]:
    """Every test starts and ends with the job layer unconfigured (no worker threads left behind)."""
    jobs.shutdown()
    yield
    jobs.shutdown()
