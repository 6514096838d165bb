"""The WebSocket /stream of a real ``python -m voice`` process (both ports, uvicorn) against the
ElevenLabs simulator and a real Redis: the chunks concatenate to the simulator's audio, ElevenLabs
down or timing out → an error frame and close 1011 while cached phrases are still served, the
connection limit closes with 1013, bad messages and tokens are refused with their close codes."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from unde_testkit.elevenlabs_simulator import (
    ELEVENLABS_KEY,
    ELEVENLABS_VOICE,
    ElevenLabsSimulator,
    expected_audio,
)
from unde_testkit.service_auth import ServiceTokenAuth, monitoring_headers
from unde_testkit.testing import free_port, running_service
from voice.runtime import Runtime
from voice.settings import VoiceSettings
from voice.stream import create_ws

pytestmark = pytest.mark.timeout(120)

PARAMS = {"warmth": 0.8, "tempo": 1.0, "tension": 0.1, "expressiveness": "moderate"}
TEXT = "Я нашла для тебя отличный образ на вечер: тёмно-синее платье и лёгкий жакет."
CHUNK = 1024
MAX_CONNECTIONS = 3


@dataclass(frozen=True)
class Voice:
    """A running voice process: its HTTP and WebSocket base URLs."""

    http: str
    ws: str

    def stream_url(self) -> str:
        return f"{self.ws}/stream"


@dataclass
class Streamed:
    """What one stream request got: the binary chunks, the final text frame, the close code."""

    chunks: list[bytes]
    final: dict[str, Any] | None
    close_code: int | None = None

    @property
    def audio(self) -> bytes:
        return b"".join(self.chunks)


def close_code(ws: ClientConnection, timeout_s: float = 10.0) -> int | None:
    """Wait for the server's close frame; its code."""
    try:
        while True:
            ws.recv(timeout=timeout_s)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


def receive(ws: ClientConnection, timeout_s: float = 10.0) -> Streamed:
    """Binary frames until the first text frame (end or error; after an error, the close code)."""
    chunks: list[bytes] = []
    try:
        while True:
            frame = ws.recv(timeout=timeout_s)
            if isinstance(frame, bytes):
                chunks.append(frame)
                continue
            final = json.loads(frame)
            return Streamed(chunks, final, close_code(ws) if final.get("type") == "error" else None)
    except ConnectionClosed as exc:
        return Streamed(chunks, None, exc.rcvd.code if exc.rcvd else None)


def request(text: str = TEXT, params: dict[str, Any] | None = None, previous: str | None = "Привет!") -> str:
    return json.dumps(
        {"text": text, "voice_params": params or PARAMS, "previous_text": previous, "stream": True}
    )


