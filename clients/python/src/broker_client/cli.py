"""``broker-creds``: credentials for agents and their tools, in the shape each tool reads.

``--format credential-process`` prints the AWS CLI/SDK ``credential_process`` document, so
``aws`` and boto3 fetch and refresh credentials by themselves; ``env`` prints ``export``
lines, ``vault`` the ``VAULT_ADDR``/``VAULT_TOKEN`` exports, ``json`` the broker's body.

A write/delete request waits for its approvers with a status line (see
:mod:`broker_client.progress`), then collects. A local cache (:mod:`broker_client.cache`)
answers repeated calls while the credentials are still well within their lifetime, once
the broker has confirmed within the last seconds that they were not revoked, and
remembers an open request so that running the same command again resumes waiting instead
of asking twice.

Exit codes (also in docs/agents.md): 0 printed; 1 other error from the broker or here;
2 usage; 3 denied (by policy, an approver or an operator); 4 expired (or already
collected); 5 frozen (kill switch); 6 broker unreachable; 7 still pending (``--no-wait``
or ``--wait-timeout``); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from broker_client.cache import CHECK_SECONDS, LocalCache, default_cache_dir
from broker_client.client import BrokerClient
from broker_client.errors import (
    ApprovalPending,
    BrokerClientError,
    BrokerUnreachable,
    Denied,
    Expired,
    Frozen,
)
from broker_client.intents import digest, load_intent
from broker_client.options import (
    EXIT_USAGE,
    Parser,
    UsageError,
    add_connection_options,
    bounded,
    broker_url,
    current_token,
    duration,
    make_client,
    run_main,
    token_identity,
)
from broker_client.progress import Progress
from broker_client.results import Issued

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_DENIED = 3
EXIT_EXPIRED = 4
EXIT_FROZEN = 5
EXIT_UNREACHABLE = 6
EXIT_PENDING = 7
EXIT_INTERRUPTED = 130

FORMATS = ("credential-process", "env", "json", "vault")
#: What to do with cached credentials when the broker cannot confirm they still stand.
OFFLINE_RULES = ("fail", "cached")
__all__ = ["EXIT_USAGE", "main", "parser"]


def parser(prog: str = "broker-creds") -> Parser:
    p = Parser(
        prog=prog,
        description="Print short-lived credentials for a scope tier. read is issued at once; "
        "write and delete wait for approval (status on the terminal) and are then collected. "
        "Exit codes: 0 ok, 1 error, 2 usage, 3 denied, 4 expired, 5 frozen, 6 broker "
        "unreachable, 7 still pending, 130 interrupted.",
    )
    p.add_argument("--service", required=True, help="The scope's service, e.g. payments.")
    p.add_argument("--environment", required=True, help="The scope's environment, e.g. prod.")
    p.add_argument("--region", help="AWS region (required for --backend aws).")
    p.add_argument("--tier", choices=("read", "write", "delete"), default="read")
    p.add_argument("--backend", choices=("aws", "vault", "database"), default="aws")
    p.add_argument(
        "--resource",
        dest="resources",
        action="append",
        default=[],
        help="Narrow to this ARN, KV path or schema.table (repeatable).",
    )
    p.add_argument(
        "--intent",
        metavar="FILE",
        help="What you will do, instead of --resource: the JSON of terraform show -json PLAN, "
        "of aws cloudformation describe-change-set, or {\"operations\": [...]} ('-': stdin). "
        "The credential can do exactly that; the intent decides the tier.",
    )
    p.add_argument("--duration", type=duration, help="Lifetime wanted (clamped to the tier's).")
    p.add_argument("--justification", default="", help="Why: shown to the approvers.")
    p.add_argument(
        "--format",
        dest="output_format",
        choices=FORMATS,
        default="json",
        help="credential-process (AWS), env (export lines), json (default), vault.",
    )
    add_connection_options(p)
    wait = p.add_argument_group("waiting for approval")
    wait.add_argument(
        "--wait-timeout",
        type=bounded(0),
        help="Give up waiting after this many seconds (exit 7; the request stays open and "
        "the next run resumes it). Default: until it is decided or expires.",
    )
    wait.add_argument("--no-wait", action="store_true", help="Same as --wait-timeout 0.")
    wait.add_argument(
        "--progress",
        choices=("auto", "stderr", "none"),
        default=os.environ.get("BROKER_PROGRESS", "auto"),
        help="Where the wait is shown: auto (the terminal, even under an SDK's "
        "credential_process, else stderr), stderr, none [env BROKER_PROGRESS].",
    )
    cache = p.add_argument_group("local cache")
    cache.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="Do not use the local cache of credentials and open requests.",
    )
    cache.add_argument(
        "--cache-dir",
        type=Path,
        default=os.environ.get("BROKER_CACHE_DIR") or None,
        help="Where the cache lives [env BROKER_CACHE_DIR; default "
        "$XDG_CACHE_HOME/agent-credential-broker].",
    )
    cache.add_argument(
        "--check-interval",
        type=bounded(0, 300),
        default=os.environ.get("BROKER_CHECK_INTERVAL") or str(CHECK_SECONDS),
        help="Seconds the broker's word that cached credentials still stand is trusted "
        f"(default {CHECK_SECONDS:g}) [env BROKER_CHECK_INTERVAL].",
    )
    cache.add_argument(
        "--offline",
        choices=OFFLINE_RULES,
        default=os.environ.get("BROKER_OFFLINE", "fail"),
        help="When the broker cannot confirm that cached credentials still stand: fail "
        "(default: exit 6, nothing printed) or cached (print them with a warning) "
        "[env BROKER_OFFLINE].",
    )
    return p


def main(argv: Sequence[str] | None = None, prog: str = "broker-creds") -> int:
    """Run ``broker-creds``; returns the exit code."""
    args = parser(prog).parse_args(argv)
    return run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.output_format == "credential-process" and args.backend != "aws":
        raise UsageError("--format credential-process needs --backend aws")
    if args.output_format == "vault" and args.backend != "vault":
        raise UsageError("--format vault needs --backend vault")
    if args.offline not in OFFLINE_RULES:
        raise UsageError(f"BROKER_OFFLINE must be one of {', '.join(OFFLINE_RULES)}")
    if args.intent is not None and args.resources:
        raise UsageError("--intent names the resources: give it or --resource, not both")
    try:
        intent = load_intent(args.intent) if args.intent is not None else None
    except BrokerClientError as e:
        raise UsageError(e.message) from None
    client, tokens = make_client(args)
    request: dict[str, Any] = {
        "service": args.service,
        "environment": args.environment,
        "region": args.region,
        "tier": args.tier,
        "backend": args.backend,
        "resources": list(args.resources),
        "duration": args.duration,
    }
    if intent is not None:
        # The cache is keyed by the intent's fingerprint; the intent itself is never stored.
        request["intent_digest"] = digest(intent)
    store = None
    key = ""
    if args.cache:
        identity = token_identity(current_token(tokens))
        owner = LocalCache.owner_of(broker_url(args), identity)
        store = LocalCache(args.cache_dir or default_cache_dir(), warn=_warn, owner=owner)
        key = LocalCache.key(broker_url(args), identity, request)
    progress = Progress.for_terminal(time.time, args.progress)
    run = CredsRun(client, store, key, progress, args.offline, args.check_interval, intent)
    try:
        issued = run.obtain(request, args.justification, 0.0 if args.no_wait else args.wait_timeout)
    except KeyboardInterrupt:
        progress.close()
        _warn(
            "interrupted; an open request stays open: run the same command again to keep "
            "waiting for it"
        )
        return EXIT_INTERRUPTED
    except BrokerClientError as e:
        progress.close()
        text, code = explain(e)
        _warn(text)
        return code
    progress.close()
    return _print(issued, args.output_format)


class CredsRun:
    """One ``broker-creds`` run: the cache (checked with the broker), then the broker."""

    def __init__(
        self,
        client: BrokerClient,
        store: LocalCache | None,
        key: str,
        progress: Progress,
        offline: str = "fail",
        check_interval: float = CHECK_SECONDS,
        intent: dict[str, Any] | None = None,
    ) -> None:
        self.intent = intent
        self.client = client
        self.store = store
        self.key = key
        self.progress = progress
        self.offline = offline
        self.check_interval = check_interval

    def obtain(
        self, request: dict[str, Any], justification: str, wait_timeout: float | None
    ) -> Issued:
        """Cached credentials that still stand, or the broker's (resuming an open request)."""
        hit = self.cached()
        if hit is not None:
            return hit
        store = self.store
        if store is None:
            return self._request(request, justification, wait_timeout)
        note = "another broker-creds is asking the same; waiting"
        with store.lock(self.key, lambda: self.progress.note(note)):
            hit = self.cached()  # a process we waited for may have cached it
            if hit is not None:
                return hit
            issued = self._resume(wait_timeout) or self._request(
                request, justification, wait_timeout
            )
            store.put_issued(self.key, issued)
            return issued

    def cached(self) -> Issued | None:
        """Fresh cached credentials the broker confirmed (within seconds) still stand.

        Revoked or frozen ones are dropped from the cache file. When the broker cannot be
        reached the ``offline`` rule decides: ``fail`` raises, ``cached`` serves them.
        """
        if self.store is None:
            return None
        hit = self.store.issued(self.key)
        if hit is None:
            return None
        now = time.time()
        if 0 <= now - hit.checked_at < self.check_interval:
            return hit.issued
        request_id = hit.issued.request_id
        try:
            state = self.client.issuance(request_id)
        except BrokerUnreachable as e:
            if self.offline != "cached":
                raise BrokerUnreachable(
                    f"{e.message}; cached credentials are not used while the broker cannot "
                    "confirm they were not revoked (--offline cached allows it)"
                ) from None
            self.progress.note(
                f"warning: the broker cannot be reached ({e.message}); using cached "
                f"credentials of request {request_id} that it could not confirm"
            )
            return hit.issued
        except BrokerClientError as e:
            if e.code != "not_found":
                raise
            self.store.drop(self.key)  # another broker, or purged: ask afresh
            return None
        if not state.stands:
            self.store.drop(self.key)
            self.progress.note(
                f"cached credentials of request {request_id} no longer stand "
                f"({state.status}: {state.reason or state.status}); asking the broker again"
            )
            self._forget_others_revoked()
            return None
        self.store.confirm(self.key, now)
        return hit.issued

    def _forget_others_revoked(self) -> None:
        """The kill switch that reached one cached copy may have reached the agent's other
        ones (other environments, backends): drop those that no longer stand, so revoked
        credentials do not stay on disk until their own command runs again."""
        if self.store is None:
            return
        for key, request_id in self.store.others(self.key):
            try:
                stands = self.client.issuance(request_id).stands
            except BrokerClientError as e:
                if e.code != "not_found":
                    return  # unreachable or refused: the next run checks them anyway
                stands = False
            if not stands:
                self.store.drop(key)

    def _request(
        self, request: dict[str, Any], justification: str, wait_timeout: float | None
    ) -> Issued:
        """Ask the broker; for an escalation, remember the request id and wait for it."""
        outcome = self.client.request(
            request["service"],
            request["environment"],
            request["tier"],
            request["backend"],
            request["region"],
            request["resources"],
            request["duration"],
            justification,
            self.intent,
        )
        if isinstance(outcome, Issued):
            return outcome
        if self.store is not None:
            self.store.put_pending(self.key, outcome.request_id, outcome.expires_at.timestamp())
        if outcome.notified:
            told = "the approvers were notified"
        elif outcome.notified is False:
            told = "no approver was notified (the broker has no notifier): send them the page"
        else:
            told = "approval page"
        self.progress.note(
            f"request {outcome.request_id} needs {outcome.approvals_required} "
            f"approval(s); {told}: {outcome.approval_url}"
        )
        if outcome.intent:
            self.progress.note(intent_line(outcome.intent))
        return self._complete(outcome.request_id, wait_timeout)

    def _resume(self, wait_timeout: float | None) -> Issued | None:
        """Finish the open request a previous run left behind, if there is one."""
        request_id = self.store.pending(self.key) if self.store is not None else None
        if self.store is None or request_id is None:
            return None
        try:
            self.client.status(request_id)
        except BrokerClientError as e:
            if e.code != "not_found":
                raise
            self.store.drop(self.key)  # another broker, or purged: ask afresh
            return None
        self.progress.note(f"resuming request {request_id}: {self.client.approval_url(request_id)}")
        return self._complete(request_id, wait_timeout)

    def _complete(self, request_id: str, wait_timeout: float | None) -> Issued:
        try:
            return self.client.complete(request_id, wait_timeout, self.progress.update)
        except (Denied, Expired):
            if self.store is not None:
                self.store.drop(self.key)  # decided: reported now, and the next run asks afresh
            raise


