# raw reading -> fixed-point value, for the hardware sources: scale and
# offset become integers once (linear), so read() needs no float (apply).


def linear(scale, offset, factor):
    # raw -> raw*scale + offset in fixed point, as integers (num, den, off)
    # so that read() needs no float: value = raw * num // den + off.
    from edgestream_agent.fixed import fraction, to_fixed
    num, den = fraction(scale)
    return num * factor, den, to_fixed(offset, factor)


def apply(raw, num, den, off):
    if den == 1:
        return raw * num + off
    q = raw * num
    # round half away from zero without divmod's tuple
    if q >= 0:
        return (q + den // 2) // den + off
    return -((-q + den // 2) // den) + off
