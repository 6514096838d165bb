"""Routes of the gateway: photo upload, recognition, catalog (all under ``/api/v1``).

- ``POST /media``: the original photo and its 200 px thumbnail in one multipart body
  (``photo``, ``thumb``, optional ``photo_id``) → both in the private user-media bucket
  (:mod:`api_gateway.media_store`); 413 / 415 and nothing stored when a part is refused.
- ``POST /recognize`` ``{photo_id, request_id?}``: a presigned GET URL of the user's photo goes to
  ``recognition.recognize_photo`` on recognition_queue (:mod:`api_gateway.media_recognition`). With
  ``Accept: text/event-stream`` the answer is a stream of events (``accepted``, ``chips``, ``cards``,
  or ``error``); otherwise 202 with the request id, and ``GET /recognize/{request_id}`` tells how far
  it got. 503 + Retry-After when the queue is full or the push Redis is down.
- ``GET /products``: catalog pages with ``image_url`` and ``collage_url``, cached in the gateway Redis
  (:mod:`api_gateway.media_products`).

The clients live in ``resources.extras["media"]`` (:func:`startup`, :func:`shutdown`).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message

from api_gateway.auth import CurrentUser
from api_gateway.media_products import Catalog, ProductQuery, split_values
from api_gateway.media_recognition import (
    Recognition,
    RecognitionBusyError,
    RecognitionTimeoutError,
    RecognitionUnavailableError,
    Ticket,
    chips,
)
from api_gateway.media_settings import MediaSettings
from api_gateway.media_store import MediaError, PhotoStore, body_limit
from api_gateway.resources import Res, Resources
from unde_common.db import DatabaseUnavailableError
from unde_common.s3 import ObjectStorageError

__all__ = ["UPLOAD_PATH", "Media", "body_limits", "router", "shutdown", "startup"]

log = logging.getLogger("api_gateway.media")

router = APIRouter(tags=["media"])

EXTRAS_KEY: Final = "media"
_SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: the upload route's path in this router (the app mounts it under /api/v1)
UPLOAD_PATH: Final = "/media"


def body_limits(settings: MediaSettings) -> dict[str, int]:
    """Request body limits of these routes (paths in this router) for the app's body guard: the
    upload's is both parts at their limits plus the framing, what nginx allows; the others keep
    the app's default."""
    return {UPLOAD_PATH: body_limit(settings)}


@dataclass
class Media:
    """The clients of these routes, built once per process."""

    settings: MediaSettings
    photos: PhotoStore
    recognition: Recognition
    catalog: Catalog


async def startup(res: Resources) -> None:
    """Build the user-media bucket client, the recognition producer and the catalog cache."""
    settings: MediaSettings = res.settings
    res.extras[EXTRAS_KEY] = Media(
        settings=settings,
        photos=PhotoStore(settings),
        recognition=Recognition(settings, res.redis),
        catalog=Catalog(settings, res.pools["production_db"], res.redis, res.metrics),
    )


async def shutdown(res: Resources) -> None:
    media: Media | None = res.extras.pop(EXTRAS_KEY, None)
    if media is not None:
        await media.recognition.close()


def media(res: Res) -> Media:
    found: Media = res.extras[EXTRAS_KEY]
    return found


MediaDep = Annotated[Media, Depends(media)]


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _unavailable(code: str, detail: str, retry_after_s: int) -> JSONResponse:
    return _error(503, code, detail, {"Retry-After": str(retry_after_s)})


# --------------------------------------------------------------------------- upload

_UPLOAD_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["photo", "thumb"],
                    "properties": {
                        "photo": {"type": "string", "format": "binary", "description": "original, JPEG"},
                        "thumb": {"type": "string", "format": "binary", "description": "200 px, JPEG"},
                        "photo_id": {"type": "string", "format": "uuid"},
                    },
                }
            }
        },
    }
}


class PartInfo(BaseModel):
    width: int
    height: int
    bytes: int


class UploadAnswer(BaseModel):
    photo_id: uuid.UUID
    original: PartInfo
    thumb: PartInfo


class _Limited:
    """The request's ``receive`` that refuses a body over ``limit`` bytes while it arrives (a body
    without Content-Length, or one longer than it said)."""

    def __init__(self, request: Request, limit: int) -> None:
        self.receive = request.receive
        self.limit = limit
        self.seen = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise MediaError(413, "too_large", f"the request body is more than {self.limit} bytes")
        return message


