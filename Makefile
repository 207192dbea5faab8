# `make demo` and `make test` work on a fresh machine: both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CKPT := $(VENV)/bin/ckpttool
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench fixtures clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	@echo "== ckpttool inspect: a YOLOv5-style training checkpoint whose model class is not importable"
	$(CKPT) inspect fixtures/model1_train.pt
	@echo "== ckpttool inspect --keys: the same weights as safetensors"
	$(CKPT) inspect fixtures/model1_state_dict.safetensors --keys
	@echo "== ckpttool scan: a clean file and a malicious one (exit 1 expected)"
	-$(CKPT) scan fixtures/model1_state_dict.pt fixtures/malicious_reduce.pt

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check ckpttool tests bench

bench: setup
	$(PY) bench/inspect_bench.py

fixtures: setup
	$(PY) fixtures/make_fixtures.py

clean:
	rm -rf $(VENV) build *.egg-info
