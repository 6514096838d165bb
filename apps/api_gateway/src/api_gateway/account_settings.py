"""Settings of the replay, forget and profile routes: a mixin of ApiGatewaySettings."""

from __future__ import annotations

from pydantic import Field

from unde_common.settings import UndeSettings


class AccountSettings(UndeSettings):
    """verify-and-replay limits, forget, profile."""

    #: pairs one verify-and-replay request may carry (the app's buffer holds its last 10 pairs);
    #: the orchestrator's own limit is 50
    replay_max_pairs: int = Field(default=20, ge=1, le=50)
    #: confirmed message ids one request may name (the spec's safety net: the last 3 pairs)
    replay_max_confirmed_ids: int = Field(default=20, ge=0, le=50)
    #: the longest a replay, forget or profile request waits for the orchestrator (503 + Retry-After
    #: past it: every one of these calls is idempotent, the app repeats it)
    account_deadline_s: float = Field(default=15.0, gt=0, le=120)
    #: the account erase may take longer (every message of the user is tombstoned first)
    erase_deadline_s: float = Field(default=60.0, gt=0, le=300)
