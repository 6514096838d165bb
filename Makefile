# UNDE infrastructure — see README.md. Main commands: `make test`, `make lab`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)/tools
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
INVENTORY ?= inventories/helsinki,inventories/local

.PHONY: help setup setup-apt setup-venv
help:
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

setup: setup-apt setup-venv ## install everything the project needs (idempotent)

setup-apt:
	@bash tools/setup_apt.sh

setup-venv:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet 'uv>=0.5'
	uv sync --frozen --all-packages --python 3.11
	@bash tools/check_collections.sh

-include lab/lab.mk
