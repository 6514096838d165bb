"""``python -m embed_batch`` (or ``unde-embed-batch``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from embed_batch.settings import EmbedBatchSettings
from unde_common.health import serve


def main() -> None:
    serve("embed_batch.app:create", EmbedBatchSettings.load())


if __name__ == "__main__":
    main()
