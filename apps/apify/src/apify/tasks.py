"""Celery tasks of apify (spec 01 §18): one collection per brand, Sunday 02:00-07:00."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from apify import collect, runtime


def _collect(task: Task[Any, Any], brand: str) -> dict[str, Any]:
    return collect.collect(runtime.for_app(task.app), brand).as_dict()


@shared_task(name="apify.apify_zara", bind=True)
def apify_zara(self: Task[Any, Any]) -> dict[str, Any]:
    """Collect zara metadata through Apify into raw_products."""
    return _collect(self, "zara")


@shared_task(name="apify.apify_bershka", bind=True)
def apify_bershka(self: Task[Any, Any]) -> dict[str, Any]:
    """Collect bershka metadata through Apify into raw_products."""
    return _collect(self, "bershka")


@shared_task(name="apify.apify_pullandbear", bind=True)
def apify_pullandbear(self: Task[Any, Any]) -> dict[str, Any]:
    """Collect pullandbear metadata through Apify into raw_products."""
    return _collect(self, "pullandbear")


@shared_task(name="apify.apify_stradivarius", bind=True)
def apify_stradivarius(self: Task[Any, Any]) -> dict[str, Any]:
    """Collect stradivarius metadata through Apify into raw_products."""
    return _collect(self, "stradivarius")


@shared_task(name="apify.apify_massimodutti", bind=True)
def apify_massimodutti(self: Task[Any, Any]) -> dict[str, Any]:
    """Collect massimodutti metadata through Apify into raw_products."""
    return _collect(self, "massimodutti")


@shared_task(name="apify.apify_oysho", bind=True)
def apify_oysho(self: Task[Any, Any]) -> dict[str, Any]:
    """Collect oysho metadata through Apify into raw_products."""
    return _collect(self, "oysho")
