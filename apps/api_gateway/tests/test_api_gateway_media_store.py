"""The user-media store on a real S3-compatible server (moto): what is checked, what is stored."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import SecretStr

from api_gateway.media_settings import MediaSettings
from api_gateway.media_store import (
    MULTIPART_OVERHEAD,
    MediaError,
    PhotoStore,
    body_limit,
    check_jpeg,
    photo_key,
)
from unde_common.s3 import ObjectStorageError
from unde_testkit.catalog_testing import jpeg_bytes
from unde_testkit.recognition_testbed import serve_asgi
from unde_testkit.testing import S3Handle

BUCKET = "unde-user-media"


def media_settings(s3: S3Handle, **overrides: Any) -> MediaSettings:
    values: dict[str, Any] = {
        "s3_endpoint": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_user_media_access_key": s3.access_key,
        "s3_user_media_secret_key": s3.secret_key,
        "s3_user_media_bucket": BUCKET,
        "s3_max_attempts": 1,
        **overrides,
    }
    return MediaSettings(**values)


def bomb_jpeg(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) declares ``width`` x ``height``: a decompression bomb."""
    data = bytearray(jpeg_bytes(64, 64, "bomb"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (100, 100), (10, 20, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def store(s3: S3Handle) -> Iterator[PhotoStore]:
    photos = PhotoStore(media_settings(s3))
    photos.store.ensure_bucket()
    yield photos


def keys(store: PhotoStore, user: uuid.UUID) -> list[str]:
    return sorted(store.store.list_keys(f"{user}/"))


def test_both_parts_land_under_the_users_photo_prefix(store: PhotoStore) -> None:
    user, photo = uuid.uuid4(), uuid.uuid4()
    original, thumb = jpeg_bytes(1200, 1600, "o", texture=0.1), jpeg_bytes(150, 200, "t")
    first, second = asyncio.run(store.save(user, photo, original, thumb))
    assert (first.width, first.height, first.bytes) == (1200, 1600, len(original))
    assert (second.width, second.height) == (150, 200)
    assert keys(store, user) == [f"{user}/photos/{photo}/original.jpg", f"{user}/photos/{photo}/thumb.jpg"]
    assert store.store.get_bytes(photo_key(user, photo, "original")) == original
    assert store.store.get_bytes(photo_key(user, photo, "thumb")) == thumb
    assert store.store.head(photo_key(user, photo, "thumb"))["ContentType"] == "image/jpeg"  # type: ignore[index]
    assert asyncio.run(store.exists(user, photo))
    assert not asyncio.run(store.exists(uuid.uuid4(), photo))


def test_the_same_photo_id_again_overwrites_the_same_two_objects(store: PhotoStore) -> None:
    user, photo = uuid.uuid4(), uuid.uuid4()
    asyncio.run(store.save(user, photo, jpeg_bytes(400, 300, "a"), jpeg_bytes(200, 150, "a")))
    second = jpeg_bytes(400, 300, "b")
    asyncio.run(store.save(user, photo, second, jpeg_bytes(200, 150, "b")))
    assert len(keys(store, user)) == 2
    assert store.store.get_bytes(photo_key(user, photo, "original")) == second


def test_presigned_url_reads_the_private_object(store: PhotoStore, s3: S3Handle) -> None:
    user, photo = uuid.uuid4(), uuid.uuid4()
    original = jpeg_bytes(300, 300, "p")
    asyncio.run(store.save(user, photo, original, jpeg_bytes(200, 200, "p")))
    url = store.presigned_url(user, photo)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=300" in url
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200 and answer.content == original


@pytest.mark.parametrize(
    ("original", "thumb", "status", "code"),
    [
        (b"x" * 11 * 1024 * 1024, jpeg_bytes(200, 200), 413, "too_large"),
        (jpeg_bytes(400, 400), b"\xff\xd8" + b"y" * 300 * 1024, 413, "too_large"),
        (b"GIF89a not an image at all" * 10, jpeg_bytes(200, 200), 415, "unsupported_type"),
        (png_bytes(), jpeg_bytes(200, 200), 415, "unsupported_type"),
        (jpeg_bytes(400, 400), png_bytes(), 415, "unsupported_type"),
        (b"", jpeg_bytes(200, 200), 415, "not_an_image"),
        (jpeg_bytes(800, 600, texture=0.2)[:-4000], jpeg_bytes(200, 200), 415, "corrupt_image"),
        (bomb_jpeg(9000, 9000), jpeg_bytes(200, 200), 413, "too_many_pixels"),
        (bomb_jpeg(30000, 30000), jpeg_bytes(200, 200), 413, "too_many_pixels"),
        (jpeg_bytes(400, 400), jpeg_bytes(600, 100), 413, "too_many_pixels"),
    ],
    ids=[
        "original-over-limit",
        "thumb-over-limit",
        "not-an-image",
        "png",
        "png-thumb",
        "empty",
        "truncated",
        "bomb-81mp",
        "bomb-900mp",
        "thumb-too-wide",
    ],
)
def test_a_refused_upload_stores_nothing(
    store: PhotoStore, original: bytes, thumb: bytes, status: int, code: str
) -> None:
    user, photo = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(MediaError) as refused:
        asyncio.run(store.save(user, photo, original, thumb))
    assert (refused.value.status, refused.value.code) == (status, code), refused.value.detail
    assert refused.value.detail.startswith(("original", "thumb"))
    assert keys(store, user) == []


def test_a_bomb_is_refused_before_its_pixels_are_decoded() -> None:
    """The check reads the frame header: a 900 MP declaration costs no 2.7 GB of memory."""
    with pytest.raises(MediaError) as refused:
        check_jpeg(bomb_jpeg(30000, 30000), "original", max_bytes=10**7, max_pixels=50_000_000)
    assert refused.value.status == 413


class FailingThumbProxy:
    """A loopback proxy in front of the S3 server that answers 500 to every PUT of a thumbnail."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.refused = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "PUT" and scope["path"].endswith("/thumb.jpg"):
            self.refused += 1
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"<Error><Code>InternalError</Code></Error>"})
            return
        query = scope["query_string"].decode()
        headers = [
            (k.decode(), v.decode()) for k, v in scope["headers"] if k not in (b"host", b"content-length")
        ]
        async with httpx.AsyncClient() as client:
            answer = await client.request(
                scope["method"],
                f"{self.upstream}{scope['path']}" + (f"?{query}" if query else ""),
                headers=headers,
                content=body,
            )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status_code,
                "headers": [
                    (k.encode(), v.encode())
                    for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.content})


def test_a_thumb_write_failure_removes_the_original(s3: S3Handle) -> None:
    """Both or neither: the thumbnail's PUT fails → the original written before it is deleted."""
    proxy = FailingThumbProxy(s3.endpoint_url)
    with serve_asgi(proxy) as url:
        photos = PhotoStore(media_settings(s3, s3_endpoint=url))
        photos.store.ensure_bucket()
        user, photo = uuid.uuid4(), uuid.uuid4()
        with pytest.raises(ObjectStorageError):
            asyncio.run(photos.save(user, photo, jpeg_bytes(300, 300), jpeg_bytes(200, 200)))
        assert proxy.refused >= 1
        assert list(photos.store.list_keys(f"{user}/")) == []


def test_upload_limits_are_the_entrys() -> None:
    """The defaults are group_vars/all/entry.yml's values (the role sets them too), and the body
    limit is nginx's client_max_body_size: what passes nginx is what the gateway can accept."""
    import yaml

    entry = yaml.safe_load((Path(__file__).parents[3] / "group_vars/all/entry.yml").read_text())
    defaults = MediaSettings.model_fields
    assert defaults["media_max_photo_bytes"].default == entry["unde_upload_max_photo_bytes"]
    assert defaults["media_max_thumb_bytes"].default == entry["unde_upload_max_thumb_bytes"]
    assert entry["unde_upload_multipart_overhead_bytes"] == MULTIPART_OVERHEAD
    photo, thumb = entry["unde_upload_max_photo_bytes"], entry["unde_upload_max_thumb_bytes"]
    settings = MediaSettings(
        s3_user_media_access_key=SecretStr("k"),
        s3_user_media_secret_key=SecretStr("s"),
        media_max_photo_bytes=photo,
        media_max_thumb_bytes=thumb,
    )
    assert body_limit(settings) == photo + thumb + entry["unde_upload_multipart_overhead_bytes"]


def test_delete_all_removes_only_that_users_objects(store: PhotoStore) -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    for _ in range(3):
        asyncio.run(store.save(user, uuid.uuid4(), jpeg_bytes(300, 200), jpeg_bytes(200, 130)))
    asyncio.run(store.save(other, uuid.uuid4(), jpeg_bytes(300, 200), jpeg_bytes(200, 130)))
    assert asyncio.run(store.delete_all(user)) == 6
    assert keys(store, user) == []
    assert len(keys(store, other)) == 2
    assert asyncio.run(store.delete_all(user)) == 0
