# orstream: `make run` starts the demo, `make test` runs the whole suite, `make bench` measures the edge,
# `make security` throws mutated input at a running edge and floods a running site.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
EDGE_PORT ?= 8010

# Tests run on real PostgreSQL and Redis; these defaults match a developer machine and CI.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orstream
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test bench security venv browser pacs typecheck clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Debian's Chromium for the browser tests (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# Debian's Orthanc (PACS and worklist for the hospital tests), its DICOMweb plugin and dciodvfy.
pacs:
	@{ command -v Orthanc && command -v dciodvfy && test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so; } >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb dicom3tools; }

run: export ORSTREAM_PUBLIC_URL ?= http://127.0.0.1:$(PORT)
run: venv
	mkdir -p $${ORSTREAM_VAR_DIR:-var}
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	PORT=$(PORT) EDGE_PORT=$(EDGE_PORT) $(PY) -m orstream.devserver

# Browser tests run in a pytest process of their own: Playwright's sync API keeps an event loop
# on the main thread, which asyncio tests in the same process would trip over.
TEST_ENV = DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	CELERY_TASK_ALWAYS_EAGER=true

typecheck: venv
	$(PY) -m mypy orstream mentoring consent recordings training hospital frontend bench

test: venv browser pacs
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy orstream mentoring consent recordings training hospital frontend bench
	$(TEST_ENV) $(PY) -m pytest -m "not e2e"
	$(TEST_ENV) $(PY) -m pytest -m e2e

bench: venv browser pacs
	$(PY) -m bench

# 10,000 mutated SDPs, signalling bodies and datagrams at a running edge, a second session watching;
# then a chat flood and 3,000 mutated WebSocket frames at a running site, a mentor working meanwhile.
security: venv
	$(PY) -m bench.fuzz
	$(PY) -m bench.site

clean:
	rm -rf var .pytest_cache
