"""Which backends and notifier a real deployment uses, built from settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.config import Settings
from broker.issuers.base import Issuer
from broker.metrics import Metrics
from broker.notify.base import LogNotifier, Notifier


def build_issuers(settings: Settings, metrics: Metrics) -> Mapping[str, Issuer]:
    """The issuers the settings configure (none yet: the backends issue adds them)."""
    return {}


def build_notifier(settings: Settings) -> Notifier:
    return LogNotifier()


def backend_factories() -> dict[str, Any]:
    return {"build_issuers": build_issuers, "build_notifier": build_notifier}
