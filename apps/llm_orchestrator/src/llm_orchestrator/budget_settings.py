"""Settings of the ContextPack (token budgets per block, memory caps): a mixin of LlmOrchestratorSettings."""

from __future__ import annotations

from pydantic import Field

from unde_common.settings import UndeSettings


class ContextPackSettings(UndeSettings):
    """Token budgets per ContextPack block."""

    # retrieval
    retrieval_top_k: int = Field(default=15, ge=1)
    similarity_threshold: float = Field(default=0.5, ge=0, le=1)
    max_episodes_per_response: int = Field(default=3, ge=0)
    max_memory_density_rolling_10: float = Field(default=0.3, ge=0, le=1)

    context_pack_timeout: float = Field(default=3, gt=0)
