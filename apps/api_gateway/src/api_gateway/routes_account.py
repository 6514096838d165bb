"""Account routes: the user's own data, through the orchestrator's tasks on dialogue_queue (the user id
always from the access token, never from the body).

- ``POST /api/v1/verify-and-replay`` — after a failover the app sends its unconfirmed pairs
  (``pairs``, or the spec's name ``unconfirmed``) and its last confirmed ids; the answer says which
  ids the shard has (``present_ids``), which were written now (``inserted_ids``), which confirmed ids
  it lost (``missing_confirmed_ids``: replay them from the buffer) and which it refused because the
  user deleted them (``deleted_ids``). Rate limit ``replay``: one pair per second per user (the
  request costs its number of pairs); at most ``REPLAY_MAX_PAIRS`` pairs per request.
- ``POST /api/v1/forget`` — "forget this": ``message_id`` (with ``forget_artifact`` for "forget this
  look") or ``topic``; the message leaves the avatar's memory, its text stays in the history.
- ``POST /api/v1/forget/hard`` — delete one message's content for good (tombstoned).
- ``DELETE /api/v1/account`` — erase the account: the orchestrator's erase, the user's photos
  (``unde-user-media/<user_id>/``) and the gateway's own keys of the user.
- ``GET /api/v1/profile`` — what the avatar knows about the user (decrypted facts, compact profile).

Errors of the orchestrator: the input refused → 422 ``rejected``; a conversation of another user →
403 ``conversation_not_owned``; an unknown message → 404 ``message_not_found``; the shard or the
tombstone registry down → 503 + Retry-After (all these calls are idempotent: repeat them).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Final, Literal

from fastapi import APIRouter
from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from api_gateway.auth import CurrentUser
from api_gateway.dialogue import DialogueRejectedError
from api_gateway.resources import ApiError, Res, Resources

__all__ = ["ForgetBody", "HardForgetBody", "ReplayBody", "router"]

log = logging.getLogger("api_gateway.account")

router = APIRouter(tags=["account"])

REPLAY_TASK: Final = "llm_orchestrator.verify_and_replay"
FORGET_TASK: Final = "llm_orchestrator.forget"
ERASE_TASK: Final = "llm_orchestrator.erase_account"
PROFILE_TASK: Final = "llm_orchestrator.profile"
#: the gateway's own keys of a user (gw:session:<user>), removed with the account
_OWN_KEYS: Final = ("gw:session:{}",)

#: the orchestrator's exception types → (status, code); the rest go to the app's handler (502)
_REJECTED: Final[dict[str, tuple[int, str]]] = {
    "TurnRejectedError": (422, "rejected"),
    "ReplayRejectedError": (422, "rejected"),
    "AccountRejectedError": (422, "rejected"),
    "ConversationNotOwnedError": (403, "conversation_not_owned"),
    "MessageNotFoundError": (404, "message_not_found"),
}
_UNAVAILABLE: Final = frozenset(
    {"ShardUnavailableError", "ReplayUnavailableError", "MaxRetriesExceededError"}
)


# ------------------------------------------------------------------ bodies


class ReplayUserMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID
    text: str = Field(min_length=1, max_length=4000)
    created_at: AwareDatetime
    input_type: Literal["text", "voice"] = "text"


class ReplayArtifact(BaseModel):
    """What the answer showed, as the app got it: the stylist's items or the recognition result."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["stylist", "recognition"]
    result: dict[str, Any] | list[Any]


class ReplayAssistantMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID
    text: str = Field(min_length=1, max_length=20_000)
    created_at: AwareDatetime
    voice_params: dict[str, Any] | None = None
    artifact: ReplayArtifact | None = None


class ReplayPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_message: ReplayUserMessage
    assistant_message: ReplayAssistantMessage


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    conversation_id: uuid.UUID
    pairs: list[ReplayPair] = Field(
        default_factory=list, max_length=50, validation_alias=AliasChoices("pairs", "unconfirmed")
    )
    recent_confirmed_ids: list[uuid.UUID] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _distinct_ids(self) -> ReplayBody:
        seen: set[uuid.UUID] = set()
        for n, pair in enumerate(self.pairs):
            for role in ("user_message", "assistant_message"):
                message_id = getattr(pair, role).id
                if message_id in seen:
                    raise ValueError(f"pairs[{n}].{role}.id {message_id} appears twice in the request")
                seen.add(message_id)
        return self


class ForgetBody(BaseModel):
    """Soft forget: one message (``forget_artifact``: its artefact description too), or a topic."""

    model_config = ConfigDict(extra="forbid")

    message_id: uuid.UUID | None = None
    topic: str | None = Field(default=None, min_length=2, max_length=200)
    forget_artifact: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> ForgetBody:
        if (self.message_id is None) == (self.topic is None):
            raise ValueError("give exactly one of message_id and topic")
        if self.topic is not None and not self.topic.strip():
            raise ValueError("topic must not be blank")
        if self.forget_artifact and self.message_id is None:
            raise ValueError("forget_artifact needs message_id")
        return self


class HardForgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: uuid.UUID


# ------------------------------------------------------------------ calls


