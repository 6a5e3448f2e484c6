# Fixed-point helpers shared by sources, filters and windows.
#
# On ESP32, RP2040 and the unix port every float is a heap object, so the
# per-sample path works on integers: a sensor with `decimals: 3` carries the
# value 21.537 as the small int 21537 (units of 10**-decimals). Parameters
# given as floats in the config (slopes, alphas, offsets) are turned into
# integer fractions once, here, when the pipeline is built.
#
# Small ints are 31-bit on 32-bit boards (|x| < 2**30) and 63-bit on the
# 64-bit unix port. Arithmetic that overflows still gives the right answer
# (MicroPython promotes to a long int) but allocates; the bounds that keep
# each step small-int are written next to it.

MAX_DECIMALS = 6
# Values live in array('i') slots: |value * 10**decimals| must stay below 2**31.
# Both bounds are long ints on a 32-bit board (small ints end at 2**30): kept
# as module globals, so a comparison against them allocates nothing, where
# `-I32_MAX` would make a new long int on every call.
I32_MAX = 2147483647
I32_MIN = -I32_MAX


def to_fixed(value, factor):
    # A config or input number (int or float) -> fixed-point int.
    # Floats are rounded half-to-even, like Python's round().
    if isinstance(value, int):
        return value * factor
    return round(value * factor)


def fraction(x, max_digits=MAX_DECIMALS):
    # x (int or float) -> (num, den) with den a power of ten, exact for
    # numbers written with up to max_digits decimals (1.8 -> (18, 10)).
    if isinstance(x, int):
        return x, 1
    den = 1
    for _ in range(max_digits):
        n = x * den
        if abs(n - round(n)) < 1e-9 * max(1.0, abs(n)):
            return round(n), den
        den *= 10
    return round(x * den), den


def div_round(num, den):
    # round(num / den) for ints, half to even, den > 0; no floats involved.
    # (no divmod: its tuple would allocate on the per-sample path)
    q = num // den
    r2 = (num - q * den) * 2
    if r2 > den or (r2 == den and q & 1):
        q += 1
    return q


def ldiv(n, den):
    # n / den as a number: an int when it divides exactly, else a float
    # (the one float of a result, built when a window closes).
    if n % den == 0:
        return n // den
    return n / den
