"""``python -m voice`` / ``unde-voice``: one process serving both ports.

uvicorn serves the HTTP app (:func:`voice.app.create`: /synthesize, /health, /metrics) on
``HOST:VOICE_HTTP_PORT`` and the WebSocket app (:func:`voice.stream.create_ws`) on
``HOST:VOICE_WS_PORT``, two ``uvicorn.Server`` in one event loop sharing one :class:`Runtime`: the
WebSocket connection limit is exact, the ElevenLabs concurrency cap holds for the whole host and
/metrics shows the streams. SIGTERM/SIGINT stop both (open streams get uvicorn's graceful close).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from unde_common.logging import configure_logging
from voice.app import create
from voice.runtime import Runtime
from voice.settings import VoiceSettings
from voice.stream import create_ws

__all__ = ["WS_MAX_MESSAGE_BYTES", "main", "serve"]

log = logging.getLogger(__name__)

#: the largest WebSocket message accepted (two texts of MAX_TEXT_CHARS in UTF-8 and the params)
WS_MAX_MESSAGE_BYTES = 64 * 1024


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the signals to :func:`serve` (two servers share them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: object, settings: VoiceSettings, port: int, **extra: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        **extra,  # type: ignore[arg-type]
    )


async def serve(settings: VoiceSettings) -> None:
    """Serve both ports until SIGTERM/SIGINT."""
    runtime = Runtime.create(settings)
    http = _Server(_config(create(settings, runtime=runtime), settings, settings.port, lifespan="on"))
    ws = _Server(
        _config(
            create_ws(runtime),
            settings,
            settings.ws_port,
            lifespan="off",
            ws_max_size=max(WS_MAX_MESSAGE_BYTES, settings.max_text_chars * 8),
        )
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        http.should_exit = True
        ws.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        results = await asyncio.gather(http.serve(), ws.serve(), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if not (http.started and ws.started):  # one could not bind: stop the other too
            raise SystemExit(3)
    finally:
        await runtime.aclose()


def main() -> None:
    settings = VoiceSettings.load()
    configure_logging(settings.app_name, settings.log_level)
    asyncio.run(serve(settings))
