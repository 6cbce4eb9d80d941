"""The audit chain's outside anchor: its head, written where the database's owner cannot
rewrite it, and the check of the chain against every anchor.

The hash chain proves nothing to someone who can rewrite the whole chain and its head in
the database. Anchors can: every ``audit.anchor.interval`` and at every kill switch, the
broker writes the chain's head (its sequence number and hash) with the hashes of every
record since the previous anchor to storage the broker itself cannot rewrite (S3 Object
Lock in compliance mode, :mod:`broker.audit.s3_anchors`). ``broker audit verify`` then
checks the store against every anchor ever written, and names the first record where they
part: a chain rewritten consistently is caught at its first rewritten anchored record.

Every worker of every replica has an :class:`Anchorer`; each range of records is anchored
once. Anchoring happens under a lock held on every replica (``audit-anchor``), and each
anchor, once written, is claimed in the shared store by its first record
(``audit-anchored:FIRST``, noting its last): the next anchorer, of whichever worker, walks
those claims from where it last knew the anchors ended and starts after the last one.
(Were a claim lost after its anchor was written, the next anchor would overlap it: harmless.)
A version written over an anchor's key (anyone with write access can add one) is checked
like any other, so a forged anchor is one more mismatch, never a way to hide one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Protocol

from broker.audit.recorder import AuditRecorder
from broker.errors import BrokerError
from broker.store.base import AuditStore, LockStore, TokenStore
from broker.store.records import AuditRecord

log = logging.getLogger(__name__)

MAX_HASHES_PER_ANCHOR = 200_000  # about 13 MB of JSON; a longer gap is anchored in parts
ANCHOR_LOCK = "audit-anchor"
CLAIM_PREFIX = "audit-anchored:"
CLAIM_KEEP_SECONDS = 10 * 365 * 86400  # the claims are the shared record of where anchors end


class AnchorerStore(AuditStore, TokenStore, LockStore, Protocol):
    """The chain to anchor, the claims of anchored ranges, and the lock every worker takes."""


@dataclass(frozen=True)
class Anchor:
    """Records ``first_seq`` to ``seq`` of the chain, by hash; ``seq``/``hash`` its head."""

    seq: int
    hash: str
    first_seq: int
    hashes: tuple[str, ...]
    at: float
    reason: str
    where: str = ""  # the anchor's location (bucket, key, version), for messages


class AnchorStore(Protocol):
    """Storage the broker can add anchors to but never change or remove them from."""

    def write(self, anchor: Anchor) -> str:
        """Write ``anchor`` (locked); return where it is."""
        ...

    def anchors(self) -> Iterator[Anchor]:
        """Every anchor written, every version of each, in no particular order."""
        ...

    def last_seq(self) -> int:
        """The highest ``seq`` anchored so far (0: none)."""
        ...

    def check(self) -> None:
        """Raise a BrokerError when anchors could not be locked (no Object Lock...)."""
        ...


@dataclass(eq=False, repr=False)  # a service: no generated equality or repr
class Anchorer:
    """Writes the chain's head (and the hashes since the last anchor) to the anchor store."""

    store: AnchorerStore
    anchors: AnchorStore
    clock: Callable[[], float] = time.time
    _last_seq: int | None = field(default=None, init=False)
    _checked: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    status: str = field(default="ok", init=False)  # for /readyz: "ok" or the last failure

    def anchor(self, reason: str) -> list[str]:
        """Anchor everything appended since the last anchor; return where it went. Raises
        what the store or the anchor storage raise (callers record the failure)."""
        with self._lock:
            try:
                written = self._anchor(reason)
            except Exception as e:
                self.status = f"anchor failed: {type(e).__name__}"
                raise
            self.status = "ok"
            return written

    def _anchor(self, reason: str) -> list[str]:
        if not self._checked:
            self.anchors.check()
            self._checked = True
        with self.store.exclusive(ANCHOR_LOCK):  # one anchorer at a time, on every replica
            if self._last_seq is None:
                self._last_seq = self.anchors.last_seq()
            self._last_seq = self._claimed_upto(self._last_seq)
            head = self.store.audit_head_entry()
            if head is None or head[0] <= self._last_seq:
                return []
            written = []
            while self._last_seq < head[0]:
                first = self._last_seq + 1
                upto = min(head[0], self._last_seq + MAX_HASHES_PER_ANCHOR)
                hashes = tuple(r.hash or "" for r in _between(self.store, first, upto))
                if len(hashes) != upto - first + 1:
                    raise RuntimeError("the chain has gaps: run broker audit verify")
                now = self.clock()
                anchor = Anchor(upto, hashes[-1], first, hashes, now, reason)
                written.append(self.anchors.write(anchor))
                # Claimed once written (under the lock): a failed write leaves it unclaimed.
                self.store.use_token(
                    f"{CLAIM_PREFIX}{first}", f"upto:{upto}", now + CLAIM_KEEP_SECONDS, now
                )
                self._last_seq = upto
            return written

    def _claimed_upto(self, last_seq: int) -> int:
        """Where the anchors end: after ``last_seq``, following the claims of any worker."""
        while (note := self.store.token_note(f"{CLAIM_PREFIX}{last_seq + 1}")) is not None:
            upto = note.removeprefix("upto:")
            if not upto.isdigit() or int(upto) <= last_seq:
                break  # not a claim this code wrote: anchor from here (an overlap at worst)
            last_seq = int(upto)
        return last_seq


