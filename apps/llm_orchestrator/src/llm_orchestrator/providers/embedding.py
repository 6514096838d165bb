"""Cohere Embed for semantic retrieval: ``POST {embedding_base_url}/v2/embed``
(https://docs.cohere.com/reference/embed) with ``Authorization: Bearer``.

Request ``{"model", "texts", "input_type", "embedding_types": [<embedding_type>]}``; the v3 models
require ``input_type`` (400 "invalid request: valid input_type must be provided with the provided
model" without it: cohere-ai/cohere-python#614): stored messages and episodes are embedded as
``search_document`` (:meth:`CohereEmbedder.embed_documents`), what retrieval looks up as
``search_query`` (:meth:`CohereEmbedder.embed_query`). Answer ``{"id", "embeddings": {"float":
[[...], ...]}, "texts", "meta": {"billed_units": {"input_tokens"}}, "response_type":
"embeddings_by_type"}``. At most 96 texts per call (the API's limit; larger lists are split and the
batches sent concurrently); every vector's length is checked against ``embedding_dim`` (a model /
dimension mismatch would poison the pgvector column). An embed is harmless to repeat, so a 429,
5xx, timeout or connection error is retried (``idempotent=True``) within ``embedding_timeout`` for
the whole call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import SecretStr

from llm_orchestrator.providers.settings import EmbedInputType, ProviderSettings
from unde_common.http import AsyncProviderClient, ProviderConfig, ProviderError, RetryPolicy

__all__ = ["COHERE_MAX_TEXTS", "CohereEmbedder", "EmbeddingError", "build_embedder"]

#: texts per /v2/embed call (https://docs.cohere.com/reference/embed: "Maximum number of texts per
#: call is 96")
COHERE_MAX_TEXTS = 96


class EmbeddingError(RuntimeError):
    """The embedding call failed or answered something unusable (``kind``: ``provider`` — the call
    failed, see ``__cause__``; ``malformed``; ``dimension``)."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"cohere embed: {message}")


class CohereEmbedder:
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        model: str,
        *,
        dim: int,
        timeout_s: float,
        embedding_type: str = "float",
        batch_size: int = COHERE_MAX_TEXTS,
        document_input_type: EmbedInputType = "search_document",
        query_input_type: EmbedInputType = "search_query",
        max_attempts: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not 1 <= batch_size <= COHERE_MAX_TEXTS:
            raise ValueError(f"batch_size must be 1..{COHERE_MAX_TEXTS}")
        self.model = model
        self.dim = dim
        self.timeout_s = timeout_s
        self.embedding_type = embedding_type
        self.batch_size = batch_size
        self.document_input_type: EmbedInputType = document_input_type
        self.query_input_type: EmbedInputType = query_input_type
        self.http = AsyncProviderClient(
            ProviderConfig(
                name="cohere",
                base_url=base_url.rstrip("/"),
                connect_timeout_s=min(timeout_s, 1.0),
                read_timeout_s=timeout_s,
                write_timeout_s=timeout_s,
                pool_timeout_s=min(timeout_s, 0.5),
                retry=RetryPolicy(max_attempts=max_attempts, backoff_base_s=0.1, backoff_max_s=0.5),
                headers={"Authorization": f"Bearer {api_key.get_secret_value()}"},
                max_connections=20,
                deadline_s=timeout_s,
            ),
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> CohereEmbedder:
        return cls(
            str(settings.embedding_base_url),
            settings.embedding_api_key,
            settings.embedding_model,
            dim=settings.embedding_dim,
            timeout_s=settings.embedding_timeout,
            embedding_type=settings.embedding_type,
            batch_size=settings.embedding_batch_size,
            document_input_type=settings.embedding_input_type_document,
            query_input_type=settings.embedding_input_type_query,
        )

    async def embed(self, texts: list[str], input_type: EmbedInputType) -> list[list[float]]:
        """One vector per text, in order. Raises :class:`EmbeddingError`."""
        if not texts:
            return []
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        results = await asyncio.gather(*(self._embed_batch(b, input_type) for b in batches))
        return [vector for batch in results for vector in batch]

    async def embed_query(self, text: str) -> list[float]:
        return (await self.embed([text], self.query_input_type))[0]

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.embed(texts, self.document_input_type)

    async def _embed_batch(self, texts: list[str], input_type: EmbedInputType) -> list[list[float]]:
        body: dict[str, Any] = {
            "model": self.model,
            "texts": texts,
            "input_type": input_type,
            "embedding_types": [self.embedding_type],
        }
        try:
            data = await self.http.post_json("/v2/embed", json=body, idempotent=True)
        except ProviderError as exc:
            raise EmbeddingError("provider", str(exc)) from exc
        embeddings = data.get("embeddings") if isinstance(data, dict) else None
        vectors = embeddings.get(self.embedding_type) if isinstance(embeddings, dict) else None
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            count = len(vectors) if isinstance(vectors, list) else "no"
            raise EmbeddingError(
                "malformed",
                f"expected embeddings.{self.embedding_type} with {len(texts)} vectors, got {count}",
            )
        out: list[list[float]] = []
        for vector in vectors:
            if not isinstance(vector, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in vector
            ):
                raise EmbeddingError("malformed", "a vector is not a list of numbers")
            if len(vector) != self.dim:
                raise EmbeddingError(
                    "dimension",
                    f"model {self.model} answered {len(vector)}-dimensional vectors but EMBEDDING_DIM is "
                    f"{self.dim}: the model and the dimension setting (and the pgvector column) must agree",
                )
            out.append([float(x) for x in vector])
        return out

    async def aclose(self) -> None:
        await self.http.aclose()


def build_embedder(settings: ProviderSettings) -> CohereEmbedder:
    """The embedder of the settings (``embedding_provider`` is ``cohere``, the only one)."""
    return CohereEmbedder.from_settings(settings)
