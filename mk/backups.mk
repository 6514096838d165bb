# Backups (backup half): pgBackRest role, lab stand-ins, restore/verify/apply_deletions runbooks.

.PHONY: test-backups molecule-backups lab-standins

test-backups: ## backup runner, GFS retention, metrics, apply_deletions/row-count SQL against real PostgreSQL
	.venv/bin/pytest -q tests/backups

molecule-backups: ## molecule scenario backups (staging-db, production-db, lab-objstore, lab-storagebox; under the DB-host lock)
	flock /tmp/unde-lab-dbhosts.lock env PATH=$(CURDIR)/.venv/bin:$$PATH molecule test -s backups

lab-standins: ## LAB ONLY: boot and converge the Object Storage / Storage Box stand-ins (lab-objstore, lab-storagebox)
	.venv/bin/python lab/labctl up lab-objstore lab-storagebox
	ANSIBLE_VAULT_IDENTITY_LIST=lab@inventories/lab/vault-password.txt .venv/bin/ansible-playbook -i inventories/lab playbooks/lab_standins.yml
