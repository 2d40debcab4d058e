"""The service's log lines: text for a terminal, or one JSON object per line for a collector
(journald, Loki, Elasticsearch) with ``--log-format json``.

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, plus
``deployment_id`` and ``alert_type`` when the line is about one (passed as ``extra=``), and
``exception`` with the traceback when there is one.

>>> import logging
>>> record = logging.LogRecord("crackseg", logging.WARNING, "", 0, "late %s", ("check",), None)
>>> record.deployment_id = "api"
>>> sorted(json.loads(JsonFormatter().format(record)))
['deployment_id', 'level', 'logger', 'message', 'time']
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "LogFormat", "setup_logging"]

LogFormat = Literal["text", "json"]
#: Facts a log call may pass as ``extra=`` that the JSON line carries.
CONTEXT_FIELDS = ("deployment_id", "alert_type")
_TEXT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the message stay escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(level: str, fmt: LogFormat = "text") -> None:
    """Log ``level`` and above to stderr, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
