"""reply_to_id of a user message (spec 02 §13/§14): which assistant artefact the user reacts to.

Rules, in order:

1. an explicit id from the client wins when it is one of this conversation's artefacts (any age:
   the user tapped it); an unknown explicit id is ignored (it may be stale client state or another
   conversation's) and the heuristic below decides;
2. otherwise the newest artefact sent within ``window_s`` (600 s) before ``now``;
3. but none (NULL, "the LLM will ask") when the newest artefact and the one before it were sent
   less than ``ambiguity_s`` (60 s) apart — the older one is considered even when it is outside the
   window, since the user saw both;
4. no artefacts → None. A timestamp after ``now`` (clock skew) counts as age 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

__all__ = ["resolve_reply_to"]


def resolve_reply_to(
    explicit: UUID | None,
    recent_artifacts: Iterable[tuple[UUID, datetime]],
    now: datetime,
    *,
    window_s: float = 600,
    ambiguity_s: float = 60,
    known_artifacts: Iterable[UUID] = (),
) -> UUID | None:
    """The reply_to_id to store with the user message (see the module docstring).

    ``recent_artifacts``: (message id, created_at) of the conversation's assistant artefacts, any
    order; ``known_artifacts``: further artefact ids of the conversation that make an explicit id
    valid (older than what ``recent_artifacts`` holds).
    """
    artifacts = sorted(recent_artifacts, key=lambda a: a[1], reverse=True)
    if explicit is not None and (
        any(a[0] == explicit for a in artifacts) or explicit in set(known_artifacts)
    ):
        return explicit
    if not artifacts:
        return None
    newest_id, newest_at = artifacts[0]
    age = max(timedelta(0), now - newest_at)
    if age > timedelta(seconds=window_s):
        return None
    if len(artifacts) > 1 and newest_at - artifacts[1][1] < timedelta(seconds=ambiguity_s):
        return None
    return newest_id
