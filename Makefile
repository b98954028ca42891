# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q

.PHONY: demo test install dev lint bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

# the test suite exercises every extra (Flower, Opacus, Ray)
$(VENV)/.dev: $(VENV)/.installed
	$(PIP) -e ".[dev,flower,opacus,ray]"
	touch $@

# Debian packages the tests read: Fashion-MNIST (the generative/learned experiments) and Chromium
# (the audit page is rendered in a real headless browser). Installed only when missing.
system-deps:
	@test -d /usr/share/datasets/fashion-mnist || $(APT) dataset-fashion-mnist \
		|| ($(SUDO) apt-get update -q && $(APT) dataset-fashion-mnist)
	@command -v chromium >/dev/null 2>&1 || $(APT) chromium \
		|| ($(SUDO) apt-get update -q && $(APT) chromium)

install: $(VENV)/.installed

dev: $(VENV)/.dev

demo: install
	$(BIN)/gradinv demo

test: dev system-deps
	CI=$${CI:-true} $(BIN)/python -m pytest -q -n 2

lint: dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

bench: install
	$(BIN)/python benchmarks/iteration_cost.py --label after --out docs/results/iteration_cost.json
	$(BIN)/python benchmarks/time_to_psnr.py --label after --out docs/results/time_to_psnr.json

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
