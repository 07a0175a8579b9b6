# ragtrail — `make run` builds the venv if needed and ingests the sample corpus; `make test` runs the tests;
# `make ui` / `make stop` start and stop Airflow and the MLflow UI on loopback.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
STAMP := $(VENV)/.ragtrail-installed
# The default embed backend's ONNX file, made once into the venv (share/ragtrail/models): a run never exports.
PREPARED := $(VENV)/share/ragtrail/.prepared

.PHONY: install run test test-under-load cluster-test lint docs bench bench-listener bench-parsers bench-scale bench-store clean ui stop browser lock

# Every package, transitive ones too, at the version of requirements.lock (a constraints file).
$(STAMP): requirements.txt requirements-dev.txt requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c requirements.lock torch==2.13.0  # the CPU wheel, before anything can ask for a CUDA build
	$(PIP) install -c requirements.lock -r requirements.txt -r requirements-dev.txt
	$(PIP) install --no-deps -e .
	touch $(STAMP)

# torch + transformers + onnx load here, in this one process, and never in `ragtrail ingest` (docs/performance.md).
$(PREPARED): $(STAMP) include/ragtrail/stages/onnx_export.py include/ragtrail/stages/onnx_backend.py
	$(PY) -m ragtrail.stages.embedding prepare
	touch $(PREPARED)

install: $(STAMP) $(PREPARED)

# Refresh requirements.lock after changing a pin: resolve requirements*.txt afresh in a throw-away venv and
# freeze it. AIRFLOW_CONSTRAINTS=<Airflow's constraints-3.11.txt, a file or URL> resolves within them.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV) && python3 -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip -q --disable-pip-version-check install --upgrade pip
	$(LOCK_VENV)/bin/python -m pip -q --disable-pip-version-check install torch==2.13.0
	$(LOCK_VENV)/bin/python -m pip -q --disable-pip-version-check install \
	  $(if $(AIRFLOW_CONSTRAINTS),-c $(AIRFLOW_CONSTRAINTS)) -r requirements.txt -r requirements-dev.txt
	{ sed -n '/^#/p' requirements.lock; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^#' | sed 's/+cpu$$//'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf $(LOCK_VENV)

run: install
	$(VENV)/bin/ragtrail ingest --source include/sample_corpus --product handbook

lint: install
	$(VENV)/bin/ruff check .

# docs/configuration.md's settings tables, from the table of settings (include/ragtrail/core/env*.py).
docs: install
	$(PY) -m ragtrail.core.envdoc

# The metrics-page test drives a headless Chromium (Debian package; Playwright's download does not
# work here). Installed when missing and we are root; otherwise that test skips (and fails in CI).
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make: chromium not found and not root: the metrics-page test will skip (fail with CI=true)"; fi; }

# The suite runs on TEST_WORKERS processes (pytest-xdist), each taking whole test files (a file's live stack
# is module-scoped); every live server a test starts has its own home, ports and process group, so they
# cannot meet. Three on two cores: the live tests spend much of their time waiting on schedulers and pollers
# (two workers kept the CPU 57 % busy, three 70 %). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 3
PYTEST := $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: lint browser
	$(PYTEST) $(PYTEST_ARGS)

# `make test` while a CPU hog keeps every core busy: a flaky test shows up here first. The hog is bounded
# (HOG_S seconds at most, and it ends when make does) and stopped by PID here, its own child.
# TEST_RUNS=2 runs the whole suite twice in a row under the same hog (the proof that it does not flake).
TEST_RUNS ?= 1
HOG_S ?= 9000
test-under-load: lint browser
	@$(PY) tests/cpu_hog.py --seconds $(HOG_S) & hog=$$!; \
	trap 'kill $$hog 2>/dev/null; wait $$hog 2>/dev/null' EXIT; \
	for run in $$(seq $(TEST_RUNS)); do \
	  echo "== make test-under-load: run $$run of $(TEST_RUNS)"; $(PYTEST) $(PYTEST_ARGS) || exit 1; \
	done

ui: install
	$(VENV)/bin/ragtrail ui start

stop:
	@if [ -x $(VENV)/bin/ragtrail ]; then $(VENV)/bin/ragtrail ui stop; else echo "nothing to stop"; fi

# The compose stack as processes on loopback (needs PostgreSQL and Redis; see docs/compose.md).
cluster-test: install
	$(VENV)/bin/pytest -m services -s tests/test_cluster.py

# `make bench DOCS=300` for a quick look; the published numbers use the default (2,000 documents).
# `make bench CORPUS=pgdocs [PAGES=150]` (~12 min on 2 cores; PAGES=100 for the published run): the PostgreSQL manual (apt-get download) against LangChain.
DOCS ?= 2000
CORPUS ?= synthetic
PAGES ?= 150
bench: install
	$(PY) bench/run.py --corpus $(CORPUS) --docs $(DOCS) --pages $(PAGES)
	$(PY) bench/listener.py

# The embedded stores side by side at SIZES points (write rate, reopen, query p50/p95, recall@10 against exact
# search, peak RSS, disk), each run in its own process: bench/results/store.json. A size whose projected write
# passes MAX_S seconds is projected from the largest run instead (marked extrapolated).
SIZES ?= 10000,100000,1000000
KINDS ?= local,edge
MAX_S ?= 1800
bench-store: install
	$(PY) bench/store.py --sizes $(SIZES) --kinds $(KINDS) --max-s $(MAX_S)

# Every pipeline task's peak RSS and wall at SCALE_SIZES synthetic one-chunk documents (each task instance its own
# process, the embedder replaced by a fast deterministic one), RSS = a + b·N fitted per task, the largest XCom, MLflow
# runs per DAG run, a 0.1 % re-ingest at the largest size: bench/results/scale.json. SCALE_BEFORE=<tree with include/
# and plugins/> also runs that tree's index task on the same data (e.g. `git archive main include plugins | tar -x -C`).
SCALE_SIZES ?= 20000,80000,320000
SCALE_BEFORE ?=
bench-scale: install
	$(PY) bench/scale.py --sizes $(SCALE_SIZES) $(if $(SCALE_BEFORE),--before-tree $(SCALE_BEFORE))

# The listener's overhead per task alone (a minute or two): bench/results/listener.json.
bench-listener: install
	$(PY) bench/listener.py

# What the per-file parser budgets cost on the real-docs corpus (the PostgreSQL manual), how the HTML extractor
# scales with depth / width / length, and each hostile shape's outcome (~6 min): bench/results/parsers.json.
bench-parsers: install
	$(PY) bench/parsers.py

clean:
	rm -rf .data
