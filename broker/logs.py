"""Structured JSON logs: one object per line, with the HTTP request id when there is one.

Every line served inside a request carries that request's ``request_id`` (the
``X-Request-ID`` echoed to the client), so a log search joins a request's access line, its
warnings and its audit records (``details.http_request_id``). Fields whose names hold
secrets (``password``, ``*_token``...) are replaced with ``[redacted]``: a last line of
defence, since callers must not log secrets at all. The access log names the URL rule,
never the raw path: approval links carry personal tokens in the path.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from flask import g, has_request_context

from broker.audit.redact import REDACTED, is_secret_name, redact

RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Libraries that log request and response bodies (with credentials) at DEBUG/INFO.
NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "hvac", "werkzeug", "slack_sdk", "authlib")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in RESERVED and not key.startswith("_"):
                entry[key] = REDACTED if is_secret_name(key) else redact(value)
        if "request_id" not in entry and has_request_context():
            request_id = g.get("request_id")
            if request_id:
                entry["request_id"] = request_id
        if record.exc_info:
            # Server-side only: the client never sees a traceback.
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
