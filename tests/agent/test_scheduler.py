# The cooperative scheduler on an injected clock: fixed-grid deadlines (no
# drift), measured lag, isolated failing tasks, skipped periods, deinit.
from devtest import MICROPYTHON, raises
from edgestream_agent.scheduler import Scheduler, ticks_add, ticks_diff


class FakeTime:
    # ms clock in the ticks domain; sleep() advances it; `cost` ms per task run
    def __init__(self, start=0):
        self.base = start
        self.ms = 0

    def now(self):
        return ticks_add(self.base, self.ms)

    def sleep(self, ms):
        self.ms += ms


def make(start=0):
    ft = FakeTime(start)
    return ft, Scheduler(clock=ft.now, sleep_ms=ft.sleep)


def test_periodic_tasks_run_on_a_fixed_grid():
    ft, s = make()
    runs = {"a": [], "b": []}
    s.every(100, lambda: runs["a"].append(ft.ms), "a")
    s.every(250, lambda: runs["b"].append(ft.ms), "b")
    s.run(1000)
    assert runs["a"] == [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000][:len(runs["a"])]
    assert len(runs["a"]) >= 9 and runs["b"][:3] == [250, 500, 750]
    assert s.lag_max_ms == 0 and s.errors == 0 and s.ticks == len(runs["a"]) + len(runs["b"])


def test_slow_task_does_not_make_the_others_drift():
    ft, s = make()
    seen = []

    def slow():
        ft.ms += 30  # a task that takes 30 ms

    s.every(100, slow)
    s.every(100, lambda: seen.append(ft.ms))
    for _ in range(50):
        ft.sleep(s.step())
        if len(seen) >= 5:
            break
    # the second task runs 30 ms late each time, yet stays on the 100 ms grid
    assert seen[:5] == [130, 230, 330, 430, 530]
    assert s.lag_max_ms == 30 and s.lag_mean_ms == 15


def test_a_task_late_by_more_than_a_period_skips_and_stays_on_grid():
    ft, s = make()
    seen = []
    s.every(100, lambda: seen.append(ft.ms))
    ft.sleep(100)
    s.step()
    ft.sleep(350)  # the loop was blocked: due at 200, runs at 450
    s.step()
    assert seen == [100, 450]
    assert s.missed == 2  # 300 and 400 were skipped; next deadline 500
    assert s.step() == 50


def test_a_task_that_raises_is_counted_and_the_others_keep_running():
    ft, s = make()
    good = []

    def bad():
        raise OSError("i2c bus stuck")

    tb = s.every(100, bad, "bad")
    s.every(100, lambda: good.append(1), "good")
    s.run(500)
    assert len(good) == 5 and s.errors == 5 and tb.errors == 5
    assert isinstance(s.last_error, OSError)


def test_cancel_and_deinit_stop_tasks():
    ft, s = make()
    n = []
    t = s.every(10, lambda: n.append(1))
    s.run(50)
    s.cancel(t)
    s.run(50)
    assert len(n) == 5
    s.every(10, lambda: n.append(2))
    s.deinit()
    s.run(50)
    assert len(n) == 5 and s.tasks == []


def test_stop_from_a_task_ends_run_forever():
    ft, s = make()
    n = []

    def count():
        n.append(1)
        if len(n) == 3:
            s.stop()

    s.every(20, count)
    s.run()  # no duration: runs until stop()
    assert len(n) == 3 and ft.ms == 60


def test_bad_period_is_refused():
    ft, s = make()
    assert "period_ms" in str(raises(ValueError, s.every, 0, lambda: None))


def test_deadlines_survive_the_ticks_wrap():
    if not MICROPYTHON:
        return  # CPython ticks here are plain integers that never wrap
    ft, s = make(ticks_add(0, -250))  # 250 ms before ticks_ms wraps to 0
    seen = []
    s.every(100, lambda: seen.append(ft.ms))
    s.run(600)
    assert seen == [100, 200, 300, 400, 500, 600][:len(seen)] and len(seen) >= 5
    assert ticks_diff(ft.now(), ft.base) == ft.ms and s.lag_max_ms == 0


def test_stepping_allocates_nothing():
    from devtest import heap_locked
    ft, s = make()
    box = [0]

    def task():
        box[0] += 1

    s.every(1, task)
    s.every(3, task)

    def one():
        ft.ms += 1
        s.step()

    heap_locked(one, 2000)
    assert box[0] >= 2000
