# Replay recorded samples through the real agent pipeline (filters and
# windows), on a board, the unix port or CPython:
#
#   micropython -m edgestream_agent.replay agent.json samples.jsonl   ("-" = stdin)
#
# Input: one JSON object per line, {"t": <ms>, "sensor": "<name>", "value": <number>}
# (other keys are ignored, blank lines skipped). Output, on stdout: one JSON
# object per window result, keys sensor, window, start, end, then one per
# configured aggregate. At the end of the input, open time windows are
# flushed. A bad line prints "line N: <what is wrong>" on stderr, is counted
# and skipped; the rest is still processed. The last stderr line is a summary.
#
# The input is read line by line, never all at once. Numbers are written
# by fmt() with integer arithmetic, so MicroPython and CPython print the
# same bytes for the same results.

import json
import struct
import sys

_SIG = 15  # significant digits of a float result


def fmt(x):
    # A number as JSON text: ints exactly; floats to 15 significant digits,
    # correctly rounded (half to even) from the exact binary value.
    if isinstance(x, bool) or x is None:
        return "null" if x is None else ("true" if x else "false")
    if isinstance(x, int):
        return str(x)
    if x != x or x in (float("inf"), float("-inf")):
        return "null"
    if x == 0:
        return "0.0"
    bits = struct.unpack("<Q", struct.pack("<d", x))[0]
    neg = bits >> 63
    e = (bits >> 52) & 0x7FF
    m = bits & 0xFFFFFFFFFFFFF
    if e:
        m |= 1 << 52
    else:
        e = 1
    e -= 1075  # |x| = m * 2**e
    if e >= 0:
        num, den = m << e, 1
    else:
        num, den = m, 1 << -e
    # decimal exponent k: 10**k <= |x| < 10**(k+1)
    k = len(str(num // den)) - 1 if num >= den else -len(str(den // num))
    while True:
        shift = _SIG - 1 - k
        if shift >= 0:
            q, r = divmod(num * 10 ** shift, den)
            d2 = den
        else:
            q, r = divmod(num, den * 10 ** -shift)
            d2 = den * 10 ** -shift
        if 2 * r > d2 or (2 * r == d2 and q & 1):
            q += 1
        if q < 10 ** (_SIG - 1):
            k -= 1
            continue
        if q >= 10 ** _SIG:
            k += 1
            continue
        break
    digits = str(q).rstrip("0") or "0"
    # value = 0.digits * 10**(k+1)
    if -7 <= k < 16:
        if k >= 0:
            ip = digits[:k + 1]
            ip += "0" * (k + 1 - len(ip))
            fp = digits[k + 1:] or "0"
        else:
            ip = "0"
            fp = "0" * (-k - 1) + digits
        s = ip + "." + fp
    else:
        s = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + "e" + ("-" if k < 0 else "+") + \
            ("%02d" % abs(k))
    return "-" + s if neg else s


def write_result(w, sensor, window, start, end, names, values):
    # One result as a JSON line, written piece by piece with w(str): no list
    # of parts and no joined copy, which a fragmented small heap may not
    # find room for.
    w('{"sensor": "')
    w(sensor)
    w('", "window": "')
    w(window)
    w('", "start": ')
    w(fmt(start))
    w(', "end": ')
    w(fmt(end))
    for i in range(len(names)):
        n = names[i]
        w(', "')
        w(n.decode() if isinstance(n, bytes) else n)
        w('": ')
        w(fmt(values[i]))
    w("}\n")


def _is_num(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)


class Replay:
    # The sensors' Pipelines (the per-sensor object the Agent builds and
    # samples into; in elastic mode, so sliding time windows grow instead of
    # overwriting) fed from the input's lines. The Agent class itself (its
    # scheduler tasks, sources and remote config) is not needed here, so its
    # code stays off the heap.
    def __init__(self, config, out, err, validated=False):
        # config: dict (validated here unless validated=True); out/err:
        # objects with write(str)
        self.out = out
        self.err = err
        self.lines = 0
        self.samples = 0
        self.bad = 0
        self.results = 0
        if not validated:
            from edgestream_agent.config import validate
            config = validate(config)
        from edgestream_agent.pipeline import Pipeline  # after main() unloaded the validator
        self.sensors = [Pipeline(s, self._result, True) for s in config["sensors"]]
        self.pipelines = {}
        for p in self.sensors:
            self.pipelines[p.name] = p

    def _result(self, pipe, window, start, end):
        self.results += 1
        a = window.agg
        write_result(self.out.write, pipe.name, window.name, start, end, a.names, a.values())

    def _bad(self, n, msg):
        self.bad += 1
        self.err.write("line %d: %s\n" % (n, msg))

    def line(self, n, text):
        # One input line (str or bytes), numbered n from 1.
        self.lines = n
        if isinstance(text, bytes):
            try:
                text = text.decode()
            except UnicodeError:
                self._bad(n, "not UTF-8 text")
                return
        text = text.strip()
        if not text:
            return
        try:
            rec = json.loads(text)
        except ValueError:
            self._bad(n, "not valid JSON")
            return
        if not isinstance(rec, dict):
            self._bad(n, "expected a JSON object {\"t\", \"sensor\", \"value\"}")
            return
        for key in ("t", "sensor", "value"):
            if key not in rec:
                self._bad(n, "missing key %r" % key)
                return
        t = rec["t"]
        if isinstance(t, float) and t == t and t not in (float("inf"), float("-inf")) and t == int(t):
            t = int(t)
        if not isinstance(t, int) or isinstance(t, bool):
            self._bad(n, "t: expected an integer number of ms, got %s" % _short(rec["t"]))
            return
        sensor = rec["sensor"]
        if not isinstance(sensor, str):
            self._bad(n, "sensor: expected a string, got %s" % _short(sensor))
            return
        pipe = self.pipelines.get(sensor)
        if pipe is None:
            self._bad(n, "sensor: %s is not in the config (sensors: %s)"
                      % (_short(sensor), ", ".join(p.name for p in self.sensors)))
            return
        value = rec["value"]
        if not _is_num(value) or value != value or value in (float("inf"), float("-inf")):
            self._bad(n, "value: expected a finite number, got %s" % _short(value))
            return
        try:
            ok = pipe.feed(t, value)
        except ValueError as e:
            self._bad(n, "value: %s" % e)
            return
        if not ok:
            self._bad(n, "t: %d is before the previous sample of %r (t=%d); samples of a sensor must be in "
                      "time order" % (t, sensor, pipe.last_t))
            return
        self.samples += 1

    def finish(self):
        for p in self.sensors:
            p.flush()
        for p in self.sensors:
            name = p.name
            for w in p.windows:
                if getattr(w, "grown", 0):
                    self.err.write("note: %s.%s needed %d samples of ring capacity (capacity in the config: %d); "
                                   "a board would overwrite the oldest\n" % (name, w.name, w.grown,
                                                                            _cap(p, w)))
        self.err.write("replay: %d lines, %d samples, %d results, %d bad lines\n"
                       % (self.lines, self.samples, self.results, self.bad))

    def run(self, f):
        # Stream a file object line by line.
        n = 0
        while True:
            text = f.readline()
            if not text:
                break
            n += 1
            self.line(n, text)
        self.finish()


def _cap(p, w):
    return getattr(w, "capacity", 0)


def _short(v):
    s = json.dumps(v)
    return s if len(s) <= 40 else s[:37] + "..."


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: replay <agent.json> <samples.jsonl | ->\n")
        return 2
    from edgestream_agent import unload
    # Heap held at the bottom while the validator loads and unloads (which
    # leaves small holes between the blocks of the config), freed for the
    # pipelines, so they and the interned names find room in one piece.
    hold = bytearray(12288)
    from edgestream_agent.config import ConfigError, load
    try:
        cfg = load(argv[0])
    except ConfigError as e:
        sys.stderr.write("config %s\n" % e if str(e).startswith(argv[0]) else "%s: %s\n" % (argv[0], e))
        return 2
    del load, ConfigError
    unload("config")  # validators are not needed any more: heap for the windows
    hold = None
    r = Replay(cfg, sys.stdout, sys.stderr, validated=True)
    cfg = None  # built: the pipelines do not need the config any more
    if argv[1] == "-":
        r.run(sys.stdin)
    else:
        try:
            f = open(argv[1])
        except OSError as e:
            sys.stderr.write("%s: cannot open: %s\n" % (argv[1], e))
            return 2
        try:
            r.run(f)
        finally:
            f.close()
    r = None
    import gc
    gc.collect()
    try:
        sys.stderr.write("replay: heap used %d, free %d bytes\n" % (gc.mem_alloc(), gc.mem_free()))
    except AttributeError:  # CPython
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
