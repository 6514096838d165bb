# Catalog pipeline: apify, photo_downloader, ximilar_sync, collage, scraper.

.PHONY: test-catalog molecule-catalog bench-catalog

test-catalog: ## tests of the five catalog apps (real PostgreSQL, Redis, S3, Celery; provider simulators; day-6 e2e)
	.venv/bin/pytest -q apps/apify apps/photo_downloader apps/ximilar_sync apps/collage apps/scraper apps/unde_common/tests/test_common_s3.py

molecule-catalog: ## molecule scenario catalog (5 app hosts + push; push shared with recognition: under the DB-host lock)
	flock /tmp/unde-lab-dbhosts.lock env PATH=$(CURDIR)/.venv/bin:$$PATH molecule test -s catalog

bench-catalog: ## photos downloaded+uploaded/s, collages/s, memory peak per worker, weekly cycle vs schedule window; JSON
	@.venv/bin/python bench/catalog.py
