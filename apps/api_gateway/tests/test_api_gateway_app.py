"""The api_gateway HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m api_gateway`` entry point."""

from __future__ import annotations

from api_gateway.app import create
from api_gateway.settings import ApiGatewaySettings
from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests


class TestService(ServiceAppTests):
    spec = ServiceAppSpec(
        app="api_gateway",
        settings=ApiGatewaySettings,
        create=create,
        dependencies={
            "production_db": "PRODUCTION_DB_URL",
            "redis": "REDIS_URL",
            "shard_0_db": "SHARD_0_DB_URL",
        },
        redis_db=14,
    )
