"""Structured logs: one JSON object per line, with the request id, and secrets redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from atoll.context import current_request_id

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_SECRET_KEYS = re.compile(r"pass|secret|token|authorization|cookie", re.IGNORECASE)
_TOKEN_VALUE = re.compile(r"atl_[A-Za-z0-9_-]{8,}")


def redact(value: Any) -> Any:
    if isinstance(value, str):
        return _TOKEN_VALUE.sub("atl_[redacted]", value)
    if isinstance(value, dict):
        return {k: "[redacted]" if _SECRET_KEYS.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        entry.update(redact(extra))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        tail = " ".join(f"{k}={v}" for k, v in redact(extra).items())
        line = f"{record.levelname.lower():7} {record.name}: {redact(record.getMessage())} {tail}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line.rstrip()


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
