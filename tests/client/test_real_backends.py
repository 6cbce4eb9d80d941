"""The agent side end to end on real backends: moto (STS with IAM enforcement), OpenBao.

An AWS SDK profile whose ``credential_process`` is ``broker creds`` lists an S3 bucket
with credentials the broker got from STS, and is refused a write the read tier lacks; the
Python client's ``vault_client`` reads a KV secret with a token the broker minted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import hvac
import pytest
from botocore.exceptions import ClientError
from broker_client import BrokerClient

from tests.client.conftest import LiveBroker, start_live_broker
from tests.fixtures.backends import Backends

BROKER = str(Path(sys.executable).with_name("broker"))
AGENT = "shop-bot"


@pytest.fixture()
def real(tmp_path: Path, backends: Backends) -> Iterator[LiveBroker]:
    """A broker over HTTP whose issuers are STS on moto and OpenBao, for the shop scope."""
    backends.apply(yes=True)
    bucket = f"{backends.name}-prod-data"
    backends.admin("s3").create_bucket(Bucket=bucket)
    backends.admin("s3").put_object(Bucket=bucket, Key="orders/1.json", Body=b"{}")
    backends.vault_client.secrets.kv.v2.create_or_update_secret(
        path=f"{backends.name}/prod/config", secret={"feature": "on"}, mount_point="secret"
    )
    made, stop = start_live_broker(tmp_path, backends.issuers)
    yield made
    stop()


def test_aws_sdk_lists_a_bucket_through_a_credential_process_profile(
    real: LiveBroker, backends: Backends, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile shop-read]\n"
        f"credential_process = {BROKER} creds --service {backends.name} --environment prod "
        "--region us-east-1 --format credential-process\n"
        "region = us-east-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("BROKER_URL", real.url)
    monkeypatch.setenv("BROKER_TOKEN", real.token(AGENT))
    monkeypatch.setenv("BROKER_CACHE_DIR", str(tmp_path / "cache"))
    s3 = boto3.Session(profile_name="shop-read").client("s3", endpoint_url=backends.moto.url)
    bucket = f"{backends.name}-prod-data"
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["orders/1.json"]
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="orders/2.json", Body=b"{}")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert real.requests.count("POST /v1/credentials") == 1


def test_vault_client_reads_kv_with_a_token_from_the_broker(
    real: LiveBroker, backends: Backends
) -> None:
    client = BrokerClient(real.url, real.token(AGENT))
    vault = client.vault_client(backends.name, "prod")
    assert isinstance(vault, hvac.Client) and vault.is_authenticated()
    secret = vault.secrets.kv.v2.read_secret_version(
        path=f"{backends.name}/prod/config", mount_point="secret", raise_on_deleted_version=True
    )
    assert secret["data"]["data"] == {"feature": "on"}
    with pytest.raises(hvac.exceptions.Forbidden):
        vault.secrets.kv.v2.create_or_update_secret(
            path=f"{backends.name}/prod/config", secret={"feature": "off"}, mount_point="secret"
        )
