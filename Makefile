# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install, train ResNet-20 hardware-aware on digits, print the drift table
#   make test   - create .venv, install, run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --prefer-binary -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lightning_nas fit --config configs/digits.yaml

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
