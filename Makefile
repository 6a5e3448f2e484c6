# Two commands on a fresh machine:  make demo   (the main job)   make test   (the tests)
# Both create .venv if it is missing and install the project with its test extra.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgestream-installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test bench install mosquitto demo-broker browser board multilib clean

demo: $(STAMP) demo-broker board
	$(VENV)/bin/edgestream demo $(DEMO_ARGS)

test: $(STAMP) mosquitto browser board testtools
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) mosquitto board
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

# The demo's broker: mosquitto (installed as root, as above); without it and without root, the embedded
# pure-Python broker from PyPI (edgestream broker run --embedded), so the demo never needs a system package.
demo-broker: $(STAMP)
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	  else $(PY) -c 'import amqtt' 2>/dev/null || { echo "mosquitto is missing and this is not root: installing the embedded broker (amqtt) into $(VENV)" >&2; \
	    $(PY) -m pip install -q -e '.[test,embedded-broker]'; }; fi

# The commands some tests call: openssl (the TLS tests make their own certificates) and systemd-analyze
# (the service test verifies the unit file it writes).
testtools:
	@{ command -v openssl >/dev/null 2>&1 && command -v systemd-analyze >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl systemd; \
	  else echo "openssl or systemd-analyze is missing: run  sudo apt-get install -y openssl systemd" >&2; exit 1; fi; }

# Debian's chromium and its driver for the console tests (tests/hub/test_console.py drives them with selenium;
# without them those tests skip and say why). Not fatal: the rest of the suite runs without a browser.
browser:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "chromium is missing (the console tests will skip): run  sudo apt-get install -y chromium chromium-driver" >&2; fi; }

# The board-faithful MicroPython the device tests, the demo and the benchmarks run on: a 32-bit
# unix port with the agent frozen in (build/board/; ~1 min from clean, rebuilt only when stale).
board: $(STAMP) multilib
	$(PY) -m edgestream_tools.boardbuild

# gcc that can build 32-bit programs: gcc-multilib on x86_64 (a 32-bit host builds natively).
multilib:
	@[ "$$(uname -m)" != x86_64 ] || printf '#include <stdio.h>\nint main(void){return 0;}\n' | gcc -m32 -x c - -o /dev/null 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-multilib; \
	  else echo "gcc-multilib is missing: run  sudo apt-get install -y gcc-multilib" >&2; exit 1; fi; }

clean:
	rm -rf $(VENV) build .pytest_cache .hypothesis .mypy_cache .ruff_cache