async def _call(res: Resources, task: str, kwargs: dict[str, Any], deadline_s: float) -> dict[str, Any]:
    """The task's result; its refusals as the gateway's errors (see the module docstring)."""
    try:
        return await res.dialogue.call(task, kwargs, deadline_s=deadline_s)
    except DialogueRejectedError as exc:
        if exc.code in _REJECTED:
            status, code = _REJECTED[exc.code]
            raise ApiError(status, code, exc.message or code) from None
        if exc.code in _UNAVAILABLE:
            retry = str(res.settings.dialogue_retry_after_s)
            raise ApiError(
                503,
                "unavailable",
                "your data is not reachable right now; retry",
                headers={"Retry-After": retry},
            ) from None
        raise


@router.post("/verify-and-replay")
async def verify_and_replay(body: ReplayBody, user: CurrentUser, res: Res) -> dict[str, Any]:
    """Which of the app's pairs the shard has; the missing ones written (idempotent)."""
    s = res.settings
    if len(body.pairs) > s.replay_max_pairs:
        raise ApiError(422, "too_many_pairs", f"pairs: at most {s.replay_max_pairs} pairs per request")
    if len(body.recent_confirmed_ids) > s.replay_max_confirmed_ids:
        raise ApiError(
            422,
            "too_many_ids",
            f"recent_confirmed_ids: at most {s.replay_max_confirmed_ids} ids per request",
        )
    await res.rate_limiter.check(user.user_id, "replay", cost=max(1, len(body.pairs)))
    kwargs = {
        "user_id": str(user.user_id),
        **body.model_dump(mode="json", exclude_none=True),
    }
    result = await _call(res, REPLAY_TASK, kwargs, s.account_deadline_s)
    keys = ("conversation_id", "present_ids", "inserted_ids", "missing_confirmed_ids", "deleted_ids")
    return {k: result.get(k) for k in keys}


@router.post("/forget")
async def forget(body: ForgetBody, user: CurrentUser, res: Res) -> dict[str, Any]:
    """ "Forget this": out of the avatar's memory (and its facts), the text stays."""
    await res.rate_limiter.check(user.user_id, "account")
    kwargs = {"user_id": str(user.user_id), "mode": "soft", **body.model_dump(mode="json", exclude_none=True)}
    result = await _call(res, FORGET_TASK, kwargs, res.settings.account_deadline_s)
    return _forget_answer(result)


@router.post("/forget/hard")
async def forget_hard(body: HardForgetBody, user: CurrentUser, res: Res) -> dict[str, Any]:
    """Delete one message's content for good."""
    await res.rate_limiter.check(user.user_id, "account")
    kwargs = {"user_id": str(user.user_id), "mode": "hard", "message_id": str(body.message_id)}
    result = await _call(res, FORGET_TASK, kwargs, res.settings.account_deadline_s)
    return _forget_answer(result)


def _forget_answer(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("mode", "message_ids", "found", "changed", "knowledge_deactivated", "knowledge_deleted")
    return {k: result[k] for k in keys if k in result}


async def _erase_photos(res: Resources, user_id: uuid.UUID) -> int | None:
    """The user's objects under ``<user_id>/`` of the user-media bucket; None when media is off."""
    media = res.extras.get("media")
    store = getattr(getattr(media, "photos", None), "store", None)
    if store is None:
        return None

    def erase() -> int:
        deleted = 0
        for key in list(store.list_keys(f"{user_id}/")):
            store.delete(key)
            deleted += 1
        return deleted

    return await asyncio.to_thread(erase)


@router.delete("/account")
async def delete_account(user: CurrentUser, res: Res) -> dict[str, Any]:
    """Erase the account's data (a repeat finds nothing and reports zeros)."""
    await res.rate_limiter.check(user.user_id, "account")
    report = await _call(res, ERASE_TASK, {"user_id": str(user.user_id)}, res.settings.erase_deadline_s)
    not_erased = [n for n in report.get("not_erased", []) if n not in ("user_media", "redis:api_gateway")]
    try:
        photos = await _erase_photos(res, user.user_id)
    except Exception as exc:
        log.warning("photos of an erased account not deleted", extra={"error": type(exc).__name__})
        photos = None
    if photos is None:
        not_erased.append("user_media")
    try:
        own = int(await res.redis.delete(*(key.format(user.user_id) for key in _OWN_KEYS)))
    except Exception as exc:
        log.warning("gateway keys of an erased account not deleted", extra={"error": type(exc).__name__})
        own, not_erased = 0, [*not_erased, "redis:api_gateway"]
    log.info("account erased", extra={"user_id": str(user.user_id), "photos": photos})
    return {
        "erased": True,
        "messages_deleted": report.get("messages_deleted", 0),
        "facts_deleted": report.get("user_knowledge_deleted", 0),
        "photos_deleted": photos or 0,
        "gateway_keys_deleted": own,
        "not_erased": not_erased,
    }


@router.get("/profile")
async def profile(user: CurrentUser, res: Res) -> dict[str, Any]:
    """What the avatar knows about the user."""
    await res.rate_limiter.check(user.user_id, "account")
    result = await _call(res, PROFILE_TASK, {"user_id": str(user.user_id)}, res.settings.account_deadline_s)
    keys = ("name", "profile", "preferences", "summary", "facts", "unreadable_facts")
    return {k: result.get(k) for k in keys}
