# The Agent: building pipelines from config, sampling on the scheduler with
# an injected clock, flush, and apply() keeping unchanged sensors' state.
from edgestream_agent.config import ConfigError  # the biggest module: compile it first, on an empty heap
from devtest import raises
from edgestream_agent.agent import Agent
from edgestream_agent.scheduler import Scheduler


class FakeTime:
    def __init__(self):
        self.ms = 0

    def now(self):
        return self.ms

    def sleep(self, ms):
        self.ms += ms


def config(temp_window_ms=1000, hum_filters=()):
    return {"device": "d1", "sensors": [
        {"name": "temp", "period_ms": 100, "source": {"type": "sim", "wave": "constant", "offset": 21.5},
         "windows": [{"name": "w1s", "size_ms": temp_window_ms, "aggregates": ["count", "avg"]}]},
        {"name": "hum", "period_ms": 250, "source": {"type": "sim", "wave": "steps", "amplitude": 1, "wave_ms": 1000},
         "filters": list(hum_filters),
         "windows": [{"name": "c4", "size": 4, "aggregates": ["first", "last", "count"]}]},
    ]}


def test_sampling_on_the_scheduler_with_an_injected_clock():
    ft = FakeTime()
    got = []
    agent = Agent(config(), clock=ft.now, on_result=lambda *r: got.append(r))
    sched = Scheduler(clock=ft.now, sleep_ms=ft.sleep)
    agent.attach(sched)
    sched.run(3000)
    temp = [r for r in got if r[0] == "temp"]
    hum = [r for r in got if r[0] == "hum"]
    # temp samples at 100..3000: windows [0,1000) has 9 (100..900), then 10 each
    assert temp[0] == ("temp", "w1s", 0, 1000, (b"count", b"avg"), [9, 21.5])
    assert [r[5][0] for r in temp] == [9, 10, 10]  # [2000, 3000) closes at the sample at 3000
    # hum at 250, 500, ...: steps of 1 every 1000 ms -> 0,0,0,1 | 1,1,1,2 | 2,2,2,3
    assert [(r[2], r[3], r[5]) for r in hum] == [(250, 1000, [0, 1, 4]), (1250, 2000, [1, 2, 4]),
                                                 (2250, 3000, [2, 3, 4])]
    assert agent.samples == 30 + 12 and agent.results == len(got)
    agent.flush()
    assert got[-1][:4] == ("temp", "w1s", 3000, 4000) and got[-1][5] == [1, 21.5]
    agent.deinit()
    assert sched.tasks == []


def test_feed_and_flush_with_a_time():
    got = []
    agent = Agent(config(), on_result=lambda *r: got.append(r[:4]))
    for t in range(0, 2500, 500):
        agent.feed("temp", t, 20)
    assert got == [("temp", "w1s", 0, 1000), ("temp", "w1s", 1000, 2000)]
    agent.flush(2999)
    assert len(got) == 2
    agent.flush(3000)
    assert got[-1] == ("temp", "w1s", 2000, 3000)
    assert "nope" in str(raises(KeyError, agent.feed, "nope", 0, 1))
    assert agent.feed("temp", 10, 1) is False  # earlier than the previous sample: refused
    assert agent.pipeline("temp").late == 1


def test_apply_rebuilds_only_changed_sensors():
    got = []
    agent = Agent(config(), on_result=lambda *r: got.append(r))
    for t in (0, 250, 500):
        agent.feed("hum", t, 7)
        agent.feed("temp", t, 1)
    hum_before = agent.pipeline("hum")
    changed, removed = agent.apply(config(temp_window_ms=2000))
    assert changed == ["temp"] and removed == []
    assert agent.pipeline("hum") is hum_before and agent.discarded == 1  # temp's open window
    agent.feed("hum", 750, 7)  # the 4th sample: hum's window kept its first three
    assert got[-1][:4] == ("hum", "c4", 0, 750) and got[-1][5] == [7, 7, 4]
    agent.feed("temp", 600, 1)
    agent.flush()
    assert got[-1][:4] == ("temp", "w1s", 0, 2000) and got[-1][5] == [1, 1]


def test_apply_of_an_invalid_config_changes_nothing():
    agent = Agent(config())
    before = dict(agent.pipelines)
    bad = config()
    bad["sensors"][1]["windows"][0]["size"] = 0
    e = raises(ConfigError, agent.apply, bad)
    assert str(e) == "sensors[1].windows[0].size: must be > 0"
    assert agent.pipelines == before


def test_apply_on_a_running_agent_swaps_tasks():
    ft = FakeTime()
    agent = Agent(config(), clock=ft.now)
    sched = Scheduler(clock=ft.now, sleep_ms=ft.sleep)
    agent.attach(sched)
    sched.run(1000)
    new = config(hum_filters=[{"range": {"max": 1.5}}])
    del new["sensors"][0]
    changed, removed = agent.apply(new)
    assert changed == ["hum"] and removed == ["temp"]
    assert [t.name for t in sched.tasks] == ["hum"]
    sched.run(1000)
    hum = agent.pipeline("hum")
    # the new task samples at 1250..2000: steps give 1, 1, 1, then 2 (dropped)
    assert hum.samples == 4 and hum.dropped == 1
    sched.run(1000)
    assert hum.samples == 8 and hum.dropped == 5


def test_invalid_config_never_half_starts():
    bad = config()
    bad["sensors"][1]["period_ms"] = -1
    assert str(raises(ConfigError, Agent, bad)) == "sensors[1].period_ms: must be > 0"


def test_a_source_that_cannot_start_starts_nothing():
    cfg = config()
    cfg["sensors"][1]["source"] = {"type": "adc", "pin": 34}  # no machine.ADC here
    agent = Agent(cfg)
    sched = Scheduler()
    e = raises(OSError, agent.attach, sched)
    assert "adc" in str(e)
    assert sched.tasks == [] and agent.pipeline("temp").source is None
