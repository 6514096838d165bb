"""The fuzz run of api_gateway (unde_testkit.fuzz): its OpenAPI (the ops endpoints for now) plus
hand-made bodies against a real Redis — no answer is a 5xx, none raises."""

from __future__ import annotations

import pytest

from api_gateway.app import create
from api_gateway.settings import ApiGatewaySettings
from unde_testkit.fuzz import fuzz_app
from unde_testkit.gateway_testbed import jwt_test_keys
from unde_testkit.service_auth import service_client
from unde_testkit.testing import PostgresHandle
from unde_testkit.testing_sql import migrate_database

pytestmark = pytest.mark.timeout(120)


def test_fuzz_finds_no_5xx(pg: PostgresHandle, redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    main = migrate_database(pg, "gw_fuzz_main", "unde_main")
    shard = migrate_database(pg, "gw_fuzz_shard", "unde_shard")
    settings = ApiGatewaySettings.load(
        s3_user_media_access_key="a",
        s3_user_media_secret_key="s",
        **{k.lower(): v for k, v in jwt_test_keys().items()},
        redis_url=f"{base}/14",
        production_db_url=main,
        shard_0_db_url=shard,
    )
    with service_client(create(settings)) as client:
        report = fuzz_app(client, "api_gateway", max_examples=30)
    print(report.summary())
    assert report.requests > 0
    assert report.findings == [], report.summary()
