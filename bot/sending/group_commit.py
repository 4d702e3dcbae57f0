"""Group commit: writes from many threads gathered into one transaction, each caller told when its own is.

A batch's mail threads each end a delivery with a few small writes. Written one transaction per
delivery, they cost the database and the worker several times more CPU than the same writes made
together, and on a machine whose cores are busy hashing passwords that CPU is the batch's time. A
writer thread takes what arrived within `linger` seconds (at most `most` items) and hands it to
`write` as one group; the future `submit` returns is resolved once that group committed, so a caller
that waits for it never goes on before its write is durable, and one that need not wait goes on at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """`submit(item)` from any thread: `write(items)` runs in the writer thread for a group of items and
    returns one result per item (in order); the future `submit` returns holds the item's result, or the
    group's error.
    """

    def __init__(
        self, write: Callable[[list[T]], list[R]], *, linger: float, most: int, name: str = "credbot-writes"
    ) -> None:
        self._write = write
        self.linger = linger
        self.most = most
        self._items: list[tuple[T, Future[R]]] = []
        self._first_at = 0.0
        self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        """Write `item` with the others of its group; its result once the group committed."""
        done: Future[R] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the writer is closed")
            if not self._items:
                self._first_at = time.monotonic()
            self._items.append((item, done))
            # Wake the writer for a first item or a full group only: while it lingers, every other
            # wake-up would cost a thread switch per item for nothing.
            if len(self._items) == 1 or len(self._items) >= self.most:
                self._ready.notify()
        return done

    def close(self) -> None:
        """Write what is left, then stop the writer thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._items and not self._closed:
                    self._ready.wait()
                if not self._items:
                    return
                while len(self._items) < self.most and not self._closed:
                    left = self._first_at + self.linger - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                group, self._items = self._items[: self.most], self._items[self.most :]
                self._first_at = time.monotonic()
            self._commit(group)

    def _commit(self, group: list[tuple[T, Future[R]]]) -> None:
        try:
            results = self._write([item for item, _ in group])
        except Exception as error:  # every caller of the group raises it
            for _, done in group:
                done.set_exception(error)
            return
        for (_, done), result in zip(group, results, strict=True):
            done.set_result(result)
