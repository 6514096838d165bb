"""Object Storage (S3 API) for the apps: settings mixin, boto3 client factory, a small bucket helper.

Production is Hetzner Object Storage (``https://hel1.your-objectstorage.com``, region ``hel1``,
path-style addressing); tests and the lab use an S3-compatible server on loopback / the lab
network. Needs the ``unde-common[s3]`` extra (boto3).

    class MySettings(S3Settings, CeleryWorkerSettings): ...

    store = ObjectStore.from_settings(settings)          # bucket = settings.s3_bucket
    store.put_bytes("originals/zara/123/0.jpg", data, content_type="image/jpeg")
    data = store.get_bytes("originals/zara/123/0.jpg")

Every failure of a call (HTTP error, timeout, connection refused, missing key) is raised as
:class:`ObjectStorageError`, whose message names the operation, bucket and key and never the
credentials; :attr:`ObjectStorageError.not_found` tells a missing object apart.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from pydantic import Field, HttpUrl, SecretStr

from unde_common.settings import UndeSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "ObjectStorageError",
    "ObjectStore",
    "S3Config",
    "S3Settings",
    "public_url",
    "s3_client",
]

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


class S3Settings(UndeSettings):
    """Object Storage settings (``S3_ENDPOINT``, ``S3_REGION``, ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``,
    ``S3_BUCKET`` and the client's timeouts / retries / pool size)."""

    s3_endpoint: HttpUrl = HttpUrl("https://hel1.your-objectstorage.com")
    s3_region: str = "hel1"
    s3_access_key: SecretStr
    s3_secret_key: SecretStr
    s3_bucket: str = "unde-images"
    s3_connect_timeout_s: float = Field(default=5.0, gt=0)
    s3_read_timeout_s: float = Field(default=60.0, gt=0)
    #: botocore "standard" retry mode: attempts including the first (throttling, 5xx, timeouts)
    s3_max_attempts: int = Field(default=3, ge=1, le=10)
    #: connections the client keeps per endpoint: at least the app's upload concurrency
    s3_max_pool_connections: int = Field(default=20, ge=1, le=512)


@dataclass(frozen=True, slots=True)
class S3Config:
    """What a client needs; built from :class:`S3Settings` or given directly (tests, tools)."""

    endpoint_url: str
    access_key: SecretStr
    secret_key: SecretStr
    bucket: str = "unde-images"
    region: str = "hel1"
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_attempts: int = 3
    max_pool_connections: int = 20

    @classmethod
    def from_settings(cls, settings: S3Settings) -> S3Config:
        return cls(
            endpoint_url=str(settings.s3_endpoint).rstrip("/"),
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            connect_timeout_s=settings.s3_connect_timeout_s,
            read_timeout_s=settings.s3_read_timeout_s,
            max_attempts=settings.s3_max_attempts,
            max_pool_connections=settings.s3_max_pool_connections,
        )


def s3_client(config: S3Config | S3Settings) -> S3Client:
    """A boto3 S3 client: path-style addressing, SigV4, timeouts and standard retries.

    boto3 clients are thread-safe; create one per process (not per call)."""
    cfg = config if isinstance(config, S3Config) else S3Config.from_settings(config)
    boto3 = importlib.import_module("boto3")
    botocore_config = importlib.import_module("botocore.config")
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=cfg.endpoint_url,
        region_name=cfg.region,
        aws_access_key_id=cfg.access_key.get_secret_value(),
        aws_secret_access_key=cfg.secret_key.get_secret_value(),
        config=botocore_config.Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=cfg.connect_timeout_s,
            read_timeout=cfg.read_timeout_s,
            retries={"max_attempts": cfg.max_attempts, "mode": "standard"},
            max_pool_connections=cfg.max_pool_connections,
            # Hetzner Object Storage (like older S3 stand-ins) does not take the newer default checksums
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )
    return client


def public_url(settings: S3Settings, key: str, base_url: str = "") -> str:
    """The URL clients read ``key`` at: under ``base_url`` (a CDN or the bucket's public domain)
    when set, else the path-style URL on the S3 endpoint (what :meth:`ObjectStore.url` gives)."""
    base = base_url.rstrip("/") or f"{str(settings.s3_endpoint).rstrip('/')}/{settings.s3_bucket}"
    return f"{base}/{key}"


class ObjectStorageError(RuntimeError):
    """An Object Storage call failed; ``code`` is the S3 error code (or the exception class)."""

    def __init__(self, operation: str, bucket: str, key: str | None, code: str, detail: str) -> None:
        self.operation = operation
        self.bucket = bucket
        self.key = key
        self.code = code
        where = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}"
        super().__init__(f"object storage: {operation} {where} failed: {code}: {detail}")

    @property
    def not_found(self) -> bool:
        return self.code in _NOT_FOUND_CODES


def _error(operation: str, bucket: str, key: str | None, exc: Exception) -> ObjectStorageError:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error") or {}
        code = str(err.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        detail = str(err.get("Message") or exc)
    else:
        code, detail = exc.__class__.__name__, str(exc)
    return ObjectStorageError(operation, bucket, key, code, detail[:300])


class ObjectStore:
    """One bucket through one client. Thread-safe (boto3 clients are)."""

    def __init__(self, client: S3Client, bucket: str, *, endpoint_url: str | None = None) -> None:
        self.client = client
        self.bucket = bucket
        self.endpoint_url = endpoint_url

    @classmethod
    def from_config(cls, config: S3Config) -> Self:
        return cls(s3_client(config), config.bucket, endpoint_url=config.endpoint_url)

    @classmethod
    def from_settings(cls, settings: S3Settings) -> Self:
        return cls.from_config(S3Config.from_settings(settings))

    def url(self, key: str) -> str:
        """The path-style URL of ``key`` (what a public-read bucket serves)."""
        base = (self.endpoint_url or self.client.meta.endpoint_url).rstrip("/")
        return f"{base}/{self.bucket}/{key}"

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (lab/tests; production buckets pre-exist)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except Exception as exc:
            err = _error("head_bucket", self.bucket, None, exc)
            if not err.not_found:
                raise err from exc
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except Exception as exc:
            err = _error("create_bucket", self.bucket, None, exc)
            if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise err from exc

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except Exception as exc:
            raise _error("put_object", self.bucket, key, exc) from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                return body.read()
            finally:
                body.close()
        except Exception as exc:
            raise _error("get_object", self.bucket, key, exc) from exc

    def head(self, key: str) -> dict[str, Any] | None:
        """``ContentLength``/``ContentType``/``ETag`` of ``key``, or None when it does not exist."""
        try:
            meta = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            err = _error("head_object", self.bucket, key, exc)
            if err.not_found:
                return None
            raise err from exc
        return {k: meta.get(k) for k in ("ContentLength", "ContentType", "ETag")}

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _error("delete_object", self.bucket, key, exc) from exc

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix`` (paged)."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self.client.list_objects_v2(**kwargs)
            except Exception as exc:
                raise _error("list_objects_v2", self.bucket, prefix, exc) from exc
            for obj in page.get("Contents", []):
                yield obj["Key"]
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
