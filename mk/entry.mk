# The user entry: nginx + api_gateway on local-app, the voice server, the dialogue path behind them.

.PHONY: bench-entry test-entry molecule-entry test-slow-entry

bench-entry: ## gateway overhead p95, time to first audio p95 (streaming), 100 concurrent WS, failover replay drill; JSON (args: BENCH_ENTRY_ARGS)
	@.venv/bin/python bench/entry.py $(BENCH_ENTRY_ARGS)

test-entry: ## tests of the gateway and the voice server (real PostgreSQL, Redis, Celery worker with the orchestrator, S3, simulators)
	.venv/bin/pytest -q apps/api_gateway apps/voice tests/test_nginx_role.py

molecule-entry: ## molecule scenario entry (local-app, local-voice, the agents scenario's hosts, push; under the agents scenario lock: same hosts)
	flock /tmp/unde-lab-shard.lock env PATH=$(CURDIR)/.venv/bin:$$PATH molecule test -s entry

test-slow: test-slow-entry
test-slow-entry: molecule-entry ## the entry scenario (not in make test: it converges the agents scenario's hosts too)
