"""The user's door end to end, from the controller as the app would use it:

* on local-app the gateway and nginx, on local-voice the voice server run (hardened units, .env
  0600 of the app's user);
* ``https://local-app/api/v1/…`` verified with the lab entry CA (name local-app): a device signs up,
  sends a chat and gets the orchestrator's answer, whose two messages are then in the lab shard; the
  same chat as ``text/event-stream`` streams its sentences before the final answer; a chat without
  a token is refused with 401;
* ``wss://local-app/api/v1/voice/stream`` (nginx → local-voice's ``voice_ws`` port): the audio
  chunks of an answer concatenate to what the ElevenLabs stand-in produced for its text; without a
  token the stream is refused.

The simulators started by prepare.yml are stopped when the tests end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml
from unde_testkit.elevenlabs_simulator import expected_audio

_default = sys.modules["unde_molecule_lab"]
lab_host = _default.lab_host
private_ip = _default.private_ip
pytestmark = [pytest.mark.lab, pytest.mark.journal("unde-api-gateway", "unde-voice", "nginx")]

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
RUN_DIR = REPO / ".cache" / "agents-lab"
ENTRY = "local-app"
VOICE = "local-voice"
SHARD_HOST = "local-persona"  # the agents scenario's lab database
SERVICES = yaml.safe_load((REPO / "group_vars" / "all" / "services.yml").read_text())["unde_services"]
HTTPS = SERVICES["api_gateway_https"]["port"]
UNITS = {ENTRY: ["unde-api-gateway", "nginx"], VOICE: ["unde-voice"]}
ENV_FILES = {
    ENTRY: ("/opt/unde/api_gateway/.env", "unde-api-gateway"),
    VOICE: ("/opt/unde/voice/.env", "unde-voice"),
}


@pytest.fixture(scope="module", autouse=True)
def simulators() -> Iterator[None]:
    """The simulators started by prepare.yml are stopped when the tests end."""
    yield
    for pid_file in RUN_DIR.glob("*.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        pid_file.unlink()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """Trusts the lab entry CA only (the lab vault's), checking the name local-app."""
    ca = tmp_path_factory.mktemp("entry") / "ca.pem"
    ca.write_text(_default.vault()["vault_entry_ca_certificate"])
    return ssl.create_default_context(cafile=str(ca))


@pytest.fixture(scope="module")
def client(tls: ssl.SSLContext) -> Iterator[httpx.Client]:
    """HTTPS to local-app's lab address, with SNI and Host local-app (the controller has no DNS
    name for it), verified against the lab CA."""
    with httpx.Client(
        base_url=f"https://{private_ip(ENTRY)}:{HTTPS}",
        verify=tls,
        headers={"Host": ENTRY},
        timeout=60,
    ) as c:
        yield c


def _get(c: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
    return c.request(method, path, extensions={"sni_hostname": ENTRY}, **kw)


@pytest.fixture(scope="module")
def tokens(client: httpx.Client) -> dict[str, Any]:
    r = _get(client, "POST", "/api/v1/auth/device", json={"platform": "ios"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["access_token"] and body["refresh_token"]
    return body


def _auth(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _chat_body(message: str) -> dict[str, Any]:
    return {
        "message": message,
        "user_message_id": str(uuid.uuid4()),
        "assistant_message_id": str(uuid.uuid4()),
        "location": {"lat": 25.118, "lng": 55.2, "mall_id": "dubai-hills-mall"},
    }


@pytest.mark.parametrize("host", sorted(UNITS))
def test_units_run_and_env_is_private(host: str) -> None:
    node = lab_host(host)
    for unit in UNITS[host]:
        assert node.service(unit).is_running, unit
    path, owner = ENV_FILES[host]
    env = node.file(path)
    assert env.mode == 0o600 and env.user == owner


def test_chat_over_https_stores_both_messages(client: httpx.Client, tokens: dict[str, Any]) -> None:
    body = _chat_body("Hi! What should I wear to the mall tonight?")
    r = _get(client, "POST", "/api/v1/chat", json=body, headers=_auth(tokens))
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["text"].strip() and answer["assistant_message_id"] == body["assistant_message_id"]
    # the ids are UUIDs this test made (str(uuid.UUID) has only hex digits and dashes)
    ids = ",".join(f"'{uuid.UUID(body[k])}'" for k in ("user_message_id", "assistant_message_id"))
    count = lab_host(SHARD_HOST).check_output(
        "runuser -u postgres -- psql -X -tA -d unde_shard -c %s",
        "SELECT count(*) FROM messages WHERE id IN (" + ids + ")",  # noqa: S608 (UUIDs made here)
    )
    assert count.strip() == "2"


def test_chat_streams_sentences_before_the_answer(client: httpx.Client, tokens: dict[str, Any]) -> None:
    body = _chat_body("Tell me something nice about my style.")
    headers = {**_auth(tokens), "Accept": "text/event-stream"}
    events: list[tuple[str, Any]] = []
    with client.stream(
        "POST", "/api/v1/chat", json=body, headers=headers, extensions={"sni_hostname": ENTRY}
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = "message"
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.split(":", 1)[1])))
    kinds = [k for k, _ in events]
    assert "sentence" in kinds and kinds[-1] == "done", kinds
    assert kinds.index("sentence") < kinds.index("done")
    assert events[-1][1]["text"].strip()


def test_chat_without_a_token_is_refused(client: httpx.Client) -> None:
    r = _get(client, "POST", "/api/v1/chat", json=_chat_body("hello"))
    assert r.status_code == 401


# the persona agent's voice_params (apps/voice/README.md "Mapping")
VOICE_PARAMS = {"warmth": 0.6, "tempo": 1.0, "tension": 0.2, "expressiveness": "moderate"}


def _connect(tls: ssl.SSLContext, headers: dict[str, str]) -> Any:
    return websockets.connect(
        f"wss://{ENTRY}:{HTTPS}/api/v1/voice/stream",
        ssl=tls,
        host=private_ip(ENTRY),
        port=HTTPS,
        server_hostname=ENTRY,
        additional_headers=headers,
        open_timeout=30,
    )


async def _stream(tls: ssl.SSLContext, text: str, headers: dict[str, str]) -> tuple[bytes, list[Any]]:
    audio = bytearray()
    frames: list[Any] = []
    async with _connect(tls, headers) as ws:
        await ws.send(json.dumps({"text": text, "voice_params": VOICE_PARAMS, "previous_text": ""}))
        async with asyncio.timeout(60):
            async for message in ws:
                if isinstance(message, bytes):
                    audio.extend(message)
                    continue
                frames.append(json.loads(message))
                if frames[-1].get("type") in {"end", "error"}:
                    break
    return bytes(audio), frames


def test_voice_through_nginx_is_the_simulators_audio(tls: ssl.SSLContext, tokens: dict[str, Any]) -> None:
    text = "Your navy jacket goes well with white sneakers."
    audio, frames = asyncio.run(_stream(tls, text, _auth(tokens)))
    assert frames and frames[-1]["type"] == "end", frames
    assert audio == expected_audio(text)


async def _refused(tls: ssl.SSLContext) -> tuple[list[Any], int | None]:
    """What the server says to an upgrade without a token, before the client sends anything."""
    frames: list[Any] = []
    async with _connect(tls, {}) as ws:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async with asyncio.timeout(30):
                async for message in ws:
                    frames.append(message)
        return frames, ws.close_code


def test_voice_stream_without_a_token_is_refused(tls: ssl.SSLContext) -> None:
    frames, code = asyncio.run(_refused(tls))
    assert [json.loads(f)["code"] for f in frames if isinstance(f, str)] == ["unauthorized"]
    assert not any(isinstance(f, bytes) for f in frames) and code == 1008
