"""``python -m mood_agent`` (or ``unde-mood-agent``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from mood_agent.settings import MoodAgentSettings
from unde_common.health import serve


def main() -> None:
    serve("mood_agent.app:create", MoodAgentSettings.load())


if __name__ == "__main__":
    main()
