"""unde_common.s3 against the S3-compatible test server: settings, client, bucket helper, errors."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from unde_common.s3 import ObjectStorageError, ObjectStore, S3Config, S3Settings, s3_client
from unde_common.settings import SettingsError
from unde_testkit.testing import EnvWriter, EnvWriterFactory, S3Handle, free_port


def _config(s3: S3Handle, bucket: str) -> S3Config:
    return S3Config(
        endpoint_url=s3.endpoint_url,
        access_key=SecretStr(s3.access_key),
        secret_key=SecretStr(s3.secret_key),
        bucket=bucket,
        region=s3.region,
    )


@pytest.fixture
def write_env(env_writer: EnvWriterFactory) -> EnvWriter:
    return env_writer(S3Settings)


def test_settings_read_from_env_and_keep_secrets(write_env: EnvWriter, s3: S3Handle) -> None:
    write_env(
        {
            "S3_ENDPOINT": s3.endpoint_url,
            "S3_ACCESS_KEY": s3.access_key,
            "S3_SECRET_KEY": "very-secret",
            "S3_REGION": "us-east-1",
            "S3_BUCKET": "unde-test-settings",
        }
    )
    settings = S3Settings.load()
    assert "very-secret" not in repr(settings)
    cfg = S3Config.from_settings(settings)
    assert cfg.endpoint_url == s3.endpoint_url
    assert cfg.bucket == "unde-test-settings"
    client = s3_client(settings)
    url = client.generate_presigned_url("get_object", Params={"Bucket": "unde-images", "Key": "a/b.jpg"})
    assert url.startswith(f"{s3.endpoint_url}/unde-images/a/b.jpg?")  # path-style addressing


def test_missing_keys_are_named(write_env: EnvWriter) -> None:
    write_env(required=False)
    with pytest.raises(SettingsError) as info:
        S3Settings.load()
    assert set(info.value.problems) == {"S3_ACCESS_KEY", "S3_SECRET_KEY"}


def test_round_trip_and_listing(s3: S3Handle) -> None:
    store = ObjectStore.from_config(_config(s3, "unde-test-store"))
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    for n in range(3):
        store.put_bytes(f"originals/zara/1/{n}.jpg", b"\xff\xd8" + bytes([n]), content_type="image/jpeg")
    assert sorted(store.list_keys("originals/zara/")) == [f"originals/zara/1/{n}.jpg" for n in range(3)]
    assert store.get_bytes("originals/zara/1/2.jpg") == b"\xff\xd8\x02"
    head = store.head("originals/zara/1/0.jpg")
    assert head is not None
    assert head["ContentType"] == "image/jpeg"
    assert head["ContentLength"] == 3
    assert store.url("a/b.jpg") == f"{s3.endpoint_url}/unde-test-store/a/b.jpg"
    store.delete("originals/zara/1/0.jpg")
    assert not store.exists("originals/zara/1/0.jpg")


def test_missing_object_is_a_not_found_error(s3: S3Handle) -> None:
    store = ObjectStore.from_config(_config(s3, "unde-test-missing"))
    store.ensure_bucket()
    with pytest.raises(ObjectStorageError) as info:
        store.get_bytes("collages/zara/none.jpg")
    assert info.value.not_found
    assert "s3://unde-test-missing/collages/zara/none.jpg" in str(info.value)


def test_unreachable_endpoint_is_a_readable_error_without_secrets() -> None:
    cfg = S3Config(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        access_key=SecretStr("AKIA-test"),
        secret_key=SecretStr("do-not-print-me"),
        bucket="unde-images",
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
        max_attempts=1,
    )
    store = ObjectStore.from_config(cfg)
    with pytest.raises(ObjectStorageError) as info:
        store.put_bytes("x.jpg", b"x")
    assert not info.value.not_found
    assert "put_object s3://unde-images/x.jpg failed" in str(info.value)
    assert "do-not-print-me" not in str(info.value)
