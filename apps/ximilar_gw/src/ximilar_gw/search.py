"""v5.1 dual retrieval: pgvector kNN over ``unde_ai.sku_image_embeddings`` (query vector from the
embedder) and the Ximilar visual search, combined as ``SEARCH_BACKEND`` says (spec 01 §19b):

| backend | pgvector | Ximilar |
|---|---|---|
| ``ximilar`` | never | always (Phase 1; emergency rollback) |
| ``pgvector`` | always | never |
| ``conditional`` | always | the "booster", when pgvector is unsure (below) or failed, or asked to |

Unsure: top-1 < ``CONFIDENCE_THRESHOLD`` or top-1 - top-2 < ``MARGIN``; asked: ``force_booster``
(the orchestrator's re-query).
| ``dual`` | always | always |

Candidates are one per SKU (the best-scoring photo); when both sources return a SKU its score is
the higher one and ``sources`` lists both. If one source fails the other one's candidates are
returned with the failure named in ``degraded``; if every source that ran failed the search fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Backend = Literal["ximilar", "pgvector", "conditional", "dual"]

__all__ = ["Backend", "Candidate", "merge", "needs_booster"]


@dataclass
class Candidate:
    sku_id: str
    score: float
    brand: str | None = None
    image_urls: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "sku_id": self.sku_id,
            "score": round(self.score, 4),
            "brand": self.brand,
            "image_urls": self.image_urls,
            "metadata": self.metadata,
            "sources": self.sources,
        }


def needs_booster(scores: list[float], *, threshold: float, margin: float) -> bool:
    """Is the pgvector answer unsure? (no result, top-1 below threshold, or top-1 - top-2 < margin)"""
    if not scores:
        return True
    top = sorted(scores, reverse=True)
    if top[0] < threshold:
        return True
    return len(top) > 1 and top[0] - top[1] < margin


def merge(*lists: list[Candidate], top_k: int) -> list[Candidate]:
    """One candidate per SKU (highest score, sources united), best first, at most ``top_k``."""
    best: dict[str, Candidate] = {}
    for candidates in lists:
        for cand in candidates:
            have = best.get(cand.sku_id)
            if have is None:
                best[cand.sku_id] = Candidate(
                    cand.sku_id,
                    cand.score,
                    cand.brand,
                    list(cand.image_urls),
                    dict(cand.metadata),
                    list(cand.sources),
                )
                continue
            for src in cand.sources:
                if src not in have.sources:
                    have.sources.append(src)
            if cand.score > have.score:
                have.score = cand.score
            have.brand = have.brand or cand.brand
            have.image_urls = have.image_urls or list(cand.image_urls)
            have.metadata = {**cand.metadata, **have.metadata}
    return sorted(best.values(), key=lambda c: (-c.score, c.sku_id))[:top_k]
