# ragtrail — `make run` builds the venv if needed and ingests the sample corpus; `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.ragtrail-installed

.PHONY: install run test lint bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0  # the CPU wheel, before anything can ask for a CUDA build
	$(PIP) install -r requirements.txt -r requirements-dev.txt
	$(PIP) install --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/ragtrail ingest --source include/sample_corpus --product handbook

lint: install
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/pytest

# `make bench DOCS=300` for a quick look; the published numbers use the default (2,000 documents).
DOCS ?= 2000
bench: install
	$(PY) bench/run.py --docs $(DOCS)

clean:
	rm -rf .data
