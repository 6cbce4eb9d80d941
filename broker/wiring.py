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
    """Slack (bot token or incoming webhook) when configured; otherwise approvers use the page."""
    from broker.approvals.links import LinkSigner
    from broker.keys import load_keys
    from broker.notify.slack import SlackNotifier

    if not SlackNotifier.configured(settings):
        return LogNotifier()
    secret = load_keys(settings.state_dir).link_secret
    signer = LinkSigner(secret, settings.public_url, settings.approvals.link_ttl_seconds)
    return SlackNotifier(settings, signer)


def backend_factories() -> dict[str, Any]:
    return {"build_issuers": build_issuers, "build_notifier": build_notifier}
