"""The voice HTTP app: /health with its dependency checks, /health/live, /metrics, and the
``python -m voice`` entry point (which serves the WebSocket port too: a free one here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from unde_testkit.apptests import ServiceAppSpec, ServiceAppTests
from unde_testkit.testing import EnvWriter, EnvWriterFactory, free_port
from voice.app import create
from voice.settings import VoiceSettings


class _WithWsPort(EnvWriter):
    """The env writer of these tests: every .env also names a free WebSocket port."""

    def __call__(self, values: Mapping[str, str] | None = None, *, required: bool = True) -> Path:
        return super().__call__({"VOICE_WS_PORT": str(free_port()), **(values or {})}, required=required)


class TestService(ServiceAppTests):
    spec = ServiceAppSpec(
        app="voice",
        settings=VoiceSettings,
        create=create,
        dependencies={"redis": "REDIS_URL"},
        redis_db=10,
    )

    @pytest.fixture
    def write_env(self, env_writer: EnvWriterFactory) -> EnvWriter:
        base = env_writer(VoiceSettings)
        return _WithWsPort(base.monkeypatch, base.tmp_path, VoiceSettings)
