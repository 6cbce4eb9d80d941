"""`broker audit`: verify the chain, export records for a SIEM, show one request's story.

The commands only read the store: they never migrate or write it. Errors reach the
terminal as one line through :func:`broker.cli.main` (a :class:`BrokerError`), and the
store's URL (which may hold a password) is never printed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from broker.audit.anchor import verify_anchors
from broker.audit.chain import ChainReport
from broker.audit.copy import compare_with_copy, copy_entries
from broker.audit.export import parse_since, records_since, write_jsonl
from broker.audit.recorder import iso_time, record_line
from broker.audit.timeline import render_timeline
from broker.audit.verify import DEFAULT_BATCH, verify_store
from broker.cli_options import config_option
from broker.errors import BadRequest, StoreUnavailable
from broker.ids import looks_like_request_id
from broker.store.sql import SqlStore

EXIT_TAMPERED = 1
EXIT_NOT_FOUND = 1

config = config_option(
    "The broker's YAML config, for the store's location (default: built-in defaults)."
)


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--since``: an ISO 8601 date/time or a duration back from now (24h, 7d, 1h30m)."""
    if value is None:
        return None
    try:
        return parse_since(value, time.time())
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


@contextmanager
def open_store(config_path: Path | None) -> Iterator[SqlStore]:
    """The configured store, read-only use: never created, never migrated."""
    from broker.config import load_settings

    settings = load_settings(config_path)
    url = settings.database_url
    sqlite_file = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if sqlite_file is not None and not sqlite_file.exists():
        raise StoreUnavailable(f"no broker store at {sqlite_file}")
    store = SqlStore.from_url(url, migrate=False)
    try:
        yield store
    finally:
        store.close()


@click.group("audit")
def audit() -> None:
    """Verify, export and read the tamper-evident audit trail."""


def describe_problem(report: ChainReport) -> list[str]:
    lines = [f"TAMPERED: {report.problem}"]
    record = report.record
    if record is not None:
        about = f" (request {record.request_id})" if record.request_id else ""
        lines.append(
            f"  record {record.seq}: {iso_time(record.at)} {record.action} {record.outcome} "
            f"by {record.actor}{about}"
        )
    lines.append(f"  stopped after reading {report.records} record(s).")
    return lines


@audit.command("verify")
@config
@click.option(
    "--batch",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Records read per query (memory stays bounded).",
)
@click.option(
    "--against",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Also compare with a copy kept elsewhere (a stream file or an export): catches "
    "a chain rewritten whole in the database.",
)
@click.option(
    "--no-anchors",
    is_flag=True,
    help="Do not compare with the anchors in audit.anchor's bucket (checked by default).",
)
def verify_command(
    config_path: Path | None, batch: int, against: Path | None, no_anchors: bool
) -> None:
    """Walk the hash chain; name the first edited, removed or reordered record (exit 1).

    With audit.anchor configured, also compare the chain with every anchor written to the
    bucket: a chain rewritten whole in the database is caught at its first anchored record.
    """
    from broker.config import load_settings
    from broker.wiring import build_anchors

    settings = load_settings(config_path)
    anchors = None if no_anchors else build_anchors(settings)
    with open_store(config_path) as store:
        report = verify_store(store, batch)
        if not report.ok:
            for line in describe_problem(report):
                click.echo(line)
            sys.exit(EXIT_TAMPERED)
        anchored = None
        if anchors is not None:
            anchored = verify_anchors(store, anchors.anchors(), store.audit_head())
            if not anchored.ok:
                click.echo(f"TAMPERED: {anchored.problem}")
                click.echo(
                    f"  {anchored.records} anchored record(s) compared, in {anchored.anchors} "
                    f"anchor(s) of {anchors.where(anchors.prefix)}."
                )
                sys.exit(EXIT_TAMPERED)
        copy = None
        if against is not None:
            with against.open(encoding="utf-8", errors="replace") as lines:
                copy = compare_with_copy(store, copy_entries(lines, against.name), batch)
    if copy is not None and not copy.ok:
        click.echo(f"TAMPERED: {copy.problem}")
        click.echo(f"  {copy.records} record(s) matched {against} before that.")
        sys.exit(EXIT_TAMPERED)
    click.echo(f"OK: {report.records} audit record(s); the hash chain is intact.")
    if anchored is not None and anchors is not None:
        click.echo(
            f"OK: {anchored.records} anchored record(s) match {anchored.anchors} anchor(s) in "
            f"{anchors.where(anchors.prefix)}."
        )
    if copy is not None:
        click.echo(f"OK: {copy.records} record(s) match the copy in {against}.")


@audit.command("export")
@config
@click.option(
    "--since",
    metavar="TIME|DURATION",
    callback=_since,
    help="Records from this time on: an ISO date/time (UTC unless given) or a duration "
    "back from now such as 24h or 7d. Default: every record.",
)
@click.option(
    "--after-seq",
    type=click.IntRange(0),
    default=0,
    help="Only records after this sequence number (resume an incremental export).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl"]),
    default="jsonl",
    show_default=True,
    help="One JSON object per line, hashes included.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file (replaced only when the export completes). Default: stdout.",
)
def export_command(
    config_path: Path | None,
    since: float | None,
    after_seq: int,
    fmt: str,
    output: Path | None,
) -> None:
    """Export audit records as JSON lines, for a SIEM."""
    with open_store(config_path) as store:
        records = records_since(store, since, after_seq)
        if output is None:
            count, last = write_jsonl(records, sys.stdout)
        else:
            count, last = _write_atomically(output, records)
    where = f" to {output}" if output else ""
    upto = f" (up to record {last})" if last is not None else ""
    click.echo(f"exported {count} record(s){where}{upto}", err=True)


def _write_atomically(output: Path, records: Iterator[Any]) -> tuple[int, int | None]:
    """Write to a temporary file beside ``output``; rename only on success (no half file)."""
    directory = output.resolve().parent
    if not directory.is_dir():
        raise BadRequest(f"no such directory: {directory}")
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            result = write_jsonl(records, out)
        os.replace(temporary, output)
    except BaseException:
        os.unlink(temporary)
        raise
    return result


@audit.command("show")
@config
@click.option("--request", "request_id", required=True, help="The request id (req_...).")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines.")
def show_command(config_path: Path | None, request_id: str, as_json: bool) -> None:
    """Print one request's whole story: requested, notified, approved, issued, revoked..."""
    if not looks_like_request_id(request_id):
        raise BadRequest(f"'{request_id[:40]}' is not a request id (req_ and 26 characters)")
    printed = 0
    with open_store(config_path) as store:
        records = store.audit_records(request_id=request_id)
        lines = (
            (record_line(r) for r in records) if as_json else render_timeline(request_id, records)
        )
        for line in lines:
            click.echo(line)
            printed += 1
    if not printed:
        click.echo(f"no audit records for request {request_id}", err=True)
        sys.exit(EXIT_NOT_FOUND)
