"""SDK adapters: a ``boto3.Session`` and an ``hvac.Client`` fed by the broker.

Installed with the ``[aws]`` and ``[vault]`` extras; each SDK is imported only when its
adapter is called.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Protocol, Unpack

from broker_client.errors import BrokerClientError
from broker_client.results import Ask, Backend, Issued, Tier, iso, refresh_windows

if TYPE_CHECKING:
    import boto3
    import hvac


class CredentialSource(Protocol):
    """What the adapters need of a client (``BrokerClient`` is one)."""

    def obtain(
        self,
        service: str,
        environment: str,
        tier: Tier,
        backend: Backend,
        region: str | None = None,
        **ask: Unpack[Ask],
    ) -> Issued: ...

    def now(self) -> float: ...


BOTOCORE_METHOD = "custom-agent-credential-broker"


def boto3_session(
    client: CredentialSource,
    service: str,
    environment: str,
    region: str,
    tier: Tier = "read",
    **ask: Unpack[Ask],
) -> boto3.Session:
    """A ``boto3.Session`` whose credentials come from, and refresh through, the broker.

    The first credentials are fetched now (so a refusal raises here). botocore refreshes
    them before they expire (see :func:`~broker_client.results.refresh_windows`). For
    write and delete tiers every refresh is a new request that waits for approval again:
    an approval grants one set of credentials, never a renewable session.
    """
    import boto3
    import botocore.credentials
    import botocore.session

    def fetch() -> Issued:
        return client.obtain(service, environment, tier, "aws", region, **ask)

    def refresh() -> dict[str, Any]:
        return botocore_metadata(fetch())

    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(client.now(), dt.UTC)

    first = fetch()
    advisory, mandatory = refresh_windows(first.seconds_left(client.now()))
    metadata = botocore_metadata(first)
    credentials = botocore.credentials.RefreshableCredentials(
        access_key=metadata["access_key"],
        secret_key=metadata["secret_key"],
        token=metadata["token"],
        expiry_time=first.expires_at,
        refresh_using=refresh,
        method=BOTOCORE_METHOD,
        time_fetcher=now,
        advisory_timeout=advisory,
        mandatory_timeout=mandatory,
    )

    class BrokerProvider(botocore.credentials.CredentialProvider):
        METHOD = BOTOCORE_METHOD
        CANONICAL_NAME = BOTOCORE_METHOD

        def load(self) -> botocore.credentials.Credentials:
            return credentials

    core = botocore.session.Session()
    core.register_component(
        "credential_provider", botocore.credentials.CredentialResolver([BrokerProvider()])
    )
    return boto3.Session(botocore_session=core, region_name=region)


def vault_client(
    client: CredentialSource,
    service: str,
    environment: str,
    tier: Tier = "read",
    *,
    url: str | None = None,
    verify: bool | str = True,
    **ask: Unpack[Ask],
) -> hvac.Client:
    """An ``hvac.Client`` holding a Vault token the broker issued for this scope tier.

    ``url`` overrides the ``vault_addr`` the broker returned (when the agent reaches Vault
    by another name). The token is not renewable through the broker: ask again once
    ``Issued.expires_at`` nears.
    """
    import hvac

    issued = client.obtain(service, environment, tier, "vault", None, **ask)
    (token,) = issued.require("token")
    address = url or issued.credentials.get("vault_addr")
    if not address:
        raise BrokerClientError("the broker returned no vault_addr; pass url=", "invalid_argument")
    return hvac.Client(
        url=address,
        token=token,
        verify=verify,
        namespace=issued.credentials.get("namespace") or None,
    )


def botocore_metadata(issued: Issued) -> dict[str, Any]:
    """The dict botocore's ``RefreshableCredentials`` reads."""
    issued.require_backend("aws", "a boto3 session")
    key, secret = issued.require("access_key_id", "secret_access_key")
    return {
        "access_key": key,
        "secret_key": secret,
        "token": issued.credentials.get("session_token"),
        "expiry_time": iso(issued.expires_at),
    }
