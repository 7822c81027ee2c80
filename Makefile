# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install, then on digits: search with the shipped surrogate,
#                 retrain the best winner and the ResNet-20 baseline hardware-aware, print the comparison
#   make test   - create .venv, install, run the test suite
#   make docs   - serve the documentation site (MkDocs, docs/) at http://127.0.0.1:8000
#   make lab    - run the lab notebook (docs/tutorials/lab.py) and write lab.ipynb with its outputs
#   make mutation - mutation testing of the analog physics (mutmut; docs/findings/mutation.md)
# PYTHON picks the interpreter (3.11 or 3.12); each version gets its own venv: .venv for 3.11,
# .venv312 for 3.12 (make test PYTHON=python3.12). CI (.ci/run) runs `make test` on 3.11.
PYTHON ?= python3
PYVER := $(shell $(PYTHON) -c 'import sys; print("%d%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(PYVER),)
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),install)),)
$(error '$(PYTHON)' does not run. A pyenv shim runs only the versions pyenv selects: PYENV_VERSION=3.12.1 make ... PYTHON=$(PYTHON), or name the interpreter's path: PYTHON=$$(pyenv root)/versions/3.12.1/bin/python3.12)
endif
endif
VENV ?= $(if $(filter 311,$(PYVER)),.venv,.venv$(PYVER))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean mutation docs lab

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --prefer-binary -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lightning_nas search --config configs/digits/search.yaml
	$(PY) -m lightning_nas retrain --config configs/digits/retrain.yaml

test: $(STAMP)
	$(PY) -m pytest -q --durations=25

docs: $(STAMP)
	$(VENV)/bin/mkdocs serve

lab: $(STAMP)
	$(PY) tools/run_notebook.py docs/tutorials/lab.py docs/tutorials/lab.ipynb

# MUTANTS='lightning_nas.drift*' limits the run to some mutants (mutmut's names, globs allowed).
mutation: $(STAMP)
	nice -n 10 $(PY) tools/mutation.py $(MUTANTS)

clean:
	rm -rf .venv .venv3* runs lightning_logs .pytest_cache
