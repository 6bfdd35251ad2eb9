# livedata: the two entry points of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install demo test lint system-deps bench bench-rss clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# A real round trip on a throw-away local vault, narrated.
demo: install
	bash scripts/demo.sh $(BIN)/livedata

# Debian packages the tests use: a real Secret Service (gnome-keyring on D-Bus).
system-deps:
	@command -v gnome-keyring-daemon >/dev/null && command -v dbus-daemon >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnome-keyring dbus >/dev/null)

lint: install
	$(BIN)/ruff check livedata_cli tests
	$(BIN)/mypy

test: install system-deps lint
	$(PY) -m pytest -q -n 2 --durations=10


bench:
	bash bench/big.sh

bench-rss:
	BENCH_RSS_GIB=5 bash bench/big.sh --rss-only
