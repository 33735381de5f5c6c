# The two commands of the README: `make run` and `make test`.
# Both create .venv when missing and reinstall only when pyproject.toml or setup.py changed (stamp files).
# The core install has no web stack; `make run` adds the [app] extra, `make test` [app,test,onnx].
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.stamp-run: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[app]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[app,test,onnx]'
	touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	$(BIN)/streamlit run streamlit_app.py

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check .

# the public API as users' type checkers see it: the modules and settings in pyproject's [tool.mypy]
typecheck: $(VENV)/.stamp-test
	$(BIN)/python -m mypy

test: lint typecheck
	$(BIN)/python -m pytest

bench: $(VENV)/.stamp-run
	$(BIN)/roi-lab bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist roi_lab.egg-info
