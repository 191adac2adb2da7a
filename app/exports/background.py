"""Small thread helpers that let an export use both the database and a second core.

``read_ahead`` runs a generator a few steps ahead of its consumer; ``ordered_map`` reads
several batches at once and hands them over in order, so the database makes the next
batches while this one is written; ``Worker`` takes hashing, compression and file writes
(which release the GIL) off the thread that makes the rows. All keep memory bounded (a few
items at a time) and hand an error in a thread back to the caller.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_DONE = object()
_POLL_S = 0.1


def read_ahead(source: Iterable[T], *, depth: int = 1, name: str = "read-ahead") -> Iterator[T]:
    """The items of ``source``, made by a thread at most ``depth`` items ahead."""
    items: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(source)
        try:
            for item in it:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer, raised there)
            put((_DONE, exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # a generator's own cleanup (its session) runs in its thread

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int = 2,
                name: str = "ordered-map") -> Iterator[R]:
    """``fn`` of each item, in the items' order, worked out by ``workers`` threads at once:
    while the caller has one result, at most ``workers`` more are made (or wait, made)."""
    pending: deque[Future] = deque()
    it = iter(items)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)  # those already running finish (their sessions close)
        close = getattr(it, "close", None)
        if close is not None:
            close()


class Worker:
    """Runs ``fn`` on each submitted item, in order, in one thread; at most ``depth`` items
    are submitted and not yet done (``submit`` waits), which bounds the memory they hold.

    After ``fn`` fails the rest is skipped, and the error is raised by the next ``submit``
    or by ``close``.
    """

    def __init__(self, fn: Callable[[Any], None], *, depth: int = 4,
                 name: str = "export-worker") -> None:
        self._fn = fn
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._room = threading.Semaphore(depth)
        self._error: BaseException | None = None
        # started by the first item, so that a writer that gets none leaves no thread behind
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while (item := self._items.get()) is not _DONE:
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001  (raised in the caller's thread)
                    self._error = exc
            del item  # let it go before waiting for the next one
            self._room.release()

    def submit(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._room.acquire()
        self._items.put(item)
        if self._thread.ident is None:
            self._thread.start()

    def close(self) -> None:
        """Wait for everything submitted; raise the error ``fn`` met, if any."""
        if self._thread.is_alive():
            self._items.put(_DONE)
            self._thread.join()
        if self._error is not None:
            raise self._error
