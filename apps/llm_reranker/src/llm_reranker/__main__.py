"""``python -m llm_reranker`` (or ``unde-llm-reranker``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

import os
from pathlib import Path

from llm_reranker.settings import LlmRerankerSettings
from unde_common.health import serve


def main() -> None:
    # several uvicorn workers: prometheus_client's multiprocess mode aggregates their metrics; the unit
    # points PROMETHEUS_MULTIPROC_DIR into its private /tmp, empty at every start
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp_dir:
        Path(mp_dir).mkdir(parents=True, exist_ok=True)
    serve("llm_reranker.app:create", LlmRerankerSettings.load())


if __name__ == "__main__":
    main()
