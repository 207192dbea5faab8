# `make demo` and `make test` work on a fresh machine: both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CKPT := $(VENV)/bin/ckpttool
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: setup demo test lint bench fixtures clean

setup: $(STAMP)
setup: browser

# Headless Chromium for the browser tests of the HTML reports: installed from Debian when missing
# (as root, or through sudo); the package lists are refreshed only when the first try fails.
.PHONY: browser
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing chromium and chromium-driver (browser tests of the HTML reports)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "could not install chromium and chromium-driver: the browser tests in tests/report_html will fail"; }

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet -e '.[dev,report]'
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
	@echo "== ckpttool remap: named layers -> Sequential backbone; --like settles conv1/conv_a by module order (diff: equal)"
	$(CKPT) remap fixtures/model1_train.pt --to sequential --layout fixtures/model1_to_model2.toml --dry-run --quiet
	$(CKPT) remap fixtures/model1_state_dict.pt --like fixtures/model2_state_dict.pt --dry-run --quiet
	$(CKPT) remap fixtures/model1_state_dict.pt -o $(DEMO)/model2_from_model1.pt --force --like fixtures/model2_state_dict.pt --quiet
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
	@echo "== HTML reports to open in a browser: $(DEMO)/inspect.html, $(DEMO)/diff.html, $(DEMO)/resume.html"
	$(CKPT) inspect fixtures/model1_train.pt --html $(DEMO)/inspect.html >/dev/null
	-$(CKPT) diff fixtures/model1_train.pt fixtures/model1_release.pt --section all --html $(DEMO)/diff.html >/dev/null
	$(CKPT) validate-resume fixtures/model1_train.pt --epochs 400 --html $(DEMO)/resume.html >/dev/null

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check ckpttool tests bench fixtures fuzz

bench: setup
	$(PY) bench/inspect_bench.py
	$(PY) bench/html_bench.py

fixtures: setup
	$(PY) fixtures/make_fixtures.py

# Hugging Face folder fixtures (fixtures/hf/): transformers/diffusers/peft in a side environment.
.PHONY: fixtures-hf
fixtures-hf:
	bash fixtures/make_side_env.sh
	.venv-fixtures/bin/python fixtures/make_hf_fixtures.py

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO)

# DeepSpeed ZeRO fixtures: DeepSpeed needs its own environment (.venv-deepspeed), never .venv.
.PHONY: deepspeed-fixtures
deepspeed-fixtures:
	$(PYTHON) -m venv .venv-deepspeed
	.venv-deepspeed/bin/pip install --quiet torch==2.13.0
	.venv-deepspeed/bin/pip install --quiet deepspeed==0.19.8 safetensors
	.venv-deepspeed/bin/pip install --quiet transformers==5.23.0 accelerate==1.15.0
	DS_ACCELERATOR=cpu .venv-deepspeed/bin/python fixtures/make_deepspeed_fixtures.py
