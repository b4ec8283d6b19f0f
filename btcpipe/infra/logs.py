"""Structured logging: JSON lines on stderr (or plain text on a terminal), one set of fields everywhere.

Fields: ``ts`` (ISO UTC), ``level``, ``logger``, ``msg``, plus whatever a call passes in ``extra={...}``
(``symbol``, ``stream``, ``count`` ...). Set ``BTCPIPE_LOG_FORMAT=json|text`` and ``BTCPIPE_LOG_LEVEL``.

``BTCPIPE_LOG_LEVEL`` is btcpipe's own verbosity: the network libraries below never log below WARNING,
whatever it says. At DEBUG botocore prints every request's headers (``X-Amz-Security-Token``, the access
key id in ``Authorization``) and urllib3/aiohttp/websockets print URLs and frames; in ECS those lines would
carry live credentials to CloudWatch.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


# Loggers of libraries that see credentials or raw traffic: clamped to WARNING at every BTCPIPE_LOG_LEVEL.
QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer", "aiohttp", "websockets", "aiobotocore")


class JsonFormatter(logging.Formatter):
    """Formats log records as one JSON object per line, with the service name and structured extras."""

    def __init__(self, service: str = "btcpipe") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(service: str = "btcpipe", level: str | None = None, fmt: str | None = None) -> None:
    fmt = fmt or os.environ.get("BTCPIPE_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")
    level = (level or os.environ.get("BTCPIPE_LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    floor = max(logging.WARNING, root.level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(floor)
