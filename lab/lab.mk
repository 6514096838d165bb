# UNDE lab: booted Debian test hosts under systemd-nspawn (see lab/README.md).
# Included by the top-level Makefile; needs root. PATH already has .venv/bin.
LABCTL := $(CURDIR)/.venv/bin/python lab/labctl
HOSTS ?=
HOST ?=
ACTION ?=
BENCH_ARGS ?=

.PHONY: lab-up lab-down lab-status lab-ssh lab-fault bench-lab

lab-up: ## boot lab hosts (HOSTS="h1 h2", default all); builds the trixie base root on first use
	$(LABCTL) up $(HOSTS)

lab-down: ## power off lab hosts (HOSTS=..., default all + bridges/nft); PURGE=1 also deletes their disks
	$(LABCTL) down $(if $(PURGE),--purge) $(HOSTS)

lab-status: ## show every lab host: state, address, site, pid, ssh, faults
	@$(LABCTL) status

lab-ssh: ## ssh into a lab host as root: make lab-ssh HOST=etcd-3
	@test -n "$(HOST)" || { echo "usage: make lab-ssh HOST=<host>" >&2; exit 2; }
	$(LABCTL) ssh $(HOST)

lab-fault: ## inject/heal a fault: make lab-fault HOST=h ACTION=kill|freeze|thaw|partition|heal (HOST=all with heal)
	@test -n "$(HOST)" -a -n "$(ACTION)" || { echo "usage: make lab-fault HOST=<host> ACTION=kill|freeze|thaw|partition|heal" >&2; exit 2; }
	$(LABCTL) fault $(HOST) $(ACTION)

bench-lab: ## boot the full lab, print boot time and memory per host as JSON (BENCH_ARGS="--converge ...")
	$(CURDIR)/.venv/bin/python lab/bench_lab.py $(BENCH_ARGS)
