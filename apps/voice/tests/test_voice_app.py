"""The voice HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m voice`` entry point."""

from __future__ import annotations

from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests
from voice.app import create
from voice.settings import VoiceSettings


class TestService(ServiceAppTests):
    spec = ServiceAppSpec(
        app="voice",
        settings=VoiceSettings,
        create=create,
        dependencies={"redis": "REDIS_URL"},
        redis_db=10,
    )
