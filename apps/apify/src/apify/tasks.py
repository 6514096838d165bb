"""Celery tasks of apify.

Names are ``apify.<task>``; the bodies come with issue 6 (catalog pipeline apps).
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="apify.apify_zara")
def apify_zara() -> None:
    """Collect zara metadata through Apify into raw_products."""
    raise NotImplementedError("apify_zara: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="apify.apify_bershka")
def apify_bershka() -> None:
    """Collect bershka metadata through Apify into raw_products."""
    raise NotImplementedError("apify_bershka: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="apify.apify_pullandbear")
def apify_pullandbear() -> None:
    """Collect pullandbear metadata through Apify into raw_products."""
    raise NotImplementedError("apify_pullandbear: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="apify.apify_stradivarius")
def apify_stradivarius() -> None:
    """Collect stradivarius metadata through Apify into raw_products."""
    raise NotImplementedError("apify_stradivarius: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="apify.apify_massimodutti")
def apify_massimodutti() -> None:
    """Collect massimodutti metadata through Apify into raw_products."""
    raise NotImplementedError("apify_massimodutti: implemented in issue 6 (catalog pipeline apps)")


@shared_task(name="apify.apify_oysho")
def apify_oysho() -> None:
    """Collect oysho metadata through Apify into raw_products."""
    raise NotImplementedError("apify_oysho: implemented in issue 6 (catalog pipeline apps)")
