"""The persona_agent HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m persona_agent`` entry point."""

from __future__ import annotations

from persona_agent.app import create
from persona_agent.settings import PersonaAgentSettings
from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests


class TestService(ServiceAppTests):
    spec = ServiceAppSpec(
        app="persona_agent",
        settings=PersonaAgentSettings,
        create=create,
        dependencies={"redis": "REDIS_URL", "shard_0_db": "SHARD_0_DB_URL"},
        redis_db=13,
    )
