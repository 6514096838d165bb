"""ximilar_gw's endpoints, one module each: :mod:`.detect`, :mod:`.tag`, :mod:`.search` (see
:mod:`ximilar_gw.app` for the API). Each has a ``router``; the app includes :data:`ROUTERS`."""

from __future__ import annotations

from pydantic import BaseModel, Field


class UrlBody(BaseModel):
    """The body of /detect and /tag: an image URL (with an optional ``#xywh=`` region)."""

    url: str = Field(min_length=1, max_length=4096)
