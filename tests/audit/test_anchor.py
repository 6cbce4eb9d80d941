"""The chain's outside anchor: S3 with Object Lock in compliance mode (the AWS stand-in).

Whoever owns the database can rewrite the whole chain and its head consistently: the chain
alone then verifies. The anchors cannot be rewritten (moto enforces compliance mode: not
even its root deletes a locked version), so `broker audit verify` compares the store with
them and names the first record where they part.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from broker.audit.anchor import Anchorer, verify_anchors
from broker.audit.anchor_settings import AnchorSettings
from broker.audit.chain import GENESIS, record_hash
from broker.audit.s3_anchors import S3Anchors
from broker.errors import UpstreamUnavailable
from broker.store.sql import SqlStore
from tests.audit.helpers import fill, write_config
from tests.fixtures.broker import READ_PAYMENTS, make_broker
from tests.fixtures.cli import run_cli
from tests.fixtures.moto import Moto, denied

ANCHOR_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "s3:PutObject",
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:ListBucket",
                "s3:ListBucketVersions",
                "s3:GetBucketObjectLockConfiguration",
            ],
            "Resource": ["arn:aws:s3:::*-anchors", "arn:aws:s3:::*-anchors/*"],
        }
    ],
}


@pytest.fixture()
def bucket(moto: Moto) -> str:
    """A bucket with Object Lock; the broker's own IAM user may write and read anchors."""
    name = f"audit-{secrets.token_hex(4)}-anchors"
    moto.client("s3", moto.admin_key).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    iam = moto.client("iam", moto.admin_key)
    iam.put_user_policy(
        UserName="broker", PolicyName="anchors", PolicyDocument=json.dumps(ANCHOR_POLICY)
    )
    return name


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SqlStore]:
    (tmp_path / "state").mkdir()
    made = SqlStore.from_url(f"sqlite:///{tmp_path / 'state' / 'broker.db'}")
    yield made
    made.close()


def _anchors(moto: Moto, bucket: str) -> S3Anchors:
    return S3Anchors(moto.client("s3"), bucket, "broker-audit-anchors/", retention_days=1)


