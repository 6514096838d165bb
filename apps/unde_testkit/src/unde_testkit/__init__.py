"""UNDE test kit: what the workspace's tests, the lab scenarios and the benchmarks share. No app
imports it and no deployed wheelhouse contains it (tests/test_wheelhouse_contents.py).

- :mod:`unde_testkit.testing` — real servers (PostgreSQL via pgserver, Redis, moto's S3, a loopback
  ASGI server), a provider simulator, settings/.env writers and the health/entry-point assertions
- :mod:`unde_testkit.pytest_plugin` — those servers as pytest fixtures (the ``pytest11`` entry point)
- :mod:`unde_testkit.apptests` — the checks every app's tests make, as suites a test module subclasses
- :mod:`unde_testkit.loaders` — the one place that loads a module from a file path (scripts outside
  any package: the SQL migration runner, role filter plugins, bench scripts)
- :mod:`unde_testkit.testing_sql` / :mod:`unde_testkit.catalog_testing` — databases with the
  repository's real migrations; catalog provider simulators
- :mod:`unde_testkit.recognition_simulators` / :mod:`unde_testkit.recognition_testbed` — the Ximilar
  and Gemini simulators and the recognition stack on loopback
- :mod:`unde_testkit.testmodel` — an ONNX model with FashionCLIP's signature
  (``python -m unde_testkit.testmodel <out.onnx>``)
"""

__version__ = "0.1.0"
