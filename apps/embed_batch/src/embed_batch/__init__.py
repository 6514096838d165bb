"""UNDE embed-batch.

Batch catalog indexing into pgvector sku_image_embeddings: POST /embed_batch, GET /status and Celery
workers.

Deployed by ``roles/embed_batch`` on embed-batch (10.1.0.17).
"""

__version__ = "0.1.0"
