"""Settings of the media, recognition and products routes: a mixin of ApiGatewaySettings."""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import RedisDsn, UndeSettings


class MediaSettings(UndeSettings):
    """Upload limits, user-media bucket, recognition, products cache."""

    # ------------------------------------------------------------------ user-media bucket (private)
    #: Object Storage endpoint (path-style addressing) and the user-media bucket's own key pair
    s3_endpoint: HttpUrl = HttpUrl("https://hel1.your-objectstorage.com")
    s3_region: str = "hel1"
    s3_user_media_access_key: SecretStr
    s3_user_media_secret_key: SecretStr
    s3_user_media_bucket: str = "unde-user-media"
    #: Object Storage client timeouts; an upload is refused with 503 rather than hang
    s3_connect_timeout_s: float = Field(default=5.0, gt=0)
    s3_read_timeout_s: float = Field(default=20.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1, le=10)
    s3_max_pool_connections: int = Field(default=32, ge=1, le=512)

    # ------------------------------------------------------------------ photo upload
    #: bytes the original photo may have (a phone JPEG is 0.5-2 MB; 10 MiB leaves room for 48 MP)
    media_max_photo_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: bytes the client's thumbnail may have (about 10 KB at 200 px)
    media_max_thumb_bytes: int = Field(default=256 * 1024, ge=1024)
    #: pixels (width x height, read from the JPEG header before decoding) the original may have:
    #: decompression-bomb guard, above any phone camera's full resolution
    media_max_photo_pixels: int = Field(default=50_000_000, ge=1)
    #: longest side of the thumbnail in pixels (the app makes 200 px)
    media_thumb_max_side: int = Field(default=256, ge=16, le=2048)
    #: presigned GET URLs of a photo (given to recognition) expire after this many seconds
    media_presign_ttl_s: int = Field(default=300, ge=30, le=3600)

    # ------------------------------------------------------------------ recognition
    #: recognition's Celery broker and result backend: batch Redis on `push`, DB 6
    recognition_broker_url: RedisDsn = SecretStr("redis://localhost/6")
    recognition_queue: str = "recognition_queue"
    #: the longest a recognition may take from the gateway's view (the task's hard limit is 30 s);
    #: past it the client gets 503 + Retry-After
    recognition_deadline_s: float = Field(default=30.0, gt=0, le=120)
    #: tasks waiting in recognition_queue beyond which a new request is refused (503 + Retry-After)
    recognition_max_queued: int = Field(default=200, ge=1)
    #: Retry-After (seconds) of a refused or timed-out recognition
    recognition_retry_after_s: int = Field(default=5, ge=1, le=600)
    #: how long the gateway remembers whose request an id is (the poll route; recognition keeps its
    #: detection as long, PROGRESS_TTL_S)
    recognition_request_ttl_s: int = Field(default=600, ge=60)

    # ------------------------------------------------------------------ products
    #: a catalog page stays in the gateway Redis (gw:products:*) this long; the catalog syncs hourly
    products_cache_ttl_s: int = Field(default=300, ge=1)
    #: a copy kept this long is served when the production DB cannot answer (Helsinki down)
    products_stale_ttl_s: int = Field(default=86_400, ge=0)
    products_page_max: int = Field(default=100, ge=1, le=500)
    #: the longest a catalog query waits for a production DB connection (through the tunnel)
    products_db_timeout_s: float = Field(default=2.0, gt=0, le=30)
    #: after the DB failed a query, this long the catalog answers from the stale copies (or 503)
    #: without asking it again
    products_db_backoff_s: float = Field(default=5.0, ge=0, le=300)