def _wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def start_voice(
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    jwt_public_keys: str,
) -> Iterator[Callable[..., Voice]]:
    """``start_voice(elevenlabs_url, **env)``: a ``python -m voice`` process for this module."""
    with _Processes(tmp_path_factory.mktemp("voice")) as procs:

        def start(url: str, **env: str) -> Voice:
            http_port, ws_port = free_port(), free_port()
            values = {
                "ELEVENLABS_API_KEY": ELEVENLABS_KEY,
                "ELEVENLABS_VOICE_ID": ELEVENLABS_VOICE,
                "ELEVENLABS_BASE_URL": url,
                "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/10",
                "JWT_PUBLIC_KEYS": jwt_public_keys,
                "HOST": "127.0.0.1",
                "VOICE_HTTP_PORT": str(http_port),
                "VOICE_WS_PORT": str(ws_port),
                "AUDIO_CHUNK_SIZE": str(CHUNK),
                "STREAM_BUFFER_MS": "0",
                "ELEVENLABS_TIMEOUT": "1.5",
                "WS_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                **env,
            }
            procs.start(values, http_port)
            _wait_for_port(ws_port)
            return Voice(f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{ws_port}")

        yield start


class _Processes:
    """The voice processes a module started; stopped at its end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stack: list[Any] = []

    def start(self, values: dict[str, str], http_port: int) -> None:
        n = len(self.stack)
        env_file = self.workdir / f"voice{n}.env"
        env_file.write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in values.items()))
        context = running_service(
            [sys.executable, "-m", "voice"],
            env_file,
            f"http://127.0.0.1:{http_port}/health/live",
            self.workdir / f"voice{n}.log",
        )
        context.__enter__()
        self.stack.append(context)

    def __enter__(self) -> _Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        for context in reversed(self.stack):
            context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def voice_up(start_voice: Callable[..., Voice], elevenlabs_server: tuple[ElevenLabsSimulator, str]) -> Voice:
    return start_voice(elevenlabs_server[1])


@pytest.fixture(scope="module")
def voice_down(start_voice: Callable[..., Voice]) -> Voice:
    """A voice whose ElevenLabs is down (nobody listens there), sharing the phrase cache."""
    return start_voice(f"http://127.0.0.1:{free_port()}")


@pytest.fixture(autouse=True)
def _clean(voice_redis: str, simulator: ElevenLabsSimulator) -> None:
    """Every test starts with an empty phrase cache and a fresh simulator."""


@pytest.fixture
def headers(user_token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token()}"}


def ws(voice: Voice, headers: dict[str, str] | None) -> ClientConnection:
    return connect(
        voice.stream_url(), additional_headers=headers, proxy=None, open_timeout=10, compression=None
    )


def metric(voice: Voice, sample: str) -> float:
    """The value of ``sample`` (``name`` or ``name{label="value"}``) on the process's /metrics."""
    text = httpx.get(f"{voice.http}/metrics", headers=monitoring_headers(), timeout=5).text
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not exported")


def settle(voice: Voice) -> None:
    """Wait until the streams of earlier tests are closed on the server side too."""
    deadline = time.monotonic() + 10
    while metric(voice, "voice_ws_connections") > 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_chunks_concatenate_to_the_simulators_audio(
    voice_up: Voice, simulator: ElevenLabsSimulator, headers: dict[str, str]
) -> None:
    expected = expected_audio(TEXT)
    assert len(expected) > 3 * CHUNK
    with ws(voice_up, headers) as conn:
        conn.send(request())
        got = receive(conn)
        assert got.audio == expected
        assert [len(c) for c in got.chunks[:-1]] == [CHUNK] * (len(got.chunks) - 1)
        assert 0 < len(got.chunks[-1]) <= CHUNK
        assert got.final == {"type": "end", "bytes": len(expected), "cached": False}
        conn.send(request("Второе предложение.", previous=TEXT))  # the next sentence, same connection
        second = receive(conn)
        assert second.audio == expected_audio("Второе предложение.")
    first, then = simulator.requests
    assert first["json"]["previous_text"] == "Привет!"
    assert then["json"]["previous_text"] == TEXT
    assert first["json"]["voice_settings"]["stability"] == pytest.approx(0.64)


def test_low_expressiveness_speaks_without_context(
    voice_up: Voice, simulator: ElevenLabsSimulator, headers: dict[str, str]
) -> None:
    with ws(voice_up, headers) as conn:
        conn.send(request(params={**PARAMS, "expressiveness": "low"}))
        assert receive(conn).final == {"type": "end", "bytes": len(expected_audio(TEXT)), "cached": False}
    assert "previous_text" not in simulator.requests[0]["json"]


def test_elevenlabs_down_sends_an_error_frame_and_closes_1011(
    voice_down: Voice, headers: dict[str, str]
) -> None:
    with ws(voice_down, headers) as conn:
        conn.send(request())
        got = receive(conn)
    assert got.chunks == []
    assert got.final is not None
    assert (got.final["type"], got.final["code"]) == ("error", "tts_unavailable")
    assert got.final["detail"]
    assert got.close_code == 1011


def test_cached_phrases_are_served_while_elevenlabs_is_down(
    voice_up: Voice, voice_down: Voice, headers: dict[str, str]
) -> None:
    greeting = "Привет! Рада тебя видеть!"
    synthesized = httpx.post(
        f"{voice_up.http}/synthesize",
        json={"text": greeting, "voice_params": PARAMS},
        auth=ServiceTokenAuth(),
    )
    assert synthesized.status_code == 200, synthesized.text
    with ws(voice_down, headers) as conn:
        conn.send(request(greeting))
        got = receive(conn)
    assert got.audio == expected_audio(greeting)
    assert got.final == {"type": "end", "bytes": len(got.audio), "cached": True}


def test_a_phrase_streamed_again_is_cached(
    voice_up: Voice, voice_down: Voice, headers: dict[str, str]
) -> None:
    phrase = "Отличный выбор!"
    with ws(voice_up, headers) as conn:
        for _ in range(2):  # PHRASE_CACHE_MIN_HITS: stored from its second request on
            conn.send(request(phrase))
            assert receive(conn).final == {
                "type": "end",
                "bytes": len(expected_audio(phrase)),
                "cached": False,
            }
    with ws(voice_down, headers) as conn:
        conn.send(request(phrase))
        got = receive(conn)
    assert (got.audio, got.final and got.final["cached"]) == (expected_audio(phrase), True)


def test_a_phrase_streamed_once_is_not_cached(
    voice_up: Voice, voice_down: Voice, headers: dict[str, str]
) -> None:
    with ws(voice_up, headers) as conn:
        conn.send(request("Один раз."))
        receive(conn)
    with ws(voice_down, headers) as conn:
        conn.send(request("Один раз."))
        assert receive(conn).close_code == 1011


def test_elevenlabs_timing_out_closes_1011(
    voice_up: Voice, simulator: ElevenLabsSimulator, headers: dict[str, str]
) -> None:
    simulator.mode = "timeout"
    with ws(voice_up, headers) as conn:
        conn.send(request())
        got = receive(conn)
    assert got.final is not None and got.final["code"] == "tts_timeout"
    assert got.close_code == 1011


def test_a_stall_mid_stream_keeps_the_audio_sent_and_closes_1011(
    voice_up: Voice, simulator: ElevenLabsSimulator, headers: dict[str, str]
) -> None:
    simulator.mode = "stall"
    with ws(voice_up, headers) as conn:
        conn.send(request())
        got = receive(conn)
    assert got.chunks, "the first piece was sent before the stall"
    assert expected_audio(TEXT).startswith(got.audio)
    assert got.final is not None and got.final["code"] == "tts_timeout"
    assert got.close_code == 1011


@pytest.mark.parametrize(
    ("mode", "code"), [("rate_limited", "tts_rate_limited"), ("malformed", "tts_malformed")]
)
def test_elevenlabs_refusals_close_1011(
    voice_up: Voice, simulator: ElevenLabsSimulator, headers: dict[str, str], mode: str, code: str
) -> None:
    simulator.mode = mode
    with ws(voice_up, headers) as conn:
        conn.send(request())
        got = receive(conn)
    assert (got.final and got.final["code"], got.close_code) == (code, 1011)


def test_past_the_connection_limit_the_close_code_is_1013(voice_up: Voice, headers: dict[str, str]) -> None:
    settle(voice_up)
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(ws(voice_up, headers)) for _ in range(MAX_CONNECTIONS)]
        for conn in held:  # each one streamed: each one counted
            conn.send(request("Раз."))
            assert receive(conn).final is not None
        assert metric(voice_up, "voice_ws_connections") == MAX_CONNECTIONS
        with ws(voice_up, headers) as extra:
            got = receive(extra)
        assert got.final is not None and got.final["code"] == "too_many_connections"
        assert got.close_code == 1013
    settle(voice_up)
    with ws(voice_up, headers) as conn:
        conn.send(request("Снова можно."))
        assert receive(conn).final == {
            "type": "end",
            "bytes": len(expected_audio("Снова можно.")),
            "cached": False,
        }
    assert metric(voice_up, 'voice_ws_refused_total{reason="too_many_connections"}') >= 1


