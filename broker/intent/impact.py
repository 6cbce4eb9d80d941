"""Impact before approval: what the destructive part of an intent would destroy, measured.

Which things to measure is pure (:func:`impact_targets`). Measuring is I/O behind one
seam, :class:`ImpactProbe` (AWS in :mod:`broker.intent.impact_aws`, PostgreSQL in
:mod:`broker.intent.impact_postgres`), with read credentials and a deadline:
:func:`measure_impact` returns by the deadline whatever happens, and a target it could
not measure in time says "impact unknown". It never raises, never blocks an approval and
never changes what is granted; it only informs the approver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from broker.intent.classify import change_destroys, operation_destroys
from broker.intent.model import AwsOperation, DatabaseOperation, Intent, Operation

ImpactKind = Literal[
    "s3_objects", "dynamodb_items", "stack_resources", "queue_messages", "table_rows", "other"
]
DEFAULT_TIMEOUT_SECONDS = 3.0
MAX_TARGETS = 20  # an approver reads a few figures; past that, the rest say "not measured"

# Which destructive actions destroy what a probe can count.
_MEASURED_BY: dict[str, ImpactKind] = {
    "s3:DeleteObject": "s3_objects",
    "s3:DeleteObjectVersion": "s3_objects",
    "s3:DeleteBucket": "s3_objects",
    "s3:PutLifecycleConfiguration": "s3_objects",
    "dynamodb:DeleteTable": "dynamodb_items",
    "dynamodb:DeleteItem": "dynamodb_items",
    "dynamodb:BatchWriteItem": "dynamodb_items",
    "cloudformation:DeleteStack": "stack_resources",
    "sqs:DeleteQueue": "queue_messages",
    "sqs:PurgeQueue": "queue_messages",
}

# Bucket-level actions that lose (or let lose) every object in the bucket.
_WHOLE_BUCKET = frozenset({"s3:DeleteBucket", "s3:PutLifecycleConfiguration"})


@dataclass(frozen=True)
class ImpactTarget:
    """One thing to measure: what ``subject`` names, and the operation that destroys it.

    ``subject`` is an ARN (possibly ending in a key pattern for S3) or ``schema.table``.
    """

    kind: ImpactKind
    subject: str
    because: str


@dataclass(frozen=True)
class Impact:
    target: ImpactTarget
    measured: bool
    count: int | None = None
    size_bytes: int | None = None
    reason: str = ""  # why unknown, or what the figure is (an estimate...)

    def text(self) -> str:
        """The line an approver reads: "deletes up to 1,243 objects, 4.2 GB"."""
        noun = _NOUNS[self.target.kind]
        if not self.measured:
            partial = f"at least {self.count:,} {noun}; " if self.count else ""
            return f"impact unknown: {partial}{self.reason}"
        size = f", {format_bytes(self.size_bytes)}" if self.size_bytes is not None else ""
        verb = _VERBS[self.target.kind]
        note = f" ({self.reason})" if self.reason else ""
        return f"{verb} {self.count:,} {noun}{size}{note}"


_NOUNS: dict[ImpactKind, str] = {
    "s3_objects": "objects",
    "dynamodb_items": "items",
    "stack_resources": "resources",
    "queue_messages": "messages",
    "table_rows": "rows",
    "other": "things",
}
_VERBS: dict[ImpactKind, str] = {
    "s3_objects": "deletes up to",
    "dynamodb_items": "deletes about",
    "stack_resources": "deletes",
    "queue_messages": "deletes about",
    "table_rows": "deletes up to about",
    "other": "deletes",
}


class ImpactProbe(Protocol):
    """Measures targets of some kinds with read credentials, giving up at ``deadline``
    (a :func:`time.monotonic` instant); may raise, which :func:`measure_impact` catches."""

    kinds: frozenset[ImpactKind]

    def measure(self, target: ImpactTarget, deadline: float) -> Impact: ...


def format_bytes(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def impact_targets(intent: Intent) -> tuple[ImpactTarget, ...]:
    """What the destructive operations (and changes CloudFormation will make) would destroy."""
    operations: list[Operation] = list(intent.operations)
    for change in intent.changes:
        if change_destroys(change):
            operations += [op for op in change.operations if op.action in _MEASURED_BY]
    targets: dict[tuple[ImpactKind, str], ImpactTarget] = {}
    for op in operations:
        if operation_destroys(op) is None and not (
            isinstance(op, AwsOperation) and op.action in _MEASURED_BY
        ):
            continue
        target = _target(op)
        if target is not None:
            targets.setdefault((target.kind, target.subject), target)
    return tuple(targets.values())


def _target(op: Operation) -> ImpactTarget | None:
    if isinstance(op, DatabaseOperation):
        if {"DELETE", "TRUNCATE"} & set(op.privileges):
            return ImpactTarget("table_rows", op.table, str(op))
        return None
    if isinstance(op, AwsOperation):
        kind = _MEASURED_BY.get(op.action)
        if kind == "s3_objects" and op.action in (
            "s3:DeleteBucket",
            "s3:PutLifecycleConfiguration",
        ):
            return ImpactTarget(kind, f"{op.resource}/*", str(op))
        return ImpactTarget(kind or "other", op.resource, str(op))
    return ImpactTarget("other", op.path, str(op))


def measure_impact(
    targets: Sequence[ImpactTarget],
    probes: Iterable[ImpactProbe],
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[Impact, ...]:
    """Measure every target in parallel; by ``timeout_seconds`` return, known or not."""
    deadline = clock() + timeout_seconds
    by_kind = {kind: probe for probe in probes for kind in probe.kinds}
    results: list[Impact | None] = [None] * len(targets)
    futures: dict[Future[Impact], int] = {}
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="impact")
    try:
        for index, target in enumerate(targets):
            probe = by_kind.get(target.kind)
            if probe is None or index >= MAX_TARGETS:
                results[index] = Impact(target, False, reason="the broker does not measure this")
                continue
            futures[executor.submit(probe.measure, target, deadline)] = index
        wait(futures, timeout=max(0.0, deadline - clock()))
        for future, index in futures.items():
            results[index] = _outcome(future, targets[index], timeout_seconds)
    finally:
        # A probe still running finishes its current call and sees the deadline passed.
        executor.shutdown(wait=False, cancel_futures=True)
    return tuple(r for r in results if r is not None)


def _outcome(future: Future[Impact], target: ImpactTarget, timeout: float) -> Impact:
    if not future.done():
        return Impact(target, False, reason=f"not measured within {timeout:g} s")
    error = future.exception()
    if error is not None:
        return Impact(target, False, reason=f"could not be measured ({type(error).__name__})")
    impact = future.result()
    return impact if impact.target == target else replace(impact, target=target)
