# livedata: the two entry points of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install demo test lint system-deps docs bench bench-compiled bench-big bench-small bench-rss bench-search bench-s3 bench-s3-small bench-server bench-prune

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,server]'
	touch $@

install: $(VENV)/.installed

# A real round trip on a throw-away local vault, narrated.
demo: install
	bash scripts/demo.sh $(BIN)/livedata

# Debian packages the tests use: a real Secret Service (gnome-keyring on D-Bus), PostgreSQL and
# Redis for the server, Node and Chromium for the share page's script, and the conversion
# engines (pandoc, LibreOffice Writer without its GUI, ffmpeg), and libfuse 3 for livedata mount.
system-deps:
	@command -v gnome-keyring-daemon >/dev/null && command -v dbus-daemon >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnome-keyring dbus >/dev/null)
	@test -x /usr/lib/postgresql/15/bin/initdb || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
	@command -v redis-server >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null)
	@command -v zsh >/dev/null && command -v fish >/dev/null && command -v groff >/dev/null && command -v man >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zsh fish groff-base man-db >/dev/null)
	@command -v node >/dev/null && test -x /usr/bin/chromium || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs chromium >/dev/null)
	@command -v fusermount3 >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 >/dev/null)
	@command -v pandoc >/dev/null && command -v soffice >/dev/null && command -v ffmpeg >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    pandoc libreoffice-writer-nogui ffmpeg >/dev/null)

# Man pages (man/) and completion scripts (completions/) from the command definitions.
docs: install
	$(PY) scripts/gen_docs.py

lint: install
	$(BIN)/ruff check livedata_cli tests
	$(BIN)/mypy

test: install system-deps lint
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=10


# Every benchmark, each next to its peers in the same run.
bench: bench-big bench-small bench-search bench-s3 bench-s3-small bench-state bench-prune

# Byte-code compiled ahead, as an installed wheel is: a run must not pay for
# compiling edited modules (PYTHONDONTWRITEBYTECODE would make it pay every time).
bench-compiled: install
	$(PY) -m compileall -q livedata_cli

# prune reclaiming the space of 2,000 purged files of 10,000 (repacking), median of 3 runs.
bench-prune: bench-compiled
	$(PY) bench/prune_bench.py

# One 1 GiB file up and down, against cp, age, gpg, restic, borg and rclone crypt.
bench-big: bench-compiled
	bash bench/big.sh

# 10,000 small files and one 200 MiB file: first backup and reruns, against restic, borg, rclone.
bench-small: bench-compiled
	bash bench/small.sh

bench-rss: bench-compiled
	BENCH_RSS_GIB=5 bash bench/big.sh --rss-only

# The cost of config MACs and journal chains: 10,000 small files, first backup and rerun, before/after.
bench-state: bench-compiled
	bash bench/state_overhead.sh

# livedata search over a 100,000-file index: whole-process wall time, median of 9 runs.
bench-search: bench-compiled
	$(PY) bench/search_bench.py

# 1 GiB up and down a local S3-protocol server (moto): livedata against boto3's own transfers.
bench-s3: bench-compiled
	$(PY) bench/s3_bench.py

# 2,000 x 4 KiB and 200 x 1 MiB to a local moto server, against restic and rclone crypt;
# 2,000 small files to a local livedata server and to a folder store.
bench-s3-small: bench-compiled
	bash bench/s3_small.sh

# The hosted API on PostgreSQL with 2 workers, loaded from a separate process.
bench-server: bench-compiled system-deps
	$(PY) bench/server_bench.py
