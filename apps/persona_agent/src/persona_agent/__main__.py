"""``python -m persona_agent`` (or ``unde-persona-agent``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from persona_agent.settings import PersonaAgentSettings
from unde_common.health import serve


def main() -> None:
    serve("persona_agent.app:create", PersonaAgentSettings.load())


if __name__ == "__main__":
    main()
