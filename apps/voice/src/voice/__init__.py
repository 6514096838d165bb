"""UNDE voice.

Voice server: POST /synthesize (cached phrases) on the ``voice_http`` port and the WebSocket
/stream on the ``voice_ws`` port through ElevenLabs, one process for both (README.md).

Deployed by ``roles/voice`` on local-voice (10.2.0.12).
"""

__version__ = "0.1.0"
