"""A function's cold start: its modules imported without the cycle collector, then kept out of its way.

Importing boto3, pydantic, httpx, Powertools and the relay makes a few hundred thousand objects that live as
long as the container; meanwhile Python's cycle collector runs again and again, each full pass scanning them
all for garbage they are not: some 5% of a function's import. `loading()` pauses the collector while the
imports it wraps run, then moves what they made to the permanent generation (`gc.freeze`,
https://docs.python.org/3/library/gc.html#gc.freeze), so that no later collection, in any invocation, scans
it again. Objects are still freed as soon as nothing refers to them; only reference cycles made during the
imports stay (a module's, which stay anyway). The freeze happens once per process: a test process that loads
every function's module freezes what it held at the first.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_frozen = False


@contextmanager
def loading() -> Iterator[None]:
    """Wrap a function module's imports: the collector paused during them (resumed however they end), and
    what they made frozen after them (once per process)."""
    global _frozen  # noqa: PLW0603 - once per process, whichever function module is loaded first
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
    if not _frozen:
        _frozen = True
        gc.freeze()
