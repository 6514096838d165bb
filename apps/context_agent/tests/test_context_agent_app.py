"""The context_agent HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m context_agent`` entry point."""

from __future__ import annotations

from context_agent.app import create
from context_agent.settings import ContextAgentSettings
from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests


class TestService(ServiceAppTests):
    spec = ServiceAppSpec(
        app="context_agent",
        settings=ContextAgentSettings,
        create=create,
        dependencies={"production_db": "PRODUCTION_DB_URL", "redis": "REDIS_URL"},
        redis_db=15,
    )
