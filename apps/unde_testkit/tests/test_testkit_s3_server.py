"""The workspace's S3 test server speaks the S3 API over HTTP (bucket, put, list, get, delete)."""

from __future__ import annotations

from unde_testkit.testing import S3Handle


def test_s3_server_round_trip(s3: S3Handle) -> None:
    client = s3.client()
    client.create_bucket(Bucket="unde-images")
    client.put_object(
        Bucket="unde-images", Key="originals/zara/1/0.jpg", Body=b"\xff\xd8jpeg", ContentType="image/jpeg"
    )
    listed = client.list_objects_v2(Bucket="unde-images", Prefix="originals/zara/")
    assert [o["Key"] for o in listed["Contents"]] == ["originals/zara/1/0.jpg"]
    got = client.get_object(Bucket="unde-images", Key="originals/zara/1/0.jpg")
    assert got["Body"].read() == b"\xff\xd8jpeg"
    assert got["ContentType"] == "image/jpeg"
    client.delete_object(Bucket="unde-images", Key="originals/zara/1/0.jpg")
    assert client.list_objects_v2(Bucket="unde-images").get("KeyCount") == 0
