# The two commands (see README): `make demo` starts the app on the embedded demo,
# `make test` runs every test. Both build or reuse the virtualenv in .venv, where
# `pip install -e .[dev]` provides the `asl-lens` command.
VENV ?= .venv
PY := $(VENV)/bin/python
LENS := $(VENV)/bin/asl-lens
PORT ?= 8501
STAMP := $(VENV)/.installed

.PHONY: venv demo checkpoints test test-fast bench browser clean-cache

venv: $(STAMP)

# Dependencies are pinned in pyproject.toml; the venv is reused while it is unchanged.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

checkpoints: venv
	$(LENS) demo

# trains the demo checkpoints if missing, prints their metrics, then serves the app
demo: venv
	$(LENS) demo --serve --port $(PORT)

# Debian's chromium drives the browser tests (Playwright's own browser download does not work here).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: venv browser
	$(PY) -m pytest -q --durations=15

test-fast: venv
	$(PY) -m pytest -q -m "not browser"

bench: venv
	$(PY) bench/run_all.py

clean-cache:
	rm -rf .cache
