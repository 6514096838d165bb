"""Settings of the replay, forget and profile routes: a mixin of ApiGatewaySettings."""

from __future__ import annotations

from unde_common.settings import UndeSettings


class AccountSettings(UndeSettings):
    """verify-and-replay limits, forget, profile."""
