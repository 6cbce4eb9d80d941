"""Settings of the audit anchor (``audit.anchor`` in ``broker.yaml``): where the chain's head
is written beyond the reach of whoever owns the database (docs/audit.md, "The anchor")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from broker.schema import Declared, Duration, Integer, Text, alias

BUCKET = Text(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name")
PREFIX = Text(r"([A-Za-z0-9!_.*'()-]+/)*", "key prefix ending in '/', or empty")


@dataclass(frozen=True)
class AnchorSettings(Declared):
    """An S3 bucket with Object Lock, where anchors are written in compliance mode."""

    bucket: Annotated[str, BUCKET]
    prefix: Annotated[str, PREFIX] = "broker-audit-anchors/"
    # The chain's head is written this often (and at every kill switch).
    interval_seconds: Annotated[int, alias("interval"), Duration(10, 86400)] = 300
    # Each anchor is locked (compliance mode: nobody, root included, can delete or shorten
    # it) for this many days. Set it longer than the audit records are kept.
    retention_days: Annotated[int, alias("retention_days"), Integer(1, 36500)] = 400
    region: Annotated[str | None, Text()] = None  # default: aws.default_region
