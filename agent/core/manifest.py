# edgestream-agent part: the core. Scheduler, sensors and their sources,
# filters, windows, the validator, and the link's transport-independent half
# (offline buffer, wire messages, health, remote config, clock, WiFi, NTP).
# With it alone an agent samples and aggregates (transport "none", replay);
# the "mqtt" and "serial" parts add a link. A module added to the package
# goes into exactly one part's list (tests/firmware/test_manifests.py).
metadata(version="0.1.0", description="EdgeStream agent: scheduler, sensors, filters, windows.")

package(
    "edgestream_agent",
    files=(
        "__init__.py", "agent.py", "aggregate.py", "aio.py", "bench.py", "chain.py", "clock.py", "config.py",
        "fixed.py", "health.py", "link.py", "main.py", "ntp.py", "offline_buffer.py", "pipeline.py",
        "reconfig.py", "remote_config.py", "replay.py", "ring_window.py", "scheduler.py", "spill.py",
        "timebase.py", "tumbling_window.py", "wifi.py", "wire_in.py", "wire_out.py",
        "filters/__init__.py", "filters/calibrate.py", "filters/clamp.py", "filters/delta.py",
        "filters/ema.py", "filters/heartbeat.py", "filters/median.py", "filters/range.py",
        "filters/round.py", "filters/throttle.py",
        "sources/__init__.py", "sources/adc.py", "sources/digital_pin.py",
        "sources/i2c_register.py", "sources/internal_temp.py", "sources/scale.py", "sources/sim.py",
    ),
    base_path="..",
)
