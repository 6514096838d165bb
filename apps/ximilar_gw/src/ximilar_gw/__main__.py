"""``python -m ximilar_gw`` (or ``unde-ximilar-gw``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

import os
from pathlib import Path

from unde_common.health import serve
from ximilar_gw.settings import XimilarGwSettings


def main() -> None:
    # several uvicorn workers: prometheus_client's multiprocess mode aggregates their metrics; the unit
    # points PROMETHEUS_MULTIPROC_DIR into its private /tmp, empty at every start
    mp_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if mp_dir:
        Path(mp_dir).mkdir(parents=True, exist_ok=True)
    serve("ximilar_gw.app:create", XimilarGwSettings.load())


if __name__ == "__main__":
    main()
