"""The agent client, kept importable as ``broker.client`` for code written against the
server package; it lives in the agent-credential-broker-client distribution
(``broker_client``), which agents install alone."""

from __future__ import annotations

from broker_client import *  # noqa: F403
from broker_client import __all__ as __all__
