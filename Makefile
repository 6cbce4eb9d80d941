# Two commands set everything up on a fresh machine:
#   make dev    run the broker's whole local stack (embedded default)
#   make test   lint, type-check and run the test suite against real servers
# Each creates .venv and installs what it needs; system packages (Chromium for the
# approval-page browser tests) are installed with apt-get when missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml clients/python/pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: dev test lint typecheck unit bench system-deps services oracle clean

ORACLE := tests/devstack/iam_oracle

# The agent-side package (clients/python) first, editable: the server depends on it.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e './clients/python[aws,vault,mcp]'
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[devstack,test]'
	rm -f $(VENV)/.installed-*
	touch $@

# Chromium and its driver drive the approval page in a real browser during the tests;
# Node runs the independent IAM evaluator the AWS stand-in is cross-checked against.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  echo "installing nodejs and npm (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; \
	fi

# The IAM oracle (cloud-copilot's iam-simulate), pinned by its lockfile; test-only.
$(ORACLE)/node_modules/.installed: $(ORACLE)/package-lock.json
	cd $(ORACLE) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

oracle: system-deps $(ORACLE)/node_modules/.installed

# The test suite uses the machine's PostgreSQL (127.0.0.1:5432, trust auth, database test).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

dev: $(STAMP)
	$(BIN)/broker scopes validate scopes
	$(BIN)/broker dev

lint: $(STAMP)
	$(BIN)/ruff check broker clients tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) system-deps services oracle
	$(BIN)/pytest -q

test: lint typecheck unit

bench: $(STAMP) services
	@command -v wrk >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .broker .pytest_cache .mypy_cache .ruff_cache $(ORACLE)/node_modules
