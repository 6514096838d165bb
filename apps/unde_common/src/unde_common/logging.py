"""Structured JSON logging on the standard library.

Every record becomes one JSON object on one line::

    {"ts": "2025-01-01T10:00:00.123Z", "level": "INFO", "logger": "scraper.tasks",
     "msg": "poll done", "app": "scraper", "stores": 4}

Fields given with ``logger.info("...", extra={...})`` are added as keys; an exception adds
``exc`` (the formatted traceback) and ``exc_type``. journald keeps one line per record, and
Loki/Grafana or ``jq`` read them as they are.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

from pydantic import SecretStr

__all__ = ["JsonFormatter", "configure_logging"]

# attributes every LogRecord has; anything else on a record came from ``extra=``
_RESERVED: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, __file__, 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)
_HANDLER_NAME: Final = "unde-json"


def _default(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with ts, level, logger, msg, app and the extras."""

    def __init__(self, app: str) -> None:
        super().__init__()
        self.app = app

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC)
        out: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "app": self.app,
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=_default, ensure_ascii=False)


def configure_logging(app: str, level: str | int = "INFO", *, stream: IO[str] | None = None) -> None:
    """Send all logging (root logger, uvicorn, celery, warnings) as JSON lines to ``stream``.

    ``stream`` defaults to stdout, which systemd hands to journald. Calling it again replaces
    the previous configuration (idempotent).
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter(app))

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if old.get_name() == _HANDLER_NAME:
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)

    # libraries that install handlers of their own: make them go through the root handler
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task", "celery.worker"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.setLevel(logging.NOTSET)
        lib.propagate = True
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
