# A tiny cooperative scheduler for periodic tasks, leaner than asyncio for
# the agent's fixed set of sampling tasks: no coroutine frames, no queues,
# one list walked per step, nothing allocated per run.
#
#   s = Scheduler()
#   s.every(1000, read_temp, "temp")
#   s.run()                  # forever; run(5000) for 5 s; step() for one pass
#
# Deadlines move on a fixed grid, next = previous + period (time.ticks_add,
# wrap-safe), so periods do not drift. A task that is late by more than a
# whole period skips the missed runs (counted in `missed`) and stays on its
# grid. Lag = how late a task ran after its deadline: lag_max_ms, lag_sum_ms,
# lag_count (lag_mean_ms). A task that raises is counted (`errors`, the
# task's own `errors`, `last_error`, and on_error(task, exc) if set) and the
# others keep running.
#
# The clock is injectable: Scheduler(clock=f, sleep_ms=g) with f() -> ms in
# the ticks_ms domain; tests and replay drive time themselves. With
# watchdog_ms > 0 a hardware watchdog (machine.WDT) is started and fed every
# step, where the port has one.

import time

from edgestream_agent.timebase import ticks_add, ticks_diff, ticks_ms


class Task:
    # Handle returned by Scheduler.every().
    def __init__(self, period_ms, fn, name, deadline):
        self.period_ms = period_ms
        self.fn = fn
        self.name = name
        self.deadline = deadline
        self.runs = 0
        self.errors = 0
        self.missed = 0
        self.active = True

    def cancel(self):
        self.active = False


class Scheduler:
    def __init__(self, clock=None, sleep_ms=None, watchdog_ms=0, max_sleep_ms=1000):
        self.clock = clock or ticks_ms
        # time.sleep_ms where the port has it (CPython: time.sleep)
        self.sleep_ms = sleep_ms or getattr(time, "sleep_ms", None) or (lambda ms: time.sleep(ms / 1000))
        self.max_sleep_ms = max_sleep_ms
        self.tasks = []
        self.ticks = 0        # task runs
        self.errors = 0       # task runs that raised
        self.missed = 0       # periods skipped because a task was late by > period
        self.lag_max_ms = 0
        self.lag_sum_ms = 0
        self.lag_count = 0
        self.last_error = None
        self.on_error = None  # on_error(task, exc): told of each task that raised
        self._running = False
        self.wdt = None
        if watchdog_ms:
            try:
                from machine import WDT
                self.wdt = WDT(timeout=watchdog_ms)
            except (ImportError, AttributeError):
                self.wdt = None  # the unix port has no watchdog

    @property
    def lag_mean_ms(self):
        return self.lag_sum_ms // self.lag_count if self.lag_count else 0

    def every(self, period_ms, fn, name=None):
        # Run fn() every period_ms, first after one period. -> Task handle.
        if not isinstance(period_ms, int) or period_ms <= 0:
            raise ValueError("period_ms: must be an integer > 0")
        t = Task(period_ms, fn, name, ticks_add(self.clock(), period_ms))
        self.tasks.append(t)
        return t

    def cancel(self, task):
        task.active = False
        if task in self.tasks:
            self.tasks.remove(task)

    def step(self):
        # Run every task that is due, once. -> ms until the next deadline.
        if self.wdt is not None:
            self.wdt.feed()
        now = self.clock()
        wait = self.max_sleep_ms
        for task in self.tasks:
            if not task.active:
                continue
            late = ticks_diff(now, task.deadline)
            if late >= 0:
                if late > self.lag_max_ms:
                    self.lag_max_ms = late
                self.lag_sum_ms += late
                self.lag_count += 1
                self.ticks += 1
                task.runs += 1
                try:
                    task.fn()
                except Exception as e:  # isolate the task, keep the others
                    self.errors += 1
                    task.errors += 1
                    self.last_error = e
                    if self.on_error is not None:
                        self.on_error(task, e)
                p = task.period_ms
                d = ticks_add(task.deadline, p)
                if late >= p:
                    skip = late // p  # whole periods missed: stay on the grid
                    task.missed += skip
                    self.missed += skip
                    d = ticks_add(d, skip * p)
                task.deadline = d
                now = self.clock()
            w = ticks_diff(task.deadline, now)
            if w < wait:
                wait = w
        return wait if wait > 0 else 0

    def _next_wait(self, start, duration_ms):
        # One step of a loop started at `start`; ms to sleep, or -1 to end
        # (stopped, or duration_ms is over). Shared by run and run_async.
        wait = self.step()
        if not self._running:
            return -1
        if duration_ms is not None:
            left = duration_ms - ticks_diff(self.clock(), start)
            if left <= 0:
                return -1
            if wait > left:
                wait = left
        return wait

    def run(self, duration_ms=None):
        # Cooperative loop: step, then sleep until the next deadline.
        # duration_ms=None runs until stop() (or deinit()).
        self._running = True
        start = self.clock()
        while self._running:
            wait = self._next_wait(start, duration_ms)
            if wait < 0:
                break
            if wait > 0:
                self.sleep_ms(wait)
        self._running = False

    def run_async(self, duration_ms=None):
        # The same loop as a coroutine, for agents that also run asyncio
        # tasks: sleeps with asyncio.sleep_ms. In aio.py, imported only by
        # the boards that use it. -> a coroutine.
        from edgestream_agent.aio import run_async
        return run_async(self, duration_ms)

    def stop(self):
        self._running = False

    def deinit(self):
        # Stop the loop and drop every task (their objects stay usable).
        self._running = False
        for t in self.tasks:
            t.active = False
        self.tasks = []
