"""``python -m voice`` (or ``unde-voice``): serve the HTTP and WebSocket ports (voice.server)."""

from __future__ import annotations

from voice.server import main

if __name__ == "__main__":
    main()
