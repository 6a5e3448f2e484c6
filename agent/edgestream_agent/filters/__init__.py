# Sensor filters, in the spirit of ESPHome's: a per-sensor chain configured
# as a list. Each filter is an object holding its parameters (converted to
# fixed-point ints, see fixed.py) and its state; the code that runs it on
# values is chain.run (one call for a whole chain and a whole block of
# values, allocating nothing).
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
# even to it. One module per filter (its parameters and state), imported
# only when a chain uses it; the per-sample code of all of them is one
# function in chain.py, loaded with the first sensor that has filters.

# Each type is the module of the same name; its class is also exported as
# FILTER, so building a chain needs no table here. Each object gets its
# `kind`, the branch of chain.run that runs it (its type's place in KINDS).


def build(specs, factor):
    # Validated filter specs (config.py) -> list of filter objects.
    from edgestream_agent import need
    from edgestream_agent.chain import KINDS
    out = []
    for s in specs:
        f = need("filters." + s["type"], "FILTER")(s, factor)
        f.kind = KINDS.index(s["type"])
        out.append(f)
    return out