def rewrite_from(store: SqlStore, seq: int) -> None:
    """The intruder's rewrite: record ``seq`` changed, every hash after it and the head
    recomputed, so the chain alone verifies."""
    records = list(store.audit_records())
    prev = GENESIS if seq == 1 else records[seq - 2].hash
    with store.engine.begin() as connection:
        for record in records[seq - 1 :]:
            changed = replace(record, actor="agent:innocent") if record.seq == seq else record
            digest = record_hash(changed, record.seq or 0, prev or GENESIS)
            connection.execute(
                text("UPDATE audit_log SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"a": changed.actor, "p": prev, "h": digest, "s": record.seq},
            )
            prev = digest
        connection.execute(text("UPDATE audit_head SET hash = :h"), {"h": prev})


def _config(tmp_path: Path, moto: Moto, bucket: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = write_config(tmp_path)
    config.write_text(
        config.read_text()
        + f"aws: {{endpoint_url: '{moto.url}'}}\naudit:\n  anchor: {{bucket: {bucket}}}\n"
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.broker_key["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.broker_key["aws_secret_access_key"])
    return config


def test_a_chain_rewritten_whole_is_caught_by_verify(
    tmp_path: Path,
    store: SqlStore,
    moto: Moto,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(store, 6)
    anchorer = Anchorer(store, _anchors(moto, bucket))
    (first,) = anchorer.anchor("periodic")
    assert first.startswith(f"s3://{bucket}/broker-audit-anchors/") and " version " in first
    fill(store, 4, start=1_700_001_000.0)
    assert len(anchorer.anchor("periodic")) == 1
    assert anchorer.anchor("periodic") == []  # nothing new: nothing written
    config = _config(tmp_path, moto, bucket, monkeypatch)
    ok = run_cli(capsys, "audit", "verify", "--config", str(config))
    assert ok.code == 0, ok.out + ok.err
    assert "OK: 10 anchored record(s) match 2 anchor(s)" in ok.out

    rewrite_from(store, 4)
    alone = run_cli(capsys, "audit", "verify", "--config", str(config), "--no-anchors")
    assert alone.code == 0  # the chain alone cannot tell: it was rewritten consistently
    caught = run_cli(capsys, "audit", "verify", "--config", str(config))
    assert caught.code == 1
    assert caught.out.startswith("TAMPERED: record 4 differs from the anchor written at ")
    assert "the chain was rewritten from record 4 on" in caught.out


def test_removed_records_are_caught(store: SqlStore, moto: Moto, bucket: str) -> None:
    fill(store, 5)
    anchors = _anchors(moto, bucket)
    Anchorer(store, anchors).anchor("periodic")
    with store.engine.begin() as connection:
        last = connection.execute(text("SELECT hash FROM audit_log WHERE seq = 3")).scalar_one()
        connection.execute(text("DELETE FROM audit_log WHERE seq > 3"))
        connection.execute(text("UPDATE audit_head SET seq = 3, hash = :h"), {"h": last})
    report = verify_anchors(store, anchors.anchors(), store.audit_head())
    assert not report.ok and report.first_bad_seq == 4
    assert report.problem.startswith("record 4 is missing from the store")


def test_anchors_cannot_be_deleted_nor_forged_away(
    store: SqlStore, moto: Moto, bucket: str
) -> None:
    fill(store, 3)
    anchors = _anchors(moto, bucket)
    Anchorer(store, anchors).anchor("kill switch")
    admin = moto.client("s3", moto.admin_key)
    (version,) = admin.list_object_versions(Bucket=bucket)["Versions"]
    assert denied(
        lambda: admin.delete_object(
            Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"]
        )
    )
    # A forged version over the key (without a lock) does not replace the locked one.
    rewrite_from(store, 2)
    forged = json.loads(admin.get_object(Bucket=bucket, Key=version["Key"])["Body"].read())
    forged["hashes"] = [r.hash for r in store.audit_records()]
    admin.put_object(Bucket=bucket, Key=version["Key"], Body=json.dumps(forged).encode())
    report = verify_anchors(store, anchors.anchors(), store.audit_head())
    assert not report.ok and report.first_bad_seq == 2


def test_a_bucket_without_object_lock_is_refused(store: SqlStore, moto: Moto) -> None:
    name = f"plain-{secrets.token_hex(4)}-anchors"
    moto.client("s3", moto.admin_key).create_bucket(Bucket=name)
    fill(store, 1)
    anchorer = Anchorer(store, _anchors(moto, name))
    with pytest.raises(UpstreamUnavailable, match="has no Object Lock"):
        anchorer.anchor("periodic")
    assert anchorer.status == "anchor failed: UpstreamUnavailable"


def test_the_kill_switch_anchors_the_chain(tmp_path: Path, moto: Moto, bucket: str) -> None:
    broker = make_broker(
        tmp_path, admins=("agent:ops",), audit_anchor=AnchorSettings(bucket=bucket)
    )
    try:
        anchors = _anchors(moto, bucket)
        broker.services.anchorer = Anchorer(broker.services.store, anchors, broker.clock)
        assert broker.post("/v1/credentials", READ_PAYMENTS).status_code == 200
        revoked = broker.client.post(
            "/v1/revoke",
            json={"agent": "agent:payments-copilot", "reason": "drill"},
            headers=broker.headers("ops"),
        )
        assert revoked.status_code == 200
        (anchor,) = list(anchors.anchors())
        assert anchor.reason == "kill switch"
        head = broker.services.store.audit_head_entry()
        assert head is not None and (anchor.seq, anchor.hash) == head  # the revoke included
        assert broker.services.readiness()["audit_anchor"] == "ok"
    finally:
        broker.services.close()


def test_replicas_anchor_once_per_interval(tmp_path: Path, moto: Moto, bucket: str) -> None:
    """Every worker of every replica runs the anchoring loop; the first to claim the
    interval anchors (at once after a start), the others find it claimed."""
    import time

    from broker.services import build_services

    first = make_broker(
        tmp_path / "a", audit_anchor=AnchorSettings(bucket=bucket, interval_seconds=60)
    )
    anchors = _anchors(moto, bucket)
    second = build_services(
        first.services.settings, store=first.services.store, anchors=anchors, issuers={}
    )
    try:
        first.services.anchorer = Anchorer(first.services.store, anchors)
        assert first.post("/v1/credentials", READ_PAYMENTS).status_code == 200
        first.services.start_background()
        second.start_background()
        deadline = time.monotonic() + 10
        while not list(anchors.anchors()) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        (anchor,) = list(anchors.anchors())
        assert anchor.reason == "periodic" and anchor.first_seq == 1
    finally:
        first.services.close()


def _ranges(anchors: S3Anchors) -> list[tuple[int, int]]:
    return sorted((a.first_seq, a.seq) for a in anchors.anchors())


def test_workers_anchor_each_range_once(store: SqlStore, moto: Moto, bucket: str) -> None:
    """Each gunicorn worker has an Anchorer of its own on one store: whichever anchors next
    starts where the last anchor of any of them ended, so no record is anchored twice."""
    one, two = Anchorer(store, _anchors(moto, bucket)), Anchorer(store, _anchors(moto, bucket))
    fill(store, 3)
    assert len(one.anchor("periodic")) == 1
    fill(store, 2, start=1_700_001_000.0)
    assert len(two.anchor("kill switch")) == 1
    fill(store, 4, start=1_700_002_000.0)
    assert len(one.anchor("periodic")) == 1  # its own last anchor is behind: not the start
    assert two.anchor("periodic") == []  # nothing new since the last anchor of either
    assert _ranges(_anchors(moto, bucket)) == [(1, 3), (4, 5), (6, 9)]
    assert verify_anchors(store, _anchors(moto, bucket).anchors(), 9).ok


def test_workers_anchoring_at_once_write_disjoint_ranges(
    store: SqlStore, moto: Moto, bucket: str
) -> None:
    workers = [Anchorer(store, _anchors(moto, bucket)) for _ in range(4)]
    for worker in workers:
        worker.anchor("periodic")  # each has read where the anchors end (nothing yet)
    fill(store, 5)
    start = threading.Barrier(len(workers))

    def run(worker: Anchorer) -> None:
        start.wait()
        worker.anchor("kill switch")

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert _ranges(_anchors(moto, bucket)) == [(1, 5)]
