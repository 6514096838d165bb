"""``python -m voice`` (or ``unde-voice``): serve the HTTP app with uvicorn on HOST:PORT."""

from __future__ import annotations

from unde_common.health import serve
from voice.settings import VoiceSettings


def main() -> None:
    serve("voice.app:create", VoiceSettings.load())


if __name__ == "__main__":
    main()
