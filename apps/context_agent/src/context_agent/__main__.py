"""``python -m context_agent`` (or ``unde-context-agent``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from context_agent.settings import ContextAgentSettings
from unde_common.health import serve


def main() -> None:
    serve("context_agent.app:create", ContextAgentSettings.load())


if __name__ == "__main__":
    main()