@dataclass(frozen=True)
class AnchorReport:
    anchors: int
    records: int  # anchored records compared
    ok: bool
    first_bad_seq: int | None = None
    problem: str = ""


def verify_anchors(
    store: AuditStore, anchors: Iterable[Anchor], head_seq: int | None = None
) -> AnchorReport:
    """Compare the store with every anchor; name the first record where they part."""
    ordered = sorted(anchors, key=lambda a: (a.first_seq, a.seq))
    compared = 0
    worst: tuple[int, str] | None = None
    for anchor in ordered:
        upto = anchor.first_seq + len(anchor.hashes) - 1
        stored = {r.seq: r.hash for r in _between(store, anchor.first_seq, upto)}
        for offset, expected in enumerate(anchor.hashes):
            seq = anchor.first_seq + offset
            compared += 1
            found = stored.get(seq)
            if found == expected:
                continue
            if found is None:
                problem = (
                    f"record {seq} is missing from the store, but the anchor written at "
                    f"{_when(anchor.at)} ({anchor.where}) holds it: records were removed"
                )
            else:
                problem = (
                    f"record {seq} differs from the anchor written at {_when(anchor.at)} "
                    f"({anchor.where}): the chain was rewritten from record {seq} on"
                )
            if worst is None or seq < worst[0]:
                worst = (seq, problem)
            break
    if worst is None and head_seq is not None and ordered:
        highest = max(a.first_seq + len(a.hashes) - 1 for a in ordered)
        if highest > head_seq:
            problem = (
                f"the anchors hold records up to {highest}, the store ends at {head_seq}: "
                "records were removed"
            )
            worst = (head_seq + 1, problem)
    if worst is not None:
        return AnchorReport(len(ordered), compared, False, worst[0], worst[1])
    return AnchorReport(len(ordered), compared, True)


def _between(store: AuditStore, first: int, last: int) -> Iterator[AuditRecord]:
    """Records ``first`` to ``last`` of the chain, in order (fetched in batches)."""
    return takewhile(lambda r: (r.seq or 0) <= last, store.audit_records(after_seq=first - 1))


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def anchor_now(anchorer: Anchorer | None, audit: AuditRecorder, reason: str) -> list[str]:
    """Anchor the audit chain now (when configured); a failure is logged and audited, never
    raised: the chain is still in the store, and the next anchor covers it."""
    if anchorer is None:
        return []
    try:
        written = anchorer.anchor(reason)
    except Exception as e:  # noqa: BLE001 - S3 down must not break the kill switch
        log.warning("audit anchor failed: %s", type(e).__name__)
        message = e.message if isinstance(e, BrokerError) else type(e).__name__
        audit.record("audit_anchor", "failed", "broker", reason=message)
        return []
    for where in written:
        log.info("audit chain anchored", extra={"anchor": where, "why": reason})
    return written
