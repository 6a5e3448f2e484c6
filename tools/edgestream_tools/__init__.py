"""Host-side tools: the `edgestream` CLI, the MicroPython runner, firmware bundles."""
