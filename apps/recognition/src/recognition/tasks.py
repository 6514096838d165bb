"""Celery tasks of recognition.

Names are ``recognition.<task>``; the bodies come with issue 7 (recognition pipeline v5.1).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="recognition.recognize_photo")
def recognize_photo(photo_url: str, user_id: str | None = None) -> dict[str, Any]:
    """Photo → detected items with exact / similar / style matches."""
    raise NotImplementedError("recognize_photo: implemented in issue 7 (recognition pipeline v5.1)")
