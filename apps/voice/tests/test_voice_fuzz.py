"""The fuzz run of voice (unde_testkit.fuzz): its OpenAPI (the ops endpoints for now) plus
hand-made bodies against a real Redis — no answer is a 5xx, none raises."""

from __future__ import annotations

import pytest

from unde_testkit.fuzz import fuzz_app
from unde_testkit.service_auth import service_client
from voice.app import create
from voice.settings import VoiceSettings

pytestmark = pytest.mark.timeout(120)


def test_fuzz_finds_no_5xx(redis_url: str) -> None:
    settings = VoiceSettings.load(
        elevenlabs_api_key="k", elevenlabs_voice_id="v", redis_url=redis_url.rsplit("/", 1)[0] + "/10"
    )
    with service_client(create(settings)) as client:
        report = fuzz_app(client, "voice", max_examples=30)
    print(report.summary())
    assert report.requests > 0
    assert report.findings == [], report.summary()
