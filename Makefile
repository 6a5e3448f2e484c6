# Two commands on a fresh machine:  make demo   (the main job)   make test   (the tests)
# Both create .venv if it is missing and install the project with its test extra.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgestream-installed
PYTEST_ARGS ?=

.PHONY: demo test bench install mosquitto clean

demo: $(STAMP) mosquitto
	$(VENV)/bin/edgestream demo

test: $(STAMP) mosquitto
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) mosquitto
	$(PY) -m bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	  else echo "python3-venv is missing: run  sudo apt-get install -y python3-venv" >&2; exit 1; fi; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# A real mosquitto binary for the integration tests (they start their own broker).
mosquitto:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	  else echo "mosquitto is missing: run  sudo apt-get install -y mosquitto" >&2; exit 1; fi; }

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis .mypy_cache .ruff_cache
