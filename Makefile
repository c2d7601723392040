# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests); `make venv` only installs.
# Any Python >= 3.11: python3.11 when there is one, else python3; or say which: `make venv PYTHON=python3.12`.
PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV ?= .venv
# Override for a GPU build, e.g. `make test TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: venv test test-all demo bench clean

$(VENV)/.installed: pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "pretrainlab needs Python >= 3.11, and $(PYTHON) is older or missing; name one: make venv PYTHON=python3.12" >&2; \
	  exit 1; }
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
