# Sources: the simulated one is deterministic and integer-only; hardware
# sources refuse to start, with a clear error, where the port lacks them.
from devtest import raises
from edgestream_agent.config import validate
from edgestream_agent.sources import make


def source(**kw):
    kw.setdefault("type", "sim")
    return validate({"sensors": [{"name": "s", "source": kw}]})["sensors"][0]["source"]


def test_sine_follows_the_table():
    s = make(source(wave="sine", amplitude=10, offset=20, wave_ms=1000), 1000)
    vals = [s.read(t) for t in (0, 250, 500, 750, 1000, 125)]
    assert vals[:5] == [20000, 30000, 20000, 10000, 20000]
    assert 27000 < vals[5] < 27100  # 20 + 10*sin(pi/4) = 27.07, linear between table points


def test_steps_and_constant():
    s = make(source(wave="steps", amplitude=2, offset=1, wave_ms=100, levels=3), 10)
    assert [s.read(t) for t in (0, 99, 100, 250, 300)] == [10, 10, 30, 50, 10]
    c = make(source(wave="constant", offset=-3.25), 100)
    assert c.read(123) == -325


def test_noise_is_deterministic_for_a_seed_and_bounded():
    a = make(source(wave="noise", noise=0.5, seed=42), 1000)
    b = make(source(wave="noise", noise=0.5, seed=42), 1000)
    c = make(source(wave="noise", noise=0.5, seed=7), 1000)
    va = [a.read(t) for t in range(200)]
    assert va == [b.read(t) for t in range(200)]
    assert va != [c.read(t) for t in range(200)]
    assert all(-500 <= v <= 500 for v in va) and len(set(va)) > 50


def test_hardware_sources_say_what_is_missing():
    for cfg in (source(type="adc", pin=34), source(type="pin", pin=4), source(type="i2c", addr=0x48, reg=0),
                source(type="internal_temp")):
        e = raises(OSError, make, cfg, 1000)
        assert cfg["type"] in str(e), str(e)


def test_linear_scaling_is_integer():
    from edgestream_agent.sources.scale import apply, linear
    num, den, off = linear(0.0625, -40, 100)  # e.g. a 12-bit temperature register
    assert [apply(raw, num, den, off) for raw in (0, 16, 1000, -16)] == [-4000, -3900, 2250, -4100]
