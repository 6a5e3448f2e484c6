# Scheduler.run_async: the scheduler's loop as an asyncio coroutine, for
# agents that also run asyncio tasks. Kept apart from scheduler.py so that a
# board running the plain loop does not hold this code.


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
        wait = self._next_wait(start, duration_ms)
        if wait < 0:
            break
        if sleep is not None:
            await sleep(wait)
        else:
            await asyncio.sleep(wait / 1000)
    self._running = False
