# round{digits}: round half to even to `digits` decimals (a no-op when the
# sensor's own decimals are not more than digits).


class Round:
    def __init__(self, p, f):
        d = 0
        while 10 ** d < f:
            d += 1
        # one step of the sensor's fixed point below the wanted digits
        self.q = 10 ** (d - p["digits"]) if p["digits"] < d else 1


FILTER = Round
