"""Anchors in S3 with Object Lock in compliance mode, through boto3.

Each anchor is one JSON object, ``{prefix}{seq:020d}-{first_seq:020d}-{nonce}.json``,
written with ``ObjectLockMode=COMPLIANCE`` and a retain-until date ``retention_days``
ahead: until then no one (the broker, the bucket's owner, the account's root) can delete
it or shorten its lock. The bucket must have Object Lock enabled (set when it is created);
the broker checks that before its first anchor and refuses to pretend otherwise.

Reading back lists every version of every key (a new version written over a key does not
hide the first one) and counts only versions locked in compliance mode.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from broker.audit.anchor import Anchor
from broker.errors import UpstreamUnavailable

COMPLIANCE = "COMPLIANCE"
NO_LOCK = "ObjectLockConfigurationNotFoundError"
BACKEND = "audit-anchor"


def _failed(what: str, error: Exception) -> UpstreamUnavailable:
    code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
    return UpstreamUnavailable(
        f"the audit anchor bucket: {what} failed ({code or type(error).__name__})", BACKEND
    )


class S3Anchors:
    """The AnchorStore on an S3 bucket with Object Lock."""

    def __init__(self, client: Any, bucket: str, prefix: str, retention_days: int) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.retention = dt.timedelta(days=retention_days)

    def where(self, key: str, version: str | None = None) -> str:
        return f"s3://{self.bucket}/{key}" + (f" version {version}" if version else "")

    def check(self) -> None:
        try:
            answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != NO_LOCK:
                raise _failed("reading its Object Lock configuration", e) from e
            answer = {}  # what AWS answers for a bucket created without Object Lock
        except BotoCoreError as e:
            raise _failed("reading its Object Lock configuration", e) from e
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise UpstreamUnavailable(
                f"the audit anchor bucket {self.bucket} has no Object Lock: anchors there "
                "could be deleted; create it with Object Lock enabled",
                BACKEND,
            )

    def write(self, anchor: Anchor) -> str:
        key = f"{self.prefix}{anchor.seq:020d}-{anchor.first_seq:020d}-{secrets.token_hex(4)}.json"
        body = {
            "seq": anchor.seq,
            "hash": anchor.hash,
            "first_seq": anchor.first_seq,
            "hashes": list(anchor.hashes),
            "at": anchor.at,
            "reason": anchor.reason,
        }
        until = dt.datetime.now(dt.UTC) + self.retention
        try:
            answer = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(body, separators=(",", ":")).encode(),
                ContentType="application/json",
                ObjectLockMode=COMPLIANCE,
                ObjectLockRetainUntilDate=until,
            )
        except (BotoCoreError, ClientError) as e:
            raise _failed("writing an anchor", e) from e
        return self.where(key, answer.get("VersionId"))

    def _versions(self) -> Iterator[tuple[str, str | None]]:
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for version in page.get("Versions", ()):
                    yield version["Key"], version.get("VersionId")
        except (BotoCoreError, ClientError) as e:
            raise _failed("listing anchors", e) from e

    def last_seq(self) -> int:
        highest = 0
        for key, _ in self._versions():
            name = key[len(self.prefix) :]
            head = name.split("-", 1)[0]
            if head.isdigit():
                highest = max(highest, int(head))
        return highest

    def anchors(self) -> Iterator[Anchor]:
        for key, version in self._versions():
            try:
                got = self.client.get_object(
                    Bucket=self.bucket, Key=key, **({"VersionId": version} if version else {})
                )
                if got.get("ObjectLockMode") != COMPLIANCE:
                    continue  # not an anchor the broker wrote: anyone could change it
                data = json.loads(got["Body"].read())
            except (BotoCoreError, ClientError) as e:
                raise _failed("reading an anchor", e) from e
            except ValueError:
                continue
            try:
                yield Anchor(
                    seq=int(data["seq"]),
                    hash=str(data["hash"]),
                    first_seq=int(data["first_seq"]),
                    hashes=tuple(str(h) for h in data["hashes"]),
                    at=float(data["at"]),
                    reason=str(data.get("reason", "")),
                    where=self.where(key, version),
                )
            except (KeyError, TypeError, ValueError):
                continue
