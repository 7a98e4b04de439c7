"""Two (or more) real writers at once: each callable runs in a thread of its own, with its own
database connection (Django's connections are per thread), released together by a barrier so
their transactions overlap."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def at_once(*calls: Callable[[], Any], timeout: float = 60) -> list[Any]:
    """Run ``calls`` concurrently; return each one's result or the exception it raised, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            connection.ensure_connection()  # connected before the start line, not after it
            barrier.wait(timeout=timeout)
            results[index] = call()
        except BaseException as error:  # noqa: BLE001 - handed back to the test to judge
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a concurrent writer is stuck (a deadlock?)"
    return results
