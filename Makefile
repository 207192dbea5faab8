# `make demo` and `make test` work on a fresh machine: both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CKPT := $(VENV)/bin/ckpttool
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: setup demo test lint bench fixtures clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	@mkdir -p $(DEMO)
	@echo "== ckpttool inspect: a YOLOv5-style training checkpoint whose model class is not importable"
	$(CKPT) inspect fixtures/model1_train.pt
	@echo "== ckpttool inspect --keys: the same weights as safetensors"
	$(CKPT) inspect fixtures/model1_state_dict.safetensors --keys
	@echo "== ckpttool scan: a clean file and a malicious one (exit 1 expected)"
	-$(CKPT) scan fixtures/model1_state_dict.pt fixtures/malicious_reduce.pt
	@echo "== ckpttool diff: the same weights as .pt and .safetensors (exit 0), then a training run against its release (exit 1)"
	$(CKPT) diff fixtures/model1_state_dict.pt fixtures/model1_state_dict.safetensors
	-$(CKPT) diff fixtures/model1_train.pt fixtures/model1_release.pt --section meta
	@echo "== ckpttool remap: named layers -> Sequential backbone; the conv1/conv_a ambiguity reported, then settled"
	$(CKPT) remap fixtures/model1_train.pt --to sequential --layout fixtures/model1_to_model2.toml --dry-run --quiet
	$(CKPT) remap fixtures/model1_state_dict.pt --like fixtures/model2_state_dict.pt --dry-run --quiet
	$(CKPT) remap fixtures/model1_state_dict.pt -o $(DEMO)/model2_from_model1.pt --force --like fixtures/model2_state_dict.pt --map conv1=backbone.0 --quiet
	$(CKPT) diff $(DEMO)/model2_from_model1.pt fixtures/model2_state_dict.pt
	$(CKPT) remap fixtures/model1_train.pt -o $(DEMO)/model2_train.pt --force --to sequential --layout fixtures/model1_to_model2.toml --quiet
	@echo "== ckpttool extract-ema: the EMA of a YOLOv5-style checkpoint, checked against the raw weights"
	$(CKPT) extract-ema fixtures/model1_train.pt -o $(DEMO)/ema.safetensors --force
	$(CKPT) extract-ema fixtures/sd_ema.ckpt --list
	@echo "== ckpttool validate-resume: epoch 4 of 300 resumed with 400 epochs, then a stripped release (exit 1 expected)"
	$(CKPT) validate-resume fixtures/model1_train.pt --epochs 400
	-$(CKPT) validate-resume fixtures/model1_release.pt --epochs 400
	@echo "== ckpttool convert: training checkpoint -> fp16 EMA release in safetensors, and back to torch"
	$(CKPT) convert fixtures/model1_train.pt -o $(DEMO)/release.safetensors --ema --dtype fp16 --force
	$(CKPT) convert $(DEMO)/release.safetensors -o $(DEMO)/release.pt --force

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check ckpttool tests bench fixtures fuzz

bench: setup
	$(PY) bench/inspect_bench.py

fixtures: setup
	$(PY) fixtures/make_fixtures.py

# Hugging Face folder fixtures (fixtures/hf/): transformers/diffusers/peft in a side environment.
.PHONY: fixtures-hf
fixtures-hf:
	bash fixtures/make_side_env.sh
	.venv-fixtures/bin/python fixtures/make_hf_fixtures.py

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO)
