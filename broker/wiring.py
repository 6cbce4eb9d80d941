"""Which backends and notifier a real deployment uses, built from settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
import hvac

from broker.audit.s3_anchors import S3Anchors
from broker.config import Settings
from broker.issuers.aws_accounts import AwsAccounts
from broker.issuers.aws_sts import StsIssuer, aws_session
from broker.issuers.base import Issuer
from broker.issuers.resilience import CircuitBreaker, RetryPolicy
from broker.issuers.vault_common import VaultCaller, make_client
from broker.issuers.vault_database import DatabaseIssuer
from broker.issuers.vault_login import login_for
from broker.issuers.vault_token import VaultTokenIssuer
from broker.metrics import Metrics
from broker.notify.base import LogNotifier, Notifier


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(deadline_seconds=settings.upstream_deadline_seconds)


def circuit(settings: Settings, backend: str) -> CircuitBreaker:
    return CircuitBreaker(
        backend,
        threshold=settings.circuit_failures,
        cooldown_seconds=settings.circuit_cooldown_seconds,
    )


def build_sts(settings: Settings) -> StsIssuer:
    """STS with the broker's own credentials from boto3's standard chain."""
    return StsIssuer(
        aws_session(settings.aws.default_region),
        endpoint_url=settings.aws.endpoint_url,
        regional=settings.aws.regional_sts,
        retry=retry_policy(settings),
        circuit=circuit(settings, "aws"),
    )


def build_vault_client(settings: Settings) -> hvac.Client | None:
    if not settings.vault.url:
        return None
    return make_client(
        settings.vault.url,
        settings.vault.token,
        settings.vault.namespace,
        settings.vault.verify_tls,
        timeout=min(5.0, settings.upstream_deadline_seconds),
        login=login_for(settings.vault.auth, settings.vault.token),
    )


def build_issuers(settings: Settings, metrics: Metrics) -> Mapping[str, Issuer]:
    """AWS always (credentials from the standard chain); Vault and database when configured."""
    issuers: dict[str, Issuer] = {"aws": build_sts(settings)}
    client = build_vault_client(settings)
    if client is not None and settings.vault.url:
        retry = retry_policy(settings)
        issuers["vault"] = VaultTokenIssuer(
            VaultCaller("vault", client, retry, circuit(settings, "vault")),
            settings.vault.public_url or settings.vault.url,
            settings.vault.token_role,
        )
        issuers["database"] = DatabaseIssuer(
            VaultCaller("database", client, retry, circuit(settings, "database"))
        )
    return issuers


def build_accounts(settings: Settings, sts: StsIssuer) -> AwsAccounts:
    return AwsAccounts(sts, settings.aws.admin_role_arn, settings.aws.broker_principal_arn)


def accounts_for(settings: Settings, issuers: Mapping[str, Issuer]) -> AwsAccounts | None:
    """IAM access for the kill switch, through the running STS issuer's credentials."""
    sts = issuers.get("aws")
    return build_accounts(settings, sts) if isinstance(sts, StsIssuer) else None


def build_notifier(settings: Settings) -> Notifier:
    """Slack (bot token or incoming webhook) when configured; otherwise approvers use the page."""
    from broker.approvals.links import LinkSigner
    from broker.keys import load_keys
    from broker.notify.slack import SlackNotifier

    if not SlackNotifier.configured(settings):
        return LogNotifier(settings.alert_log)
    secret = load_keys(settings.state_dir).link_secret
    signer = LinkSigner(secret, settings.public_url, settings.approvals.link_ttl_seconds)
    return SlackNotifier(settings, signer)


def build_anchors(settings: Settings) -> S3Anchors | None:
    """The audit anchor's bucket, with the broker's own AWS credentials, when configured."""
    anchor = settings.audit_anchor
    if anchor is None:
        return None
    client = boto3.Session(region_name=anchor.region or settings.aws.default_region).client(
        "s3", endpoint_url=settings.aws.endpoint_url
    )
    return S3Anchors(client, anchor.bucket, anchor.prefix, anchor.retention_days)


def backend_factories() -> dict[str, Any]:
    return {
        "build_issuers": build_issuers,
        "build_notifier": build_notifier,
        "build_accounts": accounts_for,
        "build_anchors": build_anchors,
    }