async def _part(form: Any, name: str) -> bytes:
    value = form.get(name)
    if not isinstance(value, UploadFile):
        raise MediaError(422, "missing_field", f"{name}: a file part is required")
    data: bytes = await value.read()
    return data


@router.post(
    UPLOAD_PATH,
    status_code=201,
    response_model=UploadAnswer,
    openapi_extra=_UPLOAD_BODY,
    responses={413: {"description": "a part is too large"}, 415: {"description": "not a JPEG"}},
)
async def upload_photo(
    request: Request,
    user: CurrentUser,
    res: Res,
    m: MediaDep,
) -> Any:
    """Store a photo (original + thumbnail) under the user's prefix; both or neither."""
    await res.rate_limiter.check(user.user_id, "upload")
    limit = body_limit(m.settings)
    try:
        declared = int(request.headers.get("content-length", "0"))
    except ValueError:
        declared = 0
    if declared > limit:
        return _error(413, "too_large", f"the request body is {declared} bytes: more than {limit}")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return _error(415, "unsupported_type", "body: multipart/form-data with photo and thumb is expected")
    try:
        limited = Request(request.scope, _Limited(request, limit))
        async with limited.form(max_files=2, max_fields=1, max_part_size=1024) as form:
            original = await _part(form, "photo")
            thumb = await _part(form, "thumb")
            raw_id = form.get("photo_id")
        if raw_id is None or raw_id == "":
            photo_id = uuid.uuid4()
        else:
            try:
                photo_id = uuid.UUID(str(raw_id))
            except ValueError:
                raise MediaError(422, "invalid_field", "photo_id: a UUID is expected") from None
        first, second = await m.photos.save(user.user_id, photo_id, original, thumb)
    except MediaError as exc:
        return _error(exc.status, exc.code, exc.detail)
    except HTTPException as exc:  # Starlette's multipart parser: a malformed body
        return _error(400, "invalid_multipart", f"body: {exc.detail}")
    except ObjectStorageError as exc:
        log.warning("photo not stored", extra={"error": str(exc)})
        return _unavailable(
            "storage_unavailable", "the photo store cannot be reached", res.settings.store_retry_after_s
        )
    return UploadAnswer(
        photo_id=photo_id,
        original=PartInfo(width=first.width, height=first.height, bytes=first.bytes),
        thumb=PartInfo(width=second.width, height=second.height, bytes=second.bytes),
    )


# --------------------------------------------------------------------------- recognition


class RecognizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    photo_id: uuid.UUID
    #: the client's id of this request: a retry with the same id follows the first one
    request_id: uuid.UUID | None = None


class RecognizeAccepted(BaseModel):
    request_id: uuid.UUID
    status: str = "accepted"
    poll_url: str


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _stream(m: Media, ticket: Ticket) -> AsyncIterator[bytes]:
    yield _sse("accepted", {"request_id": str(ticket.request_id)})
    retry = m.settings.recognition_retry_after_s
    try:
        async for event, data in m.recognition.follow(ticket):
            yield _sse(event, data)
    except RecognitionTimeoutError:
        yield _sse("error", {"error": "timeout", "detail": "no result in time", "retry_after_s": retry})
    except RecognitionUnavailableError:
        yield _sse(
            "error",
            {
                "error": "recognition_unavailable",
                "detail": "recognition is unavailable",
                "retry_after_s": retry,
            },
        )


