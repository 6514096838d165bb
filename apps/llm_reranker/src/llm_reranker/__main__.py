"""``python -m llm_reranker`` (or ``unde-llm-reranker``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from llm_reranker.settings import LlmRerankerSettings
from unde_common.health import serve


def main() -> None:
    serve("llm_reranker.app:create", LlmRerankerSettings.load())


if __name__ == "__main__":
    main()
