# Scheduler.run_async: the scheduler's loop as an asyncio coroutine, for
# agents that also run asyncio tasks. Kept apart from scheduler.py so that a
# board running the plain loop does not hold this code.

from edgestream_agent.scheduler import ticks_diff


async def run_async(self, duration_ms=None):
    # self: the Scheduler; sleeps with asyncio.sleep_ms between steps.
    try:
        import asyncio
    except ImportError:
        import uasyncio as asyncio
    sleep = getattr(asyncio, "sleep_ms", None)
    self._running = True
    start = self.clock()
    while self._running:
        wait = self.step()
        if not self._running:
            break
        if duration_ms is not None:
            left = duration_ms - ticks_diff(self.clock(), start)
            if left <= 0:
                break
            if wait > left:
                wait = left
        if sleep is not None:
            await sleep(wait)
        else:
            await asyncio.sleep(wait / 1000)
    self._running = False
