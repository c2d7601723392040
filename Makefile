# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests).
PYTHON ?= python3.11
VENV ?= .venv
# Override for a GPU build, e.g. `make test TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: venv test test-all demo bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_EXTRA) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

# test: the default suite (not slow, not network, see pyproject.toml); test-all: everything, downloads included
test: venv
	$(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m ""

demo: venv
	$(VENV)/bin/pretrainlab demo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
