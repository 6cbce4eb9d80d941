"""What ``broker-creds`` and ``broker-mcp`` share: connection options, the agent token,
durations, and a parser whose usage errors exit 2 with one ``Error:`` line."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from broker_client.client import BrokerClient
from broker_client.errors import BrokerClientError

EXIT_USAGE = 2
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


class UsageError(Exception):
    """A command-line mistake: reported as ``Error: ...`` with exit code 2, nothing sent."""


class Parser(argparse.ArgumentParser):
    """argparse with the exit code and message shape of the rest of the tools."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"Error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def duration(text: str) -> int:
    """Seconds from ``900``, ``15m``, ``1h`` or ``1h30m`` (an argparse type)."""
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if text.isdigit():
        seconds = int(text)
    elif text and match is not None:
        h, m, s = (int(g or 0) for g in match.groups())
        seconds = h * 3600 + m * 60 + s
    else:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration such as 900, 15m or 1h30m")
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return seconds


def bounded(low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a number within [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if value != value or value < low or (high is not None and value > high):
            limit = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is not {limit}")
        return value

    return parse


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token``, ``--token-file``, ``--timeout`` (and their environment)."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=os.environ.get("BROKER_URL"),
        help="The broker's base URL [env BROKER_URL].",
    )
    group.add_argument(
        "--token",
        default=os.environ.get("BROKER_TOKEN"),
        help="The agent's bearer token [env BROKER_TOKEN]. Prefer the environment or "
        "--token-file: a command line is visible to other local users.",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        default=os.environ.get("BROKER_TOKEN_FILE") or None,
        help="Read the token from this file before every call (rotating OIDC or Kubernetes "
        "service-account tokens) [env BROKER_TOKEN_FILE].",
    )
    group.add_argument(
        "--timeout",
        type=bounded(1, 300),
        default=10.0,
        help="Seconds to wait for each answer from the broker (default 10).",
    )


def broker_url(args: argparse.Namespace) -> str:
    if not args.url:
        raise UsageError("no broker URL: set BROKER_URL or pass --url")
    return str(args.url).rstrip("/")


def token_source(token: str | None, token_file: Path | None) -> Callable[[], str]:
    """A function returning the current agent token (usage error when none is given)."""
    if token and token_file:
        raise UsageError("give --token or --token-file, not both")
    if token:
        fixed = token.strip()
        return lambda: fixed
    if token_file is not None:
        path = Path(token_file)

        def read() -> str:
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise BrokerClientError(
                    f"cannot read the token file {path}: {e.strerror}", "invalid_argument"
                ) from None

        return read
    raise UsageError("no agent token: set BROKER_TOKEN or BROKER_TOKEN_FILE")


def make_client(args: argparse.Namespace) -> tuple[BrokerClient, Callable[[], str]]:
    """The client the options describe, and its token source (usage errors raised)."""
    tokens = token_source(args.token, args.token_file)
    try:
        return BrokerClient(broker_url(args), token_provider=tokens, timeout=args.timeout), tokens
    except BrokerClientError as e:
        raise UsageError(e.message) from None


def current_token(tokens: Callable[[], str]) -> str:
    """The token now, or a usage error (an unreadable token file) before any request."""
    try:
        return tokens()
    except BrokerClientError as e:
        raise UsageError(e.message) from None


def token_identity(token: str) -> str:
    """Who a token names, for cache keys: ``iss`` + ``sub`` (+ ``aud``) of a JWT, read
    without verification (the broker verifies; this only separates identities). A token
    that is not a JWT is represented by its SHA-256, never by itself."""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            payload = parts[1] + "=" * (-len(parts[1]) % 4)
            claims = json.loads(base64.urlsafe_b64decode(payload))
        except (ValueError, TypeError):
            claims = None
        if isinstance(claims, dict) and isinstance(claims.get("sub"), str):
            audience = claims.get("aud")
            return json.dumps([claims.get("iss"), claims["sub"], audience], sort_keys=True)
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def run_main(body: Callable[[], int]) -> int:
    """Run a command body: usage errors exit 2 with ``Error:``; Ctrl-C is left to the body."""
    try:
        return body()
    except UsageError as e:
        sys.stderr.write(f"Error: {e}\n")
        return EXIT_USAGE
