# Sensor filters, in the spirit of ESPHome's: a per-sensor chain configured
# as a list. Each filter has push(t_ms, v) -> value or None (dropped), on
# fixed-point ints (see fixed.py), and allocates nothing per call.
#
#   range{min,max}          drop values outside [min, max] (either bound optional)
#   clamp{min,max}          clip into [min, max]
#   calibrate{slope,offset} v*slope + offset (slope kept as an exact decimal fraction)
#   delta{min}              pass v only if |v - last passed| >= min; the first passes
#   throttle{interval_ms}   the first passes; the next once t - last pass >= interval
#   median{size}            median of the last `size` values seen (fewer at the
#                           start); an even count gives the mean of the middle two
#   ema{alpha}              y = alpha*v + (1-alpha)*y_prev, the first y = v
#                           (y is kept with 10 extra bits of precision)
#   round{digits}           round half to even to `digits` decimals
#   heartbeat{interval_ms}  values pass; when nothing passed for interval_ms,
#                           the last value is sent again (the pipeline asks
#                           due(t) before each sample and calls beat())
#
# Results that are not exact at the sensor's `decimals` are rounded half to
# even to it. One module per filter, imported only when a chain uses it, so a
# board's heap holds the code of the filters its config names and no other.

# Each type is the module of the same name; its class is also exported as
# FILTER, so building a chain needs no table here.


def build(specs, factor):
    # Validated filter specs (config.py) -> list of filter objects.
    from edgestream_agent import need
    out = []
    for s in specs:
        out.append(need("filters." + s["type"], "FILTER")(s, factor))
    return out
