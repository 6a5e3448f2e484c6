# Agent.apply: switch a running agent to a new config without a reboot.
# Kept apart from agent.py because only a remote config needs it: the link
# imports it (with the validator) for a config message and unloads it after.
#
# Only sensors whose config changed are rebuilt (their open windows are
# discarded, counted in agent.discarded); the others keep their window
# state. Raises ConfigError and changes nothing when the new config is
# invalid or a source fails to start.


def apply(self, config, validated=False):
    # self: the Agent. -> (names rebuilt or added, names removed)
    # validated=True: config is config.validate()'s output (a remote config
    # validates, then unloads the validator before anything is built)
    if validated:
        cfg = config
    else:
        from edgestream_agent.config import validate
        cfg = validate(config)
        del validate
    from edgestream_agent import need
    make = need("sources", "make")
    new = self._build(cfg["sensors"], self.pipelines)
    order = [new[s["name"]] for s in cfg["sensors"]]
    changed = [p.name for p in order if self.pipelines.get(p.name) is not p]
    removed = [p.name for p in self.sensors if p.name not in new]
    if self.scheduler is not None:
        started = {}
        try:
            for n in changed:
                started[n] = make(new[n].src, new[n].factor)
        except Exception:
            for s in started.values():
                s.deinit()
            raise
        for n in changed:
            new[n].source = started[n]
            new[n].clock = self.clock
    for n in changed + removed:
        old = self.pipelines.get(n)
        if old is None:
            continue
        for w in old.windows:
            if w.pending():
                self.discarded += 1
        self.samples_gone += old.samples
        old.deinit()
        task = self.tasks.pop(n, None)
        if task is not None:
            self.scheduler.cancel(task)
    self.device = cfg["device"]
    self.pipelines = new
    self.sensors = order
    if self.scheduler is not None:
        for n in changed:
            p = new[n]
            self.tasks[n] = self.scheduler.every(p.period_ms * p.block, p.sample, n)
    return changed, removed
