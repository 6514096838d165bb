"""The mood_agent HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m mood_agent`` entry point."""

from __future__ import annotations

from mood_agent.app import create
from mood_agent.settings import MoodAgentSettings
from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests


class TestService(ServiceAppTests):
    spec = ServiceAppSpec(
        app="mood_agent",
        settings=MoodAgentSettings,
        create=create,
        dependencies={"redis": "REDIS_URL"},
        redis_db=9,
    )
