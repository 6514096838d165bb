"""Chat and session routes.

``POST /api/v1/chat``: one turn through the orchestrator's ``generate_response`` on dialogue_queue
(:mod:`api_gateway.dialogue`). The client makes the ids (``conversation_id``, ``user_message_id``,
``assistant_message_id``), so a retry after a 503 (queue saturated, deadline passed) is the same
turn: it follows the task already running or gets the stored answer, and never stores the message
twice. JSON answer: ``text``, ``voice_params``, ``avatar_state``, ``render_hints``, the ids.

With ``Accept: text/event-stream`` the answer streams as Server-Sent Events while it is produced:

    event: sentence   data: {"seq": 0, "text": "Hi!"}          a finished sentence (TTS can start)
    event: reset      data: {"seq": 3}                          drop the sentences so far; it restarts
    event: done       data: {<the JSON answer>}                 the stored reply, complete
    event: error      data: {"error", "detail", "retry_after_s"}  the turn did not finish; retry later

(plus ``: keepalive`` comments while nothing arrives). The gateway subscribes to
``orch:stream:<assistant_message_id>`` before the task is sent, so no sentence is missed; errors
found before the first byte (401, 422, 429, 503) are ordinary HTTP answers.

``POST /api/v1/session/start`` / ``/session/end``: the app's foreground sessions, for analytics
(``session_start``, ``session_end`` with the duration); the start time is kept in the gateway Redis
(``gw:session:<user>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api_gateway.auth import AuthUser, CurrentUser
from api_gateway.dialogue import (
    STREAM_CHANNEL,
    DialogueCall,
    DialogueRejectedError,
    DialogueUnavailableError,
    StreamEvent,
)
from api_gateway.resources import ApiError, Res, Resources

__all__ = ["ChatRequest", "router"]

log = logging.getLogger("api_gateway.chat")

router = APIRouter(tags=["chat"])

SESSION_KEY = "gw:session:{}"
_SESSION_TTL_S = 86_400
#: the answer's fields the app gets (timings, model names and prompt sizes stay inside)
_ANSWER_FIELDS = (
    "text",
    "voice_params",
    "avatar_state",
    "render_hints",
    "intent",
    "conversation_id",
    "user_message_id",
    "assistant_message_id",
    "reply_to_id",
    "degraded",
    "failed",
    "duration_ms",
)


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    mall_id: str | None = Field(default=None, min_length=1, max_length=64)
    floor: int | None = Field(default=None, ge=-10, le=200)


class ChatRequest(BaseModel):
    """One user message (typed, or the app's ASR text of a voice message)."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=4000)
    input_type: Literal["text", "voice"] = "text"
    conversation_id: uuid.UUID | None = None
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    location: Location | None = None
    #: the artefact (an earlier assistant message) this message answers
    reply_to: uuid.UUID | None = None
    #: a photo uploaded before (POST /api/v1/media) that goes with this message
    photo_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _distinct_ids(self) -> ChatRequest:
        if self.user_message_id == self.assistant_message_id:
            raise ValueError("assistant_message_id must differ from user_message_id")
        if not self.message.strip():
            raise ValueError("message must not be blank")
        return self


class ChatAnswer(BaseModel):
    text: str
    voice_params: dict[str, Any] | None = None
    avatar_state: Any = None
    render_hints: Any = None
    intent: str | None = None
    conversation_id: uuid.UUID | None = None
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    reply_to_id: uuid.UUID | None = None
    degraded: list[str] = Field(default_factory=list)
    failed: bool = False
    duration_ms: float | None = None


class SessionStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: uuid.UUID | None = None
    platform: Literal["ios", "android", "web"] | None = None


class SessionEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: uuid.UUID
    #: the app's own count of the foreground seconds, used when the gateway does not know the start
    duration_s: float | None = Field(default=None, ge=0, le=7 * 86_400)


def answer_of(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result.get(k) for k in _ANSWER_FIELDS if k in result}


async def _photo_url(res: Resources, user: AuthUser, photo_id: uuid.UUID) -> str:
    """A presigned URL of the user's own photo for the orchestrator (media's ``photo_url``)."""
    media = res.extras.get("media")
    lookup = getattr(media, "photo_url", None)
    if lookup is None:
        raise ApiError(422, "photo_unavailable", "photo_id: photos cannot be used right now")
    url = await lookup(user.user_id, photo_id)
    if url is None:
        raise ApiError(422, "unknown_photo", "photo_id: no such photo of this user")
    return str(url)


def _wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "").lower()


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


def _capture_turn(
    res: Resources, user: AuthUser, body: ChatRequest, *, streamed: bool, result: dict[str, Any] | None
) -> None:
    res.analytics.capture_user(
        "user_message_sent",
        user.user_id,
        {
            "input_type": body.input_type,
            "has_photo": body.photo_id is not None,
            "has_reply_to": body.reply_to is not None,
            "in_mall": bool(body.location and body.location.mall_id),
            "streamed": streamed,
            "answered": result is not None,
            "failed": bool(result and result.get("failed")),
            "degraded": len(result.get("degraded") or []) if result else 0,
        },
    )


