"""UNDE shared library.

Modules (import what you need; ``health`` needs the ``web`` extra, ``worker`` the ``celery`` one):

- :mod:`unde_common.settings` — ``UndeSettings`` and role mixins on pydantic-settings
- :mod:`unde_common.logging` — ``configure_logging``: JSON lines
- :mod:`unde_common.metrics` — ``AppMetrics``: a Prometheus registry per app
- :mod:`unde_common.db` — psycopg 3 pools and their health check
- :mod:`unde_common.http` — provider HTTP clients with timeouts and retries
- :mod:`unde_common.health` — FastAPI app factory with /health and /metrics; uvicorn runner
- :mod:`unde_common.worker` — Celery app factory, schedule tables
- :mod:`unde_common.testing` — test servers (PostgreSQL via pgserver, Redis, loopback ASGI server,
  provider simulator) and :mod:`unde_common.pytest_plugin`, their pytest fixtures
"""

__version__ = "0.1.0"
