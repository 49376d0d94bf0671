"""backends/deadline.py: asyncio.timeout_at's semantics at a tick's precision, with no timer per scope."""

from __future__ import annotations

import asyncio

import pytest

from mlxgw.backends import deadline
from mlxgw.backends.deadline import TICK, deadline_at


@pytest.mark.parametrize("given_loop", [False, True], ids=["loop-found", "loop-given"])
async def test_a_passed_deadline_raises_timeout_long_before_the_wait_would_end(given_loop):
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        with deadline_at(start + 0.1, loop if given_loop else None) as scope:
            await asyncio.sleep(10)
    assert scope.expired()
    waited = loop.time() - start
    assert 0.1 <= waited < 5  # fired (late by up to a tick), long before the sleep's 10 s


async def test_a_scope_left_in_time_leaves_nothing_armed_and_the_tick_stops():
    loop = asyncio.get_running_loop()
    for _ in range(100):
        with deadline_at(loop.time() + 30) as scope:
            await asyncio.sleep(0)
        assert not scope.expired()
    watch = deadline._watches[loop]
    assert watch.scopes == {}
    await asyncio.sleep(TICK * 3)
    assert watch.ticking is False  # an idle loop keeps no timer


async def test_reschedule_moves_the_deadline_both_ways():
    loop = asyncio.get_running_loop()
    with deadline_at(loop.time() + 0.05) as scope:
        scope.reschedule(loop.time() + 30)
        await asyncio.sleep(0.3)  # past the first deadline: nothing fires
    assert not scope.expired()
    with pytest.raises(TimeoutError):
        with deadline_at(loop.time() + 30) as scope:
            scope.reschedule(loop.time() + 0.05)
            await asyncio.sleep(10)


async def test_a_cancel_from_outside_stays_a_cancel():
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    async def body():
        with deadline_at(loop.time() + 30):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_code_after_the_scope_is_not_cancelled():
    loop = asyncio.get_running_loop()
    try:
        with deadline_at(loop.time() + 0.05):
            await asyncio.sleep(10)
    except TimeoutError:
        pass
    await asyncio.sleep(TICK * 3)  # the task carries no leftover cancellation
    assert asyncio.current_task().cancelling() == 0


async def test_many_scopes_expire_independently():
    loop = asyncio.get_running_loop()

    async def wait(after: float, sleep: float) -> str:
        try:
            with deadline_at(loop.time() + after):
                await asyncio.sleep(sleep)
            return "done"
        except TimeoutError:
            return "timeout"

    got = await asyncio.gather(*(wait(0.1, 5) if i % 2 else wait(30, 0.01) for i in range(20)))
    assert got == ["done" if i % 2 == 0 else "timeout" for i in range(20)]
