"""User photos in the private user-media bucket: checking an upload and storing it.

The app sends the original and its 200 px thumbnail (made on the phone, spec 02 §7) in one
multipart request; both become ``<user_id>/photos/<photo_id>/{original,thumb}.jpg``. Both parts are
checked with Pillow before anything is written:

- JPEG only (the keys say ``.jpg``; the app encodes what the camera gives): another image format
  or anything that is not an image → 415;
- bytes over the part's limit → 413 (the request body as a whole is limited before it is read,
  :func:`body_limit`);
- width x height from the header over ``MEDIA_MAX_PHOTO_PIXELS`` (a thumbnail: a side over
  ``MEDIA_THUMB_MAX_SIDE``) → 413 before a pixel is decoded (a decompression bomb declares a huge
  size in a small file);
- the whole entropy-coded stream is decoded (at 1/8 scale for the original: Pillow's JPEG draft
  mode, so a 48 MP photo costs ~2 MB of memory, not 150 MB), so a truncated or corrupt file is
  refused with 415 instead of being stored.

Then the original is written, then the thumbnail; when the second write fails the first is deleted,
so a photo is stored whole or not at all. The same ``photo_id`` uploaded again (a client retry)
overwrites the same two keys: the upload is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from PIL import Image, UnidentifiedImageError

from unde_common.s3 import ObjectStorageError, ObjectStore, S3Config

if TYPE_CHECKING:
    from api_gateway.media_settings import MediaSettings

__all__ = [
    "MULTIPART_OVERHEAD",
    "MediaError",
    "PhotoCheck",
    "PhotoStore",
    "body_limit",
    "check_jpeg",
    "photo_key",
]

#: room for the multipart boundaries, part headers and the small form fields
MULTIPART_OVERHEAD: Final = 64 * 1024
_JPEG: Final = ("JPEG",)


class MediaError(Exception):
    """An upload or photo that cannot be used; ``status`` is the HTTP answer, ``code`` a stable name."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PhotoCheck:
    """What the check found out about one part."""

    width: int
    height: int
    bytes: int


def body_limit(settings: MediaSettings) -> int:
    """The request body limit of the upload route: both parts at their limits plus the framing."""
    return settings.media_max_photo_bytes + settings.media_max_thumb_bytes + MULTIPART_OVERHEAD


def photo_key(user_id: uuid.UUID, photo_id: uuid.UUID, name: str) -> str:
    """``<user_id>/photos/<photo_id>/<name>.jpg`` (spec 02 §7 bucket layout)."""
    return f"{user_id}/photos/{photo_id}/{name}.jpg"


def check_jpeg(
    data: bytes, part: str, *, max_bytes: int, max_pixels: int, max_side: int | None = None
) -> PhotoCheck:
    """Raise :class:`MediaError` unless ``data`` is a whole JPEG within the limits (see the module doc)."""
    if len(data) > max_bytes:
        raise MediaError(413, "too_large", f"{part} is {len(data)} bytes: more than {max_bytes}")
    if not data:
        raise MediaError(415, "not_an_image", f"{part} is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own process-wide limit: our limit is checked below, explicitly
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_JPEG)
            width, height = image.size
            if max_side is not None and max(width, height) > max_side:
                raise MediaError(
                    413,
                    "too_many_pixels",
                    f"{part} is {width}x{height}: its longest side is over {max_side} px",
                )
            if width * height > max_pixels:
                raise MediaError(
                    413, "too_many_pixels", f"{part} is {width}x{height}: more than {max_pixels} pixels"
                )
            # decode every scan at the smallest scale the JPEG decoder offers: the whole file is read
            # and checked while the pixels stay few
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError(413, "too_many_pixels", f"{part} is too large to decode: {exc}") from None
    except UnidentifiedImageError:
        raise MediaError(415, "unsupported_type", f"{part} is not a JPEG image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(
            415, "corrupt_image", f"{part} is not a decodable JPEG ({exc.__class__.__name__})"
        ) from None
    return PhotoCheck(width, height, len(data))


class PhotoStore:
    """The user-media bucket through one boto3 client (thread-safe); blocking calls run in threads."""

    def __init__(self, settings: MediaSettings, store: ObjectStore | None = None) -> None:
        self.settings = settings
        self.store = store or ObjectStore.from_config(
            S3Config(
                endpoint_url=str(settings.s3_endpoint).rstrip("/"),
                access_key=settings.s3_user_media_access_key,
                secret_key=settings.s3_user_media_secret_key,
                bucket=settings.s3_user_media_bucket,
                region=settings.s3_region,
                connect_timeout_s=settings.s3_connect_timeout_s,
                read_timeout_s=settings.s3_read_timeout_s,
                max_attempts=settings.s3_max_attempts,
                max_pool_connections=settings.s3_max_pool_connections,
            )
        )

    def check(self, original: bytes, thumb: bytes) -> tuple[PhotoCheck, PhotoCheck]:
        s = self.settings
        first = check_jpeg(
            original, "original", max_bytes=s.media_max_photo_bytes, max_pixels=s.media_max_photo_pixels
        )
        second = check_jpeg(
            thumb,
            "thumb",
            max_bytes=s.media_max_thumb_bytes,
            max_pixels=s.media_thumb_max_side**2,
            max_side=s.media_thumb_max_side,
        )
        return first, second

    def _put_both(self, user_id: uuid.UUID, photo_id: uuid.UUID, original: bytes, thumb: bytes) -> None:
        first = photo_key(user_id, photo_id, "original")
        self.store.put_bytes(first, original, content_type="image/jpeg")
        try:
            self.store.put_bytes(photo_key(user_id, photo_id, "thumb"), thumb, content_type="image/jpeg")
        except ObjectStorageError:
            # the delete's own failure must not hide the put's
            with contextlib.suppress(ObjectStorageError):
                self.store.delete(first)
            raise

    async def save(
        self, user_id: uuid.UUID, photo_id: uuid.UUID, original: bytes, thumb: bytes
    ) -> tuple[PhotoCheck, PhotoCheck]:
        """Check both parts (in a thread: decoding is CPU work), then store both or neither."""
        checks = await asyncio.to_thread(self.check, original, thumb)
        await asyncio.to_thread(self._put_both, user_id, photo_id, original, thumb)
        return checks

    async def exists(self, user_id: uuid.UUID, photo_id: uuid.UUID) -> bool:
        """Whether the user has this photo (its original is under the user's own prefix)."""
        return await asyncio.to_thread(self.store.exists, photo_key(user_id, photo_id, "original"))

    def _delete_all(self, user_id: uuid.UUID) -> int:
        keys = list(self.store.list_keys(f"{user_id}/"))
        for key in keys:
            self.store.delete(key)
        return len(keys)

    async def delete_all(self, user_id: uuid.UUID) -> int:
        """Delete every object under the user's prefix (photos and whatever else is kept there):
        the media part of a hard delete. Returns how many objects were deleted; raises
        :class:`ObjectStorageError` when the store cannot be reached (the caller retries)."""
        return await asyncio.to_thread(self._delete_all, user_id)

    def presigned_url(self, user_id: uuid.UUID, photo_id: uuid.UUID, name: str = "original") -> str:
        """A GET URL of the photo valid for ``MEDIA_PRESIGN_TTL_S`` (signed locally, no request)."""
        url: str = self.store.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.store.bucket, "Key": photo_key(user_id, photo_id, name)},
            ExpiresIn=self.settings.media_presign_ttl_s,
        )
        return url