@router.post(
    "/recognize",
    status_code=202,
    response_model=RecognizeAccepted,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "events: accepted, chips, cards, error"},
        404: {"description": "no such photo"},
        503: {"description": "recognition busy or unavailable; Retry-After"},
    },
)
async def recognize(
    body: RecognizeRequest,
    request: Request,
    user: CurrentUser,
    res: Res,
    m: MediaDep,
) -> Any:
    """Recognise the items on one of the user's photos: chips first, then cards."""
    await res.rate_limiter.check(user.user_id, "recognize")
    retry = m.settings.recognition_retry_after_s
    try:
        if not await m.photos.exists(user.user_id, body.photo_id):
            return _error(404, "photo_not_found", "photo_id: no such photo of this user")
    except ObjectStorageError:
        return _unavailable("storage_unavailable", "the photo store cannot be reached", retry)
    ticket = Ticket(body.request_id or uuid.uuid4(), user.user_id, body.photo_id, time.time())
    try:
        sent = await m.recognition.submit(ticket, m.photos.presigned_url(user.user_id, body.photo_id))
        if not sent:  # a retry of a request already sent: follow that one
            known = await m.recognition.ticket(ticket.request_id)
            if known is None or known.user_id != user.user_id or known.photo_id != body.photo_id:
                return _error(409, "request_id_taken", "request_id: already used for another request")
            ticket = known
    except RecognitionBusyError:
        return _unavailable("recognition_busy", "too many recognitions are waiting", retry)
    except RecognitionUnavailableError:
        return _unavailable("recognition_unavailable", "recognition is unavailable", retry)
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_stream(m, ticket), media_type="text/event-stream", headers=_SSE_HEADERS)
    return RecognizeAccepted(request_id=ticket.request_id, poll_url=f"{request.url.path}/{ticket.request_id}")


class RecognitionState(BaseModel):
    request_id: uuid.UUID
    #: pending (queued or detecting), detected (chips ready), completed, failed, timed_out
    status: str
    chips: dict[str, Any] | None = None
    cards: dict[str, Any] | None = None


@router.get("/recognize/{request_id}", response_model=RecognitionState, responses={404: {}, 503: {}})
async def recognition_state(
    request_id: uuid.UUID,
    user: CurrentUser,
    m: MediaDep,
) -> Any:
    """How far a recognition got: chips once detected, cards once done."""
    retry = m.settings.recognition_retry_after_s
    try:
        ticket = await m.recognition.ticket(request_id)
        if ticket is None or ticket.user_id != user.user_id:
            return _error(404, "request_not_found", "request_id: no such recognition of this user")
        detection, final = await m.recognition.snapshot(request_id)
    except RecognitionUnavailableError:
        return _unavailable("recognition_unavailable", "recognition is unavailable", retry)
    state = RecognitionState(request_id=request_id, status="pending")
    if detection is not None:
        state.status, state.chips = "detected", chips(detection)
    if final is not None:
        state.cards = Recognition.final_cards(request_id, final)
        state.status = str(state.cards.get("status") or "failed")
        if state.chips is None:
            state.chips = {"request_id": str(request_id), "items": []}
    elif m.recognition.deadline(ticket) <= 0:
        state.status = "timed_out"
    return state


# --------------------------------------------------------------------------- products


_BIGINT_MAX: Final = 2**63 - 1


class ProductPage(BaseModel):
    items: list[dict[str, Any]]
    next_after: int | None


@router.get("/products", response_model=ProductPage, responses={503: {}})
async def products(
    user: CurrentUser,
    res: Res,
    m: MediaDep,
    response: Response,
    brand: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006 (FastAPI copies it)
    category: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006
    sku: Annotated[list[str], Query(max_length=2000)] = [],  # noqa: B006
    product_id: Annotated[list[int], Query(alias="id")] = [],  # noqa: B006
    in_stock: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 20,
    after: Annotated[int | None, Query(ge=0, le=_BIGINT_MAX)] = None,
) -> Any:
    """A catalog page (ordered by id; ``after`` = the previous page's ``next_after``)."""
    await res.rate_limiter.check(user.user_id, "products")
    if limit > m.settings.products_page_max:
        return _error(422, "invalid_field", f"limit: at most {m.settings.products_page_max}")
    if any(not 1 <= i <= _BIGINT_MAX for i in product_id):
        return _error(422, "invalid_field", "id: product ids are positive 64-bit integers")
    query = ProductQuery(
        brands=split_values(brand),
        categories=split_values(category),
        skus=split_values(sku),
        ids=tuple(product_id),
        in_stock=in_stock,
        limit=limit,
        after=after,
    )
    try:
        page, source = await m.catalog.page(query)
    except (psycopg.Error, PoolTimeout, DatabaseUnavailableError):
        # the catalog is asked again once its back-off is over
        retry = max(res.settings.store_retry_after_s, math.ceil(m.settings.products_db_backoff_s))
        return _unavailable("catalog_unavailable", "the catalog cannot be read now", retry)
    response.headers["X-Cache"] = source
    return page
