"""UNDE shared library.

Modules (import what you need; ``health`` needs the ``web`` extra, ``worker`` the ``celery`` one,
``images`` the ``images`` one, ``s3`` the ``s3`` one):

- :mod:`unde_common.settings` — ``UndeSettings`` and role mixins on pydantic-settings
- :mod:`unde_common.logging` — ``configure_logging``: JSON lines
- :mod:`unde_common.metrics` — ``AppMetrics``: a Prometheus registry per app
- :mod:`unde_common.db` — psycopg 3 pools and their health check
- :mod:`unde_common.http` — provider HTTP clients with timeouts and retries
- :mod:`unde_common.health` — FastAPI app factory with /health and /metrics; uvicorn runner
- :mod:`unde_common.worker` — Celery app factory, schedule tables, worker runtimes
- :mod:`unde_common.catalog` — the claim loop of the catalog pipeline's stages
- :mod:`unde_common.images` — fetching, decoding and cropping images (``#xywh=`` regions)
- :mod:`unde_common.s3` — Object Storage (S3 API) client and public URLs

Test servers, simulators and the pytest fixtures live in the separate ``unde-testkit`` package.
"""

__version__ = "0.1.0"
