"""The api_gateway HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m api_gateway`` entry point."""

from __future__ import annotations

import pytest

from api_gateway.app import create
from api_gateway.settings import ApiGatewaySettings
from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests
from unde_testkit.gateway_testbed import jwt_test_keys
from unde_testkit.testing import EnvWriter, EnvWriterFactory


class TestService(ServiceAppTests):
    @pytest.fixture
    def write_env(self, env_writer: EnvWriterFactory) -> EnvWriter:
        writer = env_writer(ApiGatewaySettings)
        writer.required["JWT_SIGNING_KEYS"] = jwt_test_keys()[
            "JWT_SIGNING_KEYS"
        ]  # a real key, not a placeholder
        return writer

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
