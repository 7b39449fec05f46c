# Two entry points: `make run` and `make test`. Everything else is what they need.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
DEBS := influxdb mosquitto mosquitto-clients victoria-metrics chromium chromium-driver

.PHONY: run test lint test-faults deps debs venv bench clean

run: deps
	$(VPY) -m deploy.localstack

test: deps lint
	$(VPY) -m pytest -q -n 2 $(PYTEST_ARGS)

# ruff (pycodestyle, pyflakes, import order, bugbear, pyupgrade) and mypy, both configured in pyproject.toml
lint: deps
	$(VPY) -m ruff check .
	$(VPY) -m mypy

# The long fault-injection schedules (database, broker, hung/killed servers, small budgets, clock offsets, disk full).
test-faults: deps
	$(VPY) -m pytest -q -m faults $(PYTEST_ARGS)

bench: deps
	$(VPY) -m pytest -q -s tests/bench --override-ini addopts= $(PYTEST_ARGS)

deps: debs venv

# Debian's servers: installed only when a binary is missing (root, or sudo when not root).
debs:
	@missing=""; \
	command -v influxd >/dev/null || missing="$$missing influxdb"; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto mosquitto-clients"; \
	command -v victoria-metrics >/dev/null || missing="$$missing victoria-metrics"; \
	command -v chromium >/dev/null || missing="$$missing chromium chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	  for s in influxdb mosquitto; do $(SUDO) systemctl disable --now $$s >/dev/null 2>&1 || true; done; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	[ -x $(VPY) ] || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	$(VPY) -m pip install -q --no-deps $$($(VPY) -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["pilotline"]["no-deps"]))')
	touch $(STAMP)

clean:
	rm -rf var .pytest_cache
