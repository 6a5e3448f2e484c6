# The agent: sensors -> filters -> windows, built from a validated agent.json.
#
#   agent = Agent(config, on_result=send)   # builds every pipeline, or raises
#   agent.attach(scheduler)                 # one sampling task per sensor
#   agent.feed("temp", t_ms, 21.5)          # or push samples yourself (replay)
#   agent.flush()                           # close open time windows
#
# on_result(sensor, window, start, end, names, values) is called once per
# closed window: sensor and window are names (str), names a tuple of
# aggregate names as bytes (ready for the wire encoder), values a new list of
# numbers in the sensor's units.
#
# The clock is injectable: clock() -> ms. The default counts milliseconds
# since start from time.ticks_ms (unwrapped, so windows survive the ticks
# wrap). A board keeps it a small int for 2**30 ms (12.4 days); after that
# timestamps are long ints and each sample allocates a little.

from edgestream_agent.pipeline import Pipeline


class Agent:
    def __init__(self, config, clock=None, on_result=None, elastic=False, validated=False):
        # elastic=True lets sliding time windows grow instead of overwriting
        # (replay on a host, where exact results matter more than memory).
        # validated=True: config is already config.validate()'s output (a
        # board validates, then unloads the validator before building).
        if not validated:
            from edgestream_agent.config import validate
            config = validate(config)
            del validate
        if clock is None:
            from edgestream_agent.clock import Uptime
            clock = Uptime().now
        self.clock = clock
        self.on_result = on_result
        self.elastic = elastic
        self.device = config["device"]
        # what the imports and the config left behind goes before the rings
        # are placed (a 64 KB heap has no room to spare for holes)
        import gc
        gc.collect()
        self.results = 0
        self.scheduler = None
        self.tasks = {}
        self.discarded = 0  # window results dropped by apply() (open windows of changed sensors)
        self.samples_gone = 0  # samples of pipelines apply() replaced or removed (samples stays monotonic)
        # The config itself is not kept (see pipeline.py: each sensor keeps a
        # digest). With validated=True the caller's config is consumed: each
        # entry of its "sensors" list is released (None) once its pipeline is
        # built, so a small heap holds one sensor's config at a time.
        sensors = config["sensors"]
        names = [s["name"] for s in sensors]
        self.pipelines = self._build(sensors, None if validated else {})
        # the same pipelines in config order (dict order differs between ports)
        self.sensors = [self.pipelines[n] for n in names]

    def _build(self, sensors, keep):
        # -> {name: Pipeline}; pipelines in `keep` whose config is unchanged
        # are reused with their window state. Builds everything before it
        # returns, so a failure leaves the running agent untouched.
        # keep=None: a first build that releases each sensors[i] once built.
        # MemoryError says which sensor did not fit: "sensors[2] (x)".
        from edgestream_agent.pipeline import digest
        out = {}
        for i in range(len(sensors)):
            s = sensors[i]
            old = keep.get(s["name"]) if keep is not None else None
            if old is None or old.digest != digest(s):
                try:
                    old = Pipeline(s, self._result, self.elastic)
                except MemoryError:
                    out = old = None  # (what was built so far is garbage now)
                    raise MemoryError("sensors[%d] (%s)" % (i, s["name"]))
            out[s["name"]] = old
            if keep is None:
                s = sensors[i] = None
                import gc
                gc.collect()
        return out

    @property
    def samples(self):
        # samples taken since start, by every pipeline this agent ran
        n = self.samples_gone
        for p in self.sensors:
            n += p.samples
        return n

    def pipeline(self, name):
        p = self.pipelines.get(name)
        if p is None:
            raise KeyError("unknown sensor %r" % (name,))
        return p

    def _result(self, pipe, window, start, end):
        self.results += 1
        if self.on_result is not None:
            self.on_result(pipe.name, window.name, start, end, window.agg.names, window.agg.values())

    # -- input ---------------------------------------------------------------
    def feed(self, sensor, t_ms, value):
        # One sample of a sensor (value in its units) through its filters and
        # windows. -> False if refused as late (t before the previous one).
        return self.pipeline(sensor).feed(t_ms, value)

    def flush(self, t_ms=None):
        # t_ms=None: close every open time window (end of input). With t_ms:
        # close the windows that ended by then (the clock moved on).
        for p in self.sensors:
            if t_ms is None:
                p.flush()
            else:
                p.advance(t_ms)

    # -- running on a board ----------------------------------------------------
    def attach(self, scheduler):
        # Build every sensor's source and register its sampling task. Sources
        # are built first, all of them, so a missing one starts nothing.
        sources = {}
        try:
            for p in self.sensors:
                if p.source is None:
                    from edgestream_agent import need
                    sources[p.name] = need("sources", "make")(p.src, p.factor)
        except Exception:
            for s in sources.values():
                s.deinit()
            raise
        self.scheduler = scheduler
        for p in self.sensors:
            name = p.name
            if name in sources:
                p.source = sources[name]
            p.clock = self.clock
            if name not in self.tasks:
                # one run per block of samples (block 1: per sample)
                self.tasks[name] = scheduler.every(p.period_ms * p.block, p.sample, name)

    def apply(self, config, validated=False):
        # Switch to a new config without a reboot (remote config): only the
        # sensors whose config changed are rebuilt. -> (rebuilt or added,
        # removed). The code is in reconfig.py, imported when it is needed.
        from edgestream_agent import need
        return need("reconfig", "apply")(self, config, validated)

    def deinit(self):
        if self.scheduler is not None:
            for t in self.tasks.values():
                self.scheduler.cancel(t)
        self.tasks = {}
        for p in self.sensors:
            p.deinit()

    def stats(self):
        # Counters per sensor, for health reports: a new dict (allocates).
        out = {}
        for p in self.sensors:
            out[p.name] = {"samples": p.samples, "passed": p.passed, "dropped": p.dropped,
                         "late": p.late, "rejected": p.rejected, "read_errors": p.read_errors,
                         "results": p.results,
                         "overwritten": sum(w.overwritten for w in p.windows)}
        return out

