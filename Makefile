# Two verbs a new user needs: `make run` (install what is missing, open the app) and
# `make test` (install what is missing, lint, run the whole suite). `make install` alone sets up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Shared libraries Qt (offscreen and xcb) and PortAudio need on a bare Debian machine.
OS_PACKAGES := libportaudio2 libasound2 libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 \
	libfontconfig1 libdbus-1-3 libglib2.0-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 \
	libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-image0 libxcb-render-util0 libsndfile1

.PHONY: install os-deps run test lint clean

install: os-deps $(STAMP)

os-deps:
	@missing=""; for p in $(OS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing OS packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "NOTE: missing OS packages:$$missing"; \
		echo "      Run 'sudo apt-get install$$missing' (the app starts without them, but audio devices or"; \
		echo "      the window may be unavailable until they are installed)."; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,data]'
	@touch $(STAMP)

run: install
	$(BIN)/workbench $(ARGS)

lint: install
	$(BIN)/ruff check workbench models tests
	$(BIN)/ruff format --check workbench models tests
	$(BIN)/lint-imports

test: install lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
