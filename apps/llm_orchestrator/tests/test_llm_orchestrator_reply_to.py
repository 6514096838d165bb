"""reply_to heuristic: explicit id, last artefact within 10 min, none when ambiguous."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from llm_orchestrator.reply_to import resolve_reply_to

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_last_artifact_within_ten_minutes() -> None:
    a, b = uuid4(), uuid4()
    assert resolve_reply_to(None, [(a, ago(500)), (b, ago(120))], NOW) == b
    assert resolve_reply_to(None, [(b, ago(120)), (a, ago(500))], NOW) == b  # any order
    assert resolve_reply_to(None, [(a, ago(601))], NOW) is None
    assert resolve_reply_to(None, [(a, ago(600))], NOW) == a
    assert resolve_reply_to(None, [], NOW) is None


def test_two_artifacts_within_sixty_seconds_are_ambiguous() -> None:
    a, b = uuid4(), uuid4()
    assert resolve_reply_to(None, [(a, ago(100)), (b, ago(70))], NOW) is None
    assert resolve_reply_to(None, [(a, ago(100)), (b, ago(40))], NOW) == b  # exactly 60 s apart
    # the older one outside the window still makes it ambiguous
    assert resolve_reply_to(None, [(a, ago(630)), (b, ago(590))], NOW) is None


def test_explicit_id_wins_when_known() -> None:
    a, b, old, foreign = uuid4(), uuid4(), uuid4(), uuid4()
    artifacts = [(a, ago(100)), (b, ago(70))]
    assert resolve_reply_to(a, artifacts, NOW) == a  # even when the heuristic would give None
    assert resolve_reply_to(old, artifacts, NOW, known_artifacts=[old]) == old
    assert resolve_reply_to(foreign, [(a, ago(100))], NOW) == a  # unknown: the heuristic decides
    assert resolve_reply_to(foreign, [], NOW) is None


def test_clock_skew_counts_as_now() -> None:
    a = uuid4()
    assert resolve_reply_to(None, [(a, NOW + timedelta(seconds=5))], NOW) == a
