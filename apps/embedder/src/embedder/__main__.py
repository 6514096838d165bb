"""``python -m embedder`` (or ``unde-embedder``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from embedder.settings import EmbedderSettings
from unde_common.health import serve


def main() -> None:
    serve("embedder.app:create", EmbedderSettings.load())


if __name__ == "__main__":
    main()
