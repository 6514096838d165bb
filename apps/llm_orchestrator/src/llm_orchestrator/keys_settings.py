"""Settings of the master key ring (user-knowledge envelope encryption): a LlmOrchestratorSettings mixin."""

from __future__ import annotations

from unde_common.settings import UndeSettings


class KeySettings(UndeSettings):
    """Where the master key ring is read from (tmpfs only)."""
