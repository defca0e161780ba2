# Set-up and checks. `make demo` and `make test` create .venv when missing and install what
# they need once (stamp files in .venv record it; editing pyproject.toml re-runs the install).
# torch is pinned in every pip command: the CPU wheel 2.13.0 (anything else pulls GBs of CUDA
# packages). torchvision is never installed.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip --disable-pip-version-check
TORCH  := torch==2.13.0
PYTEST_ARGS ?=
CHROMIUM ?= /usr/bin/chromium

.PHONY: all demo app lint test test-fast install oracle clean-venv

all: test

$(VPY):
	$(PYTHON) -m venv $(VENV)

# The package (editable) with its test and video extras.
$(VENV)/.stamp-install: pyproject.toml | $(VPY)
	$(PIP) install -q -U pip "setuptools>=77" wheel
	$(PIP) install -q --no-build-isolation $(TORCH) -e ".[dev,video]"
	@touch $@

# Meta's sam2==1.1.0 as a test-only reference oracle, in its documented order: the sdist
# needs torch at build time (hence no build isolation) and must not pull its own torch.
$(VENV)/.stamp-oracle: $(VENV)/.stamp-install
	SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation --no-deps sam2==1.1.0
	$(PIP) install -q $(TORCH) hydra-core iopath
	@touch $@

# The optional extras the tests cover: web app (Gradio), text encoders (transformers, MiniLM),
# ONNX export. The app's browser test drives Debian's chromium through the playwright package
# (dev extra); `playwright install` is never run (it would download a browser).
$(VENV)/.stamp-extras: $(VENV)/.stamp-install
	$(PIP) install -q --no-build-isolation $(TORCH) -e ".[dev,video,demo,text,export,plots,coco]"
	@touch $@

$(CHROMIUM):
	@echo "installing Debian's chromium for the browser test (tests/app/test_app_browser.py)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

install: $(VENV)/.stamp-install

oracle: $(VENV)/.stamp-oracle

demo: $(VENV)/.stamp-install
	$(VPY) -m surgsam demo

app: $(VENV)/.stamp-extras
	$(VPY) -m surgsam app

lint: $(VENV)/.stamp-install
	$(VPY) -m ruff check src tests benchmarks
	$(VPY) -m ruff format --check src tests benchmarks
	$(VPY) -m mypy

test: lint $(VENV)/.stamp-oracle $(VENV)/.stamp-extras $(CHROMIUM)
	SURGSAM_CHROMIUM=$(CHROMIUM) $(VPY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(VENV)/.stamp-oracle $(VENV)/.stamp-extras
	$(VPY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
