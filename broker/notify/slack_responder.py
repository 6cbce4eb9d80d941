"""Answers to one Slack interaction, through its ``response_url`` (an ephemeral message).

Split from :mod:`broker.notify.slack` (the notifier): this one only answers a click.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from slack_sdk.webhook import WebhookClient

from broker.config import Settings
from broker.notify.base import NotificationFailed
from broker.notify.slack import HOOKS_ORIGIN, TIMEOUT_SECONDS, quiet_logger, slack_failure


class SlackResponder:
    """Answers one interaction through its ``response_url`` (ephemeral: only the clicker sees).

    The URL comes from a signed payload; it is still checked to point at Slack (or at the
    configured API origin, a local stand-in in development), so the broker never posts a
    personal link anywhere else.
    """

    def __init__(self, settings: Settings) -> None:
        api = urlsplit(settings.slack.api_base_url)
        self.origins = {HOOKS_ORIGIN, f"{api.scheme}://{api.netloc}"}

    def allowed(self, response_url: str) -> bool:
        url = urlsplit(response_url)
        return f"{url.scheme}://{url.netloc}" in self.origins and url.scheme in ("https", "http")

    def reply(
        self, response_url: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        if not self.allowed(response_url):
            raise NotificationFailed("slack response_url is not a Slack address")
        client = WebhookClient(response_url, timeout=TIMEOUT_SECONDS, logger=quiet_logger())
        try:
            response = client.send(
                text=text,
                blocks=blocks,
                response_type="ephemeral",
                replace_original=False,
            )
        except Exception as e:  # noqa: BLE001
            raise slack_failure("response", e) from None
        if response.status_code != 200:
            raise NotificationFailed(f"slack response failed: HTTP {response.status_code}")
