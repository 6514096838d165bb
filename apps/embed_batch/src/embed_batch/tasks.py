"""Celery tasks of embed_batch.

Names are ``embed_batch.<task>``; the bodies come with issue 7 (recognition pipeline v5.1).
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="embed_batch.embedding_batch_sync")
def embedding_batch_sync() -> None:
    """New SKUs → FashionCLIP → sku_image_embeddings."""
    raise NotImplementedError("embedding_batch_sync: implemented in issue 7 (recognition pipeline v5.1)")


@shared_task(name="embed_batch.embedding_progressive")
def embedding_progressive() -> None:
    """More photos for SKUs with low rerank scores."""
    raise NotImplementedError("embedding_progressive: implemented in issue 7 (recognition pipeline v5.1)")