async def _relay(
    res: Resources, user: AuthUser, body: ChatRequest, call: DialogueCall
) -> AsyncIterator[bytes]:
    """The call's events as SSE, with keepalive comments while nothing arrives."""
    keepalive = res.settings.sse_keepalive_s
    events = call.events()
    result: dict[str, Any] | None = None
    pending: asyncio.Task[StreamEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield b": keepalive\n\n"
                continue
            task, pending = pending, None
            try:
                kind, data = task.result()
            except StopAsyncIteration:
                break
            if kind == "done":
                result = data
                yield _sse("done", answer_of(data))
                break
            yield _sse(kind, {k: v for k, v in data.items() if k in ("seq", "text")})
    except DialogueUnavailableError as exc:
        yield _sse(
            "error",
            {"error": "dialogue_unavailable", "detail": exc.reason, "retry_after_s": exc.retry_after_s},
        )
    except DialogueRejectedError as exc:
        rejected = exc.code == "TurnRejectedError"
        yield _sse(
            "error",
            {
                "error": "rejected" if rejected else "dialogue_failed",
                "detail": exc.message if rejected else "the dialogue failed; retry with the same message ids",
                "retry_after_s": None if rejected else res.settings.dialogue_retry_after_s,
            },
        )
    finally:
        if pending is not None:  # the client went away mid-stream: stop reading before closing
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending
        await events.aclose()
        await call.close()
        _capture_turn(res, user, body, streamed=True, result=result)


@router.post(
    "/chat",
    response_model=ChatAnswer,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when asked for"}},
)
async def chat(
    body: ChatRequest,
    request: Request,
    user: CurrentUser,
    res: Res,
) -> Response:
    """One turn: the answer as JSON, or streamed as SSE with ``Accept: text/event-stream``."""
    await res.rate_limiter.check(user.user_id, "chat")
    kwargs: dict[str, Any] = {
        "user_id": str(user.user_id),
        "message": body.message,
        "input_type": body.input_type,
        "explicit_reply_to": str(body.reply_to) if body.reply_to else None,
        "conversation_id": str(body.conversation_id) if body.conversation_id else None,
        "user_message_id": str(body.user_message_id),
        "assistant_message_id": str(body.assistant_message_id),
        "location": body.location.model_dump(exclude_none=True) if body.location else None,
    }
    if body.photo_id is not None:
        kwargs["photo_url"] = await _photo_url(res, user, body.photo_id)
    # the same message sent again follows its first run; a corrected one (the same ids with other
    # content, e.g. after a 422) is a new run. Not part of it: the position (the phone moves
    # between retries) and the photo's URL (presigned anew on every request; its id counts)
    ignored = ("photo_url", "location")
    identity = {**{k: v for k, v in kwargs.items() if k not in ignored}, "photo_id": str(body.photo_id)}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    idempotency_key = f"{user.user_id}:{body.assistant_message_id}:{digest}"
    settings = res.settings
    if _wants_stream(request):
        call = await res.dialogue.open(
            settings.dialogue_task,
            kwargs,
            idempotency_key=idempotency_key,
            stream_channel=STREAM_CHANNEL.format(body.assistant_message_id),
        )
        return StreamingResponse(
            _relay(res, user, body, call),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result: dict[str, Any] | None = None
    try:
        result = await res.dialogue.call(settings.dialogue_task, kwargs, idempotency_key=idempotency_key)
    finally:
        _capture_turn(res, user, body, streamed=False, result=result)
    return JSONResponse(answer_of(result))


@router.post("/session/start")
async def session_start(
    user: CurrentUser,
    res: Res,
    body: SessionStart | None = None,
) -> dict[str, Any]:
    """The app came to the foreground: a session id (the client's, or a new one) and its start."""
    await res.rate_limiter.check(user.user_id, "session")
    session_id = (body.session_id if body else None) or uuid.uuid4()
    started_at = time.time()
    record = json.dumps({"session_id": str(session_id), "started_at": started_at})
    await res.redis.set(SESSION_KEY.format(user.user_id), record, ex=_SESSION_TTL_S)
    platform = body.platform if body else None
    res.analytics.capture_user(
        "session_start", user.user_id, {"session_id": str(session_id), "platform": platform}
    )
    return {"session_id": str(session_id), "started_at": started_at}


@router.post("/session/end")
async def session_end(body: SessionEnd, user: CurrentUser, res: Res) -> dict[str, Any]:
    """The app went to the background: the session's duration (the gateway's clock when it saw
    the start, else the app's own count)."""
    await res.rate_limiter.check(user.user_id, "session")
    key = SESSION_KEY.format(user.user_id)
    raw = await res.redis.get(key)
    duration: float | None = None
    source = "client"
    if raw is not None:
        record = json.loads(raw)
        if record.get("session_id") == str(body.session_id):
            duration = max(0.0, time.time() - float(record["started_at"]))
            source = "server"
            await res.redis.delete(key)
    if duration is None:
        duration = body.duration_s
    props = {
        "session_id": str(body.session_id),
        "duration_s": round(duration, 3) if duration is not None else None,
        "duration_source": source if duration is not None else None,
    }
    res.analytics.capture_user("session_end", user.user_id, props)
    return {"session_id": str(body.session_id), "duration_s": props["duration_s"]}
