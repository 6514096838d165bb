"""The ximilar_gw HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m ximilar_gw`` entry point."""

from __future__ import annotations

from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests
from ximilar_gw.app import create
from ximilar_gw.settings import XimilarGwSettings


class TestService(ServiceAppTests):
    spec = ServiceAppSpec(
        app="ximilar_gw",
        settings=XimilarGwSettings,
        create=create,
        dependencies={"production_db": "PRODUCTION_DB_URL", "redis": "REDIS_URL"},
        redis_db=6,
    )
