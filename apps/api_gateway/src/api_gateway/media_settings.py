"""Settings of the media, recognition and products routes: a mixin of ApiGatewaySettings."""

from __future__ import annotations

from unde_common.settings import UndeSettings


class MediaSettings(UndeSettings):
    """Upload limits, user-media bucket, recognition, products cache."""