@pytest.mark.parametrize(
    ("message", "code", "close"),
    [
        ("not json", "invalid_message", 1007),
        (b"\x00\x01binary", "invalid_message", 1007),
        ("[1, 2]", "invalid_message", 1008),
        (json.dumps({"voice_params": PARAMS}), "invalid_message", 1008),
        (json.dumps({"text": "   ", "voice_params": PARAMS}), "invalid_message", 1008),
        (json.dumps({"text": "x" * 5001, "voice_params": PARAMS}), "invalid_message", 1008),
        (json.dumps({"text": "hi", "voice_params": PARAMS, "previous_text": 3}), "invalid_message", 1008),
        (json.dumps({"text": "hi", "voice_params": {"warmth": 0.5}}), "invalid_voice_params", 1008),
        (json.dumps({"text": "hi"}), "invalid_voice_params", 1008),
    ],
)
def test_invalid_messages_get_an_error_frame_and_a_close_code(
    voice_up: Voice,
    simulator: ElevenLabsSimulator,
    headers: dict[str, str],
    message: str | bytes,
    code: str,
    close: int,
) -> None:
    with ws(voice_up, headers) as conn:
        conn.send(message)
        got = receive(conn)
    assert got.final is not None and (got.final["type"], got.final["code"]) == ("error", code)
    assert got.close_code == close
    assert simulator.requests == []


