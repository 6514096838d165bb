"""Fixtures of the gateway's tests: the recognition test bed (real PostgreSQL with the catalog,
Redis, the Ximilar/Gemini simulators, the embedder on an ONNX test model), one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from unde_testkit.recognition_testbed import Stack, recognition_bed
from unde_testkit.testing import PostgresHandle


@pytest.fixture(scope="module")
def bed(pg: PostgresHandle, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with recognition_bed(pg.dsn, redis_url, tmp_path_factory.mktemp("bed")) as stack:
        yield stack


@pytest.fixture
def sims(bed: Stack) -> Iterator[Stack]:
    """The bed with the Ximilar simulator's records and faults cleared before and after the test."""
    bed.ximilar.clear()
    yield bed
    bed.ximilar.clear()
