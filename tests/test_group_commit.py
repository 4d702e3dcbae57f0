"""bot.sending.group_commit: writes from many threads in groups, each caller told when its own is written."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.sending.group_commit import GroupCommit


def test_many_threads_get_their_own_results_from_few_groups() -> None:
    groups: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        groups.append(items)
        return [item * 10 for item in items]

    writer = GroupCommit(write, linger=0.05, most=16)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda item: writer.submit(item).result(), range(64)))
    writer.close()
    assert results == [item * 10 for item in range(64)]
    assert sorted(item for group in groups for item in group) == list(range(64))
    assert max(len(group) for group in groups) <= 16
    assert len(groups) < 32  # gathered, not one write each


def test_a_submit_is_resolved_only_once_its_group_was_written() -> None:
    written = threading.Event()

    def write(items: list[str]) -> list[str]:
        time.sleep(0.1)
        written.set()
        return items

    writer = GroupCommit(write, linger=0.0, most=8)
    submitted = writer.submit("a")
    assert not submitted.done()  # submit does not wait
    assert submitted.result() == "a" and written.is_set()
    writer.close()


def test_a_failed_write_raises_in_every_caller_of_its_group_and_the_writer_goes_on() -> None:
    calls = 0

    def write(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database away")
        return items

    writer = GroupCommit(write, linger=0.2, most=8)
    with ThreadPoolExecutor(3) as pool:
        futures = list(pool.map(writer.submit, range(3)))
        errors = [future.exception() for future in futures]
    assert all(isinstance(error, RuntimeError) for error in errors)
    assert writer.submit(7).result() == 7
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(8)
