# Dialogue agents: persona, mood and context agents.

.PHONY: bench-agents test-agents molecule-agents

bench-agents: ## p50/p95/p99 of /persona, /analyze, /context over HTTP (50 clients, bounded) + persona in-process, JSON (args: BENCH_AGENTS_ARGS)
	@.venv/bin/python bench/agents.py $(BENCH_AGENTS_ARGS)

test-agents: ## unit, golden, property and integration tests of the three agents
	.venv/bin/pytest -q apps/persona_agent apps/mood_agent apps/context_agent

molecule-agents: ## molecule scenario agents (local-persona, local-mood, local-context, local-redis, local-shard-0 under the shard lock)
	flock /tmp/unde-lab-shard.lock env PATH=$(CURDIR)/.venv/bin:$$PATH molecule test -s agents
