# Shard high availability (issue 5): etcd + Patroni + routing cache. See roles/patroni/README.md.
.PHONY: bench-failover test-shard-ha test-slow-shard-ha
bench-failover: ## kill the shard primary under >=100 inserts/s (lab, shard_ha converged): RTO, lost acked rows by id, rejoin (JSON)
	flock /tmp/unde-lab-shard.lock $(BIN)/python bench/failover.py

test-shard-ha: ## molecule scenario shard_ha: etcd + Patroni converge, idempotence, automatic failover under load, routing, partition
	flock /tmp/unde-lab-shard.lock $(BIN)/molecule test -s shard_ha

test-slow: test-slow-shard-ha
test-slow-shard-ha: ## slow HA drills: the shard_ha scenario, then the failover benchmark on its lab
	flock /tmp/unde-lab-shard.lock $(BIN)/molecule test -s shard_ha
