"""When a test phase runs far longer than any should, print every asyncio task's stack on the
tests' event loop. pytest-timeout (thread method) dumps the threads' stacks only, and a hang
awaited on the loop shows there as a thread idle in select(): this says what it awaits."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable

# Well before pytest-timeout's 600 s, so the report is printed before the run is ended.
REPORT_AFTER_S = 420.0


def _print_tasks(loop: asyncio.AbstractEventLoop, what: str) -> None:
    out = sys.__stderr__ or sys.stderr
    print(f"\n~~~ {what}: still running after {REPORT_AFTER_S:.0f}s; asyncio tasks: ~~~", file=out)
    for task in asyncio.all_tasks(loop):
        print(f"--- {task!r}", file=out)
        task.print_stack(limit=30, file=out)
    out.flush()


def watch(loop: asyncio.AbstractEventLoop | None, what: str) -> Callable[[], None]:
    """Arm the report for one phase; call the result when the phase ends."""
    if loop is None or loop.is_closed():
        return lambda: None

    def report() -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(_print_tasks, loop, what)

    timer = threading.Timer(REPORT_AFTER_S, report)
    timer.daemon = True
    timer.start()
    return timer.cancel