def intent_line(summary: Mapping[str, Any]) -> str:
    """What the approvers are asked to approve, in one line for the terminal."""
    replaced = ", ".join(str(r) for r in summary.get("replacements") or [])
    line = (
        f"intent sha256 {str(summary.get('sha256', ''))[:16]}...: tier {summary.get('tier')}, "
        f"{summary.get('operations')} operation(s), {summary.get('destructive')} destructive"
    )
    return line + (f"; REPLACES {replaced}" if replaced else "")


def explain(error: BrokerClientError) -> tuple[str, int]:
    """The stderr line and exit code for a client error (never a secret: messages are
    the broker's, which never carry one)."""
    message = error.message
    where = f" (request {error.request_id})" if error.request_id else ""
    if isinstance(error, BrokerUnreachable):
        return f"unreachable: {message}", EXIT_UNREACHABLE
    if isinstance(error, Frozen):
        text = message if message.startswith("frozen") else f"frozen: {message}"
        return text, EXIT_FROZEN
    if isinstance(error, Denied):
        text = message if message.startswith("denied") else f"denied: {message}"
        return text + where, EXIT_DENIED
    if isinstance(error, Expired):
        return f"expired: {message}", EXIT_EXPIRED
    if isinstance(error, ApprovalPending):
        return f"pending: {message}; run the same command again to keep waiting", EXIT_PENDING
    retry = f"; retry after {error.retry_after} s" if error.retry_after else ""
    return f"error: {message} ({error.code}){retry}", EXIT_ERROR


def _print(issued: Issued, output_format: str) -> int:
    try:
        if output_format == "credential-process":
            text = json.dumps(issued.credential_process()) + "\n"
        elif output_format == "json":
            text = json.dumps(issued.to_json(), indent=2) + "\n"
        else:
            text = issued.export_lines()
    except BrokerClientError as e:
        _warn(explain(e)[0])
        return EXIT_ERROR
    sys.stdout.write(text)
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    return EXIT_OK


def _warn(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def entry_point() -> None:
    """The ``broker-creds`` console script."""
    sys.exit(main())
