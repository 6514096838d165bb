"""The embed_batch HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m embed_batch`` entry point."""

from __future__ import annotations

from embed_batch.app import create
from embed_batch.settings import EmbedBatchSettings
from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests


class TestService(ServiceAppTests):
    spec = ServiceAppSpec(
        app="embed_batch",
        settings=EmbedBatchSettings,
        create=create,
        dependencies={"production_db": "PRODUCTION_DB_URL", "redis": "REDIS_URL"},
        redis_db=7,
    )
