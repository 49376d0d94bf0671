"""`deadline_at(when)`: `asyncio.timeout_at` for upstream reads, at the cost of a dict insert, not a timer.

Why: every upstream read runs under a deadline (first token, idle, total), so a stream arms one per chunk
it reads. `asyncio.timeout_at` arms an event-loop timer each time: about 3 us under uvloop for the timer
alone and 5 us a scope on this machine, paid per token on a token-by-token stream. These deadlines are
seconds long and need no more precision than a tick: one timer per event loop fires every `TICK` while
any scope is armed and cancels the tasks whose deadline has passed, so a deadline fires at most `TICK`
late. An idle gateway arms no timer at all.

Cancellation works as in `asyncio.timeout` (Python 3.11): the task is cancelled, and on leaving the scope
that CancelledError becomes TimeoutError, unless the task was also cancelled from outside (then the
CancelledError stands). It is a plain `with`, not `async with`: entering and leaving never wait, and an
async context manager makes two coroutines per scope.
"""

from __future__ import annotations

import asyncio
import weakref

TICK = 0.05  # seconds: how late a deadline may fire


class _Watch:
    """The armed scopes of one event loop, and the tick that expires them."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.scopes: dict[Deadline, None] = {}  # an insertion-ordered set
        self.ticking = False

    def start(self) -> None:
        """Tick from now on, while any scope is armed (a scope arms itself: `Deadline.__enter__`)."""
        self.ticking = True
        self.loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        for scope in [s for s in self.scopes if s.when <= now]:
            del self.scopes[scope]
            scope._expire()
        if self.scopes:
            self.loop.call_later(TICK, self._tick)
        else:
            self.ticking = False


_watches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> its _Watch
# The last one used: a weak-dict lookup per scope cost more than the rest of the scope. It keeps at most
# one loop alive after its end (tests run several loops; a server has one).
_last: _Watch | None = None


def _watch_of(loop: asyncio.AbstractEventLoop) -> _Watch:
    global _last
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = _Watch(loop)
    _last = watch
    return watch


class Deadline:
    """`deadline_at(when, loop=None)`: a scope that raises TimeoutError once the loop's clock passes `when`
    (up to TICK later); `loop`: the running loop, when the caller has it. `reschedule(when)` moves its
    deadline (a loop.time() value)."""

    __slots__ = ("when", "_loop", "_task", "_cancelling", "_expired", "_watch")

    def __init__(self, when: float, loop: asyncio.AbstractEventLoop | None = None):
        self.when = when
        self._loop = loop
        self._expired = False

    def reschedule(self, when: float) -> None:
        self.when = when

    def expired(self) -> bool:
        return self._expired

    def __enter__(self) -> Deadline:
        # Finding the running loop costs a getpid() system call in Python 3.11: a caller that has the
        # loop at hand passes it (a stream enters a scope per read).
        loop = self._loop or asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("deadline_at() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        watch = _last
        if watch is None or watch.loop is not loop:  # (a process has one loop, tests several)
            watch = _watch_of(loop)
        self._watch = watch
        watch.scopes[self] = None  # armed (written out here, not a method call: a stream arms one per read)
        if not watch.ticking:
            watch.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._expired:
            self._watch.scopes.pop(self, None)
            return None
        if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
        return None

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel()


deadline_at = Deadline  # the class itself, not a function making one: one call less per scope
