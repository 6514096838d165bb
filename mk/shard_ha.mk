# Shard high availability: etcd + Patroni + routing cache. See roles/patroni/README.md.
.PHONY: bench-failover molecule-shard_ha test-slow-shard-ha
bench-failover: ## kill the shard primary under >=100 inserts/s (lab, shard_ha converged): RTO, lost acked rows by id, rejoin (JSON)
	flock /tmp/unde-lab-shard.lock $(BIN)/python bench/failover.py

molecule-shard_ha: ## molecule scenario shard_ha: etcd + Patroni converge, idempotence, automatic failover under load, routing, partition
	flock /tmp/unde-lab-shard.lock $(BIN)/molecule test -s shard_ha

test-slow: test-slow-shard-ha
test-slow-shard-ha: ## the failover benchmark on a freshly converged shard_ha lab (the scenario itself runs in make test)
	flock /tmp/unde-lab-shard.lock sh -c 'set -e; trap "$(BIN)/molecule destroy -s shard_ha" EXIT; \
	  $(BIN)/molecule converge -s shard_ha; $(BIN)/python bench/failover.py'
