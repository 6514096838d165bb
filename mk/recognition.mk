# Recognition pipeline v5.1: recognition, ximilar-gw, llm-reranker, embedder, embed-batch.

.PHONY: bench-recognition test-recognition molecule-recognition

bench-recognition: ## embedder p50/p95 (ONNX test model), pgvector kNN p95 over 235,000 embeddings (HNSW), orchestrator overhead; JSON
	.venv/bin/python bench/recognition.py

test-recognition: ## tests of the five apps (real PostgreSQL + pgvector, Redis, S3, Celery worker, provider simulators)
	.venv/bin/pytest -q apps/recognition apps/ximilar_gw apps/llm_reranker apps/embedder apps/embed_batch

molecule-recognition: ## molecule scenario recognition (5 app hosts + push; production-db/staging-db under the DB-host lock)
	flock /tmp/unde-lab-dbhosts.lock env PATH=$(CURDIR)/.venv/bin:$$PATH molecule test -s recognition
