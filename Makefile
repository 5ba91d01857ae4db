# The two commands (see README): `make demo` starts the app on the embedded demo,
# `make test` runs every test. Both build or reuse the virtualenv in .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
STAMP := $(VENV)/.installed

.PHONY: venv demo checkpoints test test-fast bench browser clean-cache

venv: $(STAMP)

# torch and torchvision come from the registry as a matching pair (the local CPU-only
# torch 2.13.0 wheel has no torchvision to match). The venv is reused while the
# requirement files are unchanged.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

checkpoints: venv
	$(PY) -m asl_core.demo

# trains the demo checkpoints if missing, prints their metrics, then serves the app
demo: venv
	$(PY) -m asl_core.demo --serve --port $(PORT)

# Debian's chromium drives the browser tests (Playwright's own browser download does not work here).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: venv browser
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not browser"

bench: venv
	$(PY) bench/run_all.py

clean-cache:
	rm -rf .cache