@pytest.mark.parametrize(
    "token_kind",
    ["none", "not_bearer", "garbage", "expired", "refresh", "other_key", "unknown_kid", "wrong_audience"],
)
def test_streams_need_the_gateways_access_token(
    voice_up: Voice, simulator: ElevenLabsSimulator, user_token: Callable[..., str], token_kind: str
) -> None:
    tokens: dict[str, dict[str, str] | None] = {
        "none": None,
        "not_bearer": {"Authorization": f"Basic {user_token()}"},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "expired": {"Authorization": f"Bearer {user_token(ttl_s=-3600)}"},
        "refresh": {"Authorization": f"Bearer {user_token(typ='refresh')}"},
        "other_key": {"Authorization": f"Bearer {user_token(key=Ed25519PrivateKey.generate())}"},
        "unknown_kid": {"Authorization": f"Bearer {user_token(kid='rotated-away')}"},
        "wrong_audience": {"Authorization": f"Bearer {user_token(aud='someone-else')}"},
    }
    with ws(voice_up, tokens[token_kind]) as conn:
        got = receive(conn)
    assert got.final is not None and got.final["code"] == "unauthorized"
    assert got.close_code == 1008
    assert simulator.requests == []


@pytest.mark.parametrize(
    ("pieces", "delay_s", "buffer_ms"),
    [(5, 0.4, 20), (10, 0.08, 150)],
    ids=["pauses longer than the buffer", "a trickle of pieces closer than the buffer"],
)
def test_a_partial_chunk_is_sent_after_the_stream_buffer_time(
    elevenlabs_url: str,
    simulator: ElevenLabsSimulator,
    voice_redis: str,
    pieces: int,
    delay_s: float,
    buffer_ms: int,
) -> None:
    """In-process (the same app uvicorn serves): with chunks larger than the whole audio, audio that
    waited STREAM_BUFFER_MS since its first byte goes out instead of waiting for the whole chunk."""
    simulator.chunk_delay_s = delay_s
    simulator.chunks = pieces
    settings = VoiceSettings.load(
        elevenlabs_api_key=ELEVENLABS_KEY,
        elevenlabs_voice_id=ELEVENLABS_VOICE,
        elevenlabs_base_url=elevenlabs_url,
        redis_url=voice_redis,
        audio_chunk_size=1024 * 1024,
        stream_buffer_ms=buffer_ms,
        ws_require_user_token=False,
    )
    runtime = Runtime.create(settings)
    with TestClient(create_ws(runtime)) as client, client.websocket_connect("/stream") as conn:
        conn.send_text(request())
        frames: list[bytes] = []
        while True:
            message = conn.receive()
            if message.get("bytes") is not None:
                frames.append(message["bytes"])
            else:
                final = json.loads(message["text"])
                break
        assert client.portal is not None
        client.portal.call(runtime.aclose)
    assert final["type"] == "end"
    assert b"".join(frames) == expected_audio(TEXT)
    assert len(frames) > 1


def test_an_idle_stream_is_closed(elevenlabs_url: str, voice_redis: str) -> None:
    settings = VoiceSettings.load(
        elevenlabs_api_key=ELEVENLABS_KEY,
        elevenlabs_voice_id=ELEVENLABS_VOICE,
        elevenlabs_base_url=elevenlabs_url,
        redis_url=voice_redis,
        ws_idle_timeout_s=0.2,
        ws_require_user_token=False,
    )
    runtime = Runtime.create(settings)
    with TestClient(create_ws(runtime)) as client:
        with client.websocket_connect("/stream") as conn:
            message = conn.receive()
        assert (message["type"], message.get("code")) == ("websocket.close", 1000)
        assert client.portal is not None
        client.portal.call(runtime.aclose)


def test_a_lone_surrogate_is_invalid_data(
    voice_up: Voice, simulator: ElevenLabsSimulator, headers: dict[str, str]
) -> None:
    with ws(voice_up, headers) as conn:
        conn.send('{"text": "\\ud800", "voice_params": ' + json.dumps(PARAMS) + "}")
        got = receive(conn)
    assert got.final is not None and got.final["code"] == "invalid_message"
    assert "text" in got.final["detail"]
    assert got.close_code == 1007
    assert simulator.requests == []


def test_concurrent_streams_each_get_their_own_audio(
    voice_up: Voice, simulator: ElevenLabsSimulator, headers: dict[str, str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    simulator.chunk_delay_s = 0.05  # the streams' pieces interleave
    texts = [f"Фраза номер {n}: {'очень ' * (5 * n)}длинная." for n in range(1, MAX_CONNECTIONS + 1)]
    settle(voice_up)
    before = metric(voice_up, 'voice_tts_latency_ms_count{source="elevenlabs"}')

    def one(text: str) -> bytes:
        with ws(voice_up, headers) as conn:
            conn.send(request(text))
            got = receive(conn)
            assert got.final is not None and got.final["type"] == "end", got.final
            return got.audio

    with ThreadPoolExecutor(MAX_CONNECTIONS) as pool:
        audios = list(pool.map(one, texts))
    assert audios == [expected_audio(t) for t in texts]
    assert metric(voice_up, 'voice_tts_latency_ms_count{source="elevenlabs"}') == before + len(texts)
