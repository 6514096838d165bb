# UNDE infrastructure — see README.md. Main commands: `make test`, `make lab`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONPATH := $(CURDIR)/tools
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# The lab vault's password is lab-only and committed (README "Secrets"); production ids are added with --vault-id.
export ANSIBLE_VAULT_IDENTITY_LIST := lab@$(CURDIR)/inventories/lab/vault-password.txt
INVENTORY ?= inventories/helsinki,inventories/local

.PHONY: help setup setup-apt setup-venv
help:
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

setup: setup-apt setup-venv ## install everything the project needs (idempotent)

setup-apt:
	@bash tools/setup_apt.sh

setup-venv:
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	@test -x $(BIN)/uv || { test -x $(BIN)/pip || $(BIN)/python -m ensurepip --upgrade >/dev/null; \
	  $(BIN)/python -m pip install --quiet 'uv==0.13.9'; }
	$(BIN)/uv sync --frozen --inexact --all-packages --python $(BIN)/python
	@bash tools/check_collections.sh

DEFAULT_INVENTORY := inventories/helsinki,inventories/local

.PHONY: bench-hybrid-search bench-dialogue validate lab-inventory lint syntax-check test-python test-lab test-molecule test-lab-full test lab
validate: ## check topology: duplicate IPs/WG/ports, shard pairs, etcd placement (INVENTORY=dir1,dir2)
	$(BIN)/python -m unde_tools.validate --inventory $(INVENTORY)
ifeq ($(INVENTORY),$(DEFAULT_INVENTORY))
	$(BIN)/python -m unde_tools.lab_inventory --check
	$(BIN)/python -m unde_tools.validate --inventory inventories/lab
	$(BIN)/python -m unde_tools.lab_vault --check
endif

lab-inventory: ## regenerate inventories/lab/hosts.yml from the two site inventories
	$(BIN)/python -m unde_tools.lab_inventory

lint: ## yamllint, ansible-lint (production profile), ruff, mypy
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy apps tools tests lab roles molecule bench

syntax-check: ## ansible-playbook --syntax-check site.yml against both site inventories
	$(BIN)/ansible-playbook --syntax-check -i inventories/helsinki -i inventories/local site.yml

test-python: ## pytest: tools, inventories, apps (no lab)
	bash tools/pytest_nonempty.sh -m "not lab" tests roles apps

test-lab: ## lab tool tests on real booted hosts (boot, ssh, kill, freeze, partition, heal)
	bash tools/pytest_nonempty.sh -m lab lab/tests

MOLECULE_SCENARIOS ?= default data shard_ha
test-molecule: ## molecule test for each scenario in MOLECULE_SCENARIOS (create, converge, idempotence, verify, destroy)
	set -e; for s in $(MOLECULE_SCENARIOS); do echo "== molecule scenario $$s"; $(BIN)/molecule test -s $$s; done

bench-hybrid-search: ## shard hybrid search on 200k+ messages: p50/p95/p99, recall@20, partition pruning (JSON)
	$(BIN)/python bench/hybrid_search.py

bench-dialogue: ## orchestrator turn: ContextPack p50/p95 (instant + spec latencies), run_turn p95 with a 1 s LLM, decrypt p95, recall@15 + memory caps (JSON; BENCH_DIALOGUE_ARGS)
	$(BIN)/python bench/dialogue.py $(BENCH_DIALOGUE_ARGS)

test-lab-full: ## make lab on all hosts, a second converge that changes nothing, every host running; then lab down
	bash tools/lab_ci.sh

test: setup lint syntax-check validate test-python test-lab test-molecule ## everything CI runs (fresh Debian machine); longer drills: make test-slow

lab: setup ## the main job: boot every lab host and run site.yml against inventories/lab
	bash tools/lab_run.sh

-include lab/lab.mk
# Longer drills that do not fit CI's budget; each mk/ fragment adds its pieces as prerequisites
# (`test-slow: test-slow-<capability>`). Documented in README.md; run before a release.
.PHONY: test-slow
test-slow: setup ## long drills outside CI: the full lab twice, molecule backups/catalog/recognition/agents, the failover benchmark (fragments add theirs)
test-slow: test-lab-full molecule-backups molecule-catalog molecule-recognition molecule-agents

# One fragment per capability (bench-*, test-slow pieces); each names its own targets.
-include $(sort $(wildcard mk/*.mk))
