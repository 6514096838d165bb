"""UNDE voice.

Voice server: POST /synthesize (cached phrases) on :8080 and WebSocket /stream on :8081 through
ElevenLabs.

Deployed by ``roles/voice`` on local-voice (10.2.0.12).
"""

__version__ = "0.1.0"
