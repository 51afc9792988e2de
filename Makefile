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

.PHONY: setup demo-corpus run test bench clean

setup: $(STAMP)

# Reinstall only when requirements.txt changes.
$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

demo-corpus: setup
	$(PY) -m core demo-corpus

run: demo-corpus
	@echo "deepLanguage on http://$(DEEPLANGUAGE_HOST):$(DEEPLANGUAGE_PORT)"
	$(PY) -m streamlit run app.py --server.address $(DEEPLANGUAGE_HOST) --server.port $(DEEPLANGUAGE_PORT) \
		--server.headless $(HEADLESS) --browser.gatherUsageStats false

test: setup
	$(PY) -m pytest

bench: setup
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf data/cache .pytest_cache
