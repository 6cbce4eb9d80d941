"""`broker dev`: the whole broker locally, no configuration, no cloud account.

Starts an OpenBao dev server, the AWS stand-in (moto's server evaluating IAM policies as
AWS does: broker/devstack/standin/), seeds both (and a ``broker_dev`` database on the local
PostgreSQL when one answers), applies the example scopes, runs the broker (gunicorn,
SQLite) and prints a demo agent token with a request to copy. Ctrl-C stops everything it
started. A second `broker dev` while one runs says so (a lock file in the state directory)
instead of failing on a port.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
import requests
import yaml

from broker.apply.command import apply_scopes
from broker.apply.upstreams import HvacVaultManager
from broker.config import Settings, load_settings
from broker.devstack.alerts import ALERT_LOG, LogFollower
from broker.devstack.banner import (
    Endpoints,
    demo_requests,
    demo_scope,
    render,
    windows_in_force,
)
from broker.devstack.processes import ServerProcess, free_port
from broker.devstack.seed import (
    ADMIN_ROLE,
    agents,
    budget_for,
    moto_bootstrap,
    seed_postgres,
    seed_vault_databases,
    seed_vault_kv,
)
from broker.devstack.servers import (
    DEV_ANCHOR_BUCKET,
    MOTO_ACCOUNT,
    Moto,
    OpenBao,
    start_moto,
    start_openbao,
)
from broker.errors import BrokerError
from broker.identity.mint import mint_agent_token
from broker.keys import load_keys
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import ScopeSet, load_scope_set
from broker.wiring import build_accounts, build_sts, build_vault_client

POSTGRES_ADMIN_URL = os.environ.get(
    "BROKER_DEV_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# Approvers and groups the example scopes name, for a local demo.
DEV_APPROVERS = {
    name: {"name": name.title(), "email": f"{name}@example.com"}
    for name in ("alice", "bob", "carol", "dave")
}
DEV_GROUPS = {
    "payments-leads": ["alice", "bob"],
    "sre-oncall": ["carol", "dave"],
    "dba": ["carol", "dave"],
    "release-managers": ["alice", "bob", "carol"],
}


class AlreadyRunning(BrokerError):
    status = 409
    code = "already_running"


@dataclass
class Stack:
    url: str
    config_path: Path
    token: str
    agent: str
    bao: OpenBao
    moto: Moto
    broker: ServerProcess
    database: str | None
    scope_set: ScopeSet
    settings: Settings


@contextmanager
def single_instance(state_dir: Path) -> Iterator[IO[str]]:
    """Hold the dev lock; a second holder gets AlreadyRunning naming the first."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "dev.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise AlreadyRunning(f"a broker dev stack is already running: {owner}") from None
    try:
        yield handle
    finally:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _port(requested: int, say: Callable[[str], None]) -> int:
    """``requested`` when free; else another free port, saying so."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", requested))
            return requested
        except OSError:
            chosen = free_port()
    say(f"port {requested} is in use: the broker listens on {chosen} instead (--port chooses)")
    return chosen


def _private(state_dir: Path) -> None:
    """Everything `broker dev` writes under its state directory is for this user only: the
    config, the SQLite store, the logs (OpenBao's holds its root token), the keys. Files of
    an earlier run are tightened too."""
    os.umask(0o077)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    for path in state_dir.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)


def _load_scopes(path: Path) -> ScopeSet:
    result = load_scope_set(path, LintContext(iam=iam_database()))
    if result.problems:
        lines = "\n".join(str(p) for p in result.problems)
        raise BrokerError(f"the scopes under {path} have problems:\n{lines}")
    return result.scope_set


def write_config(
    state_dir: Path, scopes: Path, url: str, moto: Moto, bao: OpenBao, port: int
) -> Path:
    config = {
        "scopes_dir": str(scopes.resolve()),
        "state_dir": str(state_dir.resolve()),
        "public_url": url,
        "listen": f"127.0.0.1:{port}",
        "workers": 2,
        "approvers": DEV_APPROVERS,
        "groups": DEV_GROUPS,
        "admins": ["agent:operator"],
        "aws": {
            "endpoint_url": moto.url,
            "admin_role_arn": f"arn:aws:iam::${{account}}:role/{ADMIN_ROLE}",
        },
        "vault": {"url": bao.url},
        # moto's Object Lock keeps the anchors as S3 would (docs/audit.md, "The anchor").
        "audit": {"anchor": {"bucket": DEV_ANCHOR_BUCKET, "interval": "1m", "retention_days": 1}},
        # Alerts of the server and of `broker revoke` alike, shown in the dev terminal.
        "alerts": {"log": str((state_dir / ALERT_LOG).resolve())},
    }
    path = state_dir / "broker.yaml"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# Written by `broker dev`; secrets come from the environment.\n")
        handle.write(yaml.safe_dump(config, sort_keys=False))
    return path


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    """Exports for operator commands in another shell (`source .broker/dev/env`): the
    local stand-ins' credentials, mode 0600."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("# broker dev: credentials of the local stand-ins, for this stack only\n")
        handle.writelines(f"export {key}={value}\n" for key, value in sorted(env.items()))


def _environment(moto: Moto, bao: OpenBao, config: Path) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": moto.broker_key["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": moto.broker_key["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "BROKER_VAULT_TOKEN": bao.root_token,
        "BROKER_CONFIG": str(config),
    }


def start_stack(scopes: Path, state_dir: Path, port: int, say: Callable[[str], None]) -> Stack:
    """Start and seed everything; the caller stops it with :func:`stop_stack`."""
    scope_set = _load_scopes(scopes)
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    say("starting OpenBao and moto ...")
    bao = start_openbao(logs)
    broker_arn = f"arn:aws:iam::{MOTO_ACCOUNT}:user/broker"
    moto = start_moto(
        logs,
        bootstrap=moto_bootstrap(scope_set, broker_arn),
        unauthenticated_calls=budget_for(scope_set),
    )
    processes: list[Any] = [bao, moto]
    try:
        database = _seed_database(bao, scope_set, say)
        port = _port(port, say)
        url = f"http://127.0.0.1:{port}"
        config = write_config(state_dir, scopes, url, moto, bao, port)
        env = _environment(moto, bao, config)
        os.environ.update(env)  # apply below uses the same identity the broker will
        _write_env_file(state_dir / "env", env)
        settings = load_settings(config)
        say("applying the scopes to moto and OpenBao ...")
        client = build_vault_client(settings)
        outcome = apply_scopes(
            scope_set,
            build_accounts(settings, build_sts(settings)),
            HvacVaultManager(client) if client else None,
            True,
            lambda _line: None,
        )
        if not outcome.ok:
            raise BrokerError("applying the example scopes failed: " + "; ".join(outcome.problems))
        seed_vault_kv(bao.client(), scope_set)
        say(f"applied {outcome.applied} change(s); starting the broker ...")
        broker = ServerProcess(
            [sys.executable, "-m", "broker.cli", "serve", "--config", str(config)],
            logs / "broker.log",
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        broker.start(
            lambda: requests.get(f"{url}/readyz", timeout=1).status_code == 200, timeout=60
        )
        processes.append(broker)
        names = list(agents(scope_set))
        agent = "payments-copilot" if "payments-copilot" in names else names[0]
        token = mint_agent_token(
            load_keys(settings.state_dir), settings.identity.local, agent, 8 * 3600
        )
        return Stack(url, config, token, agent, bao, moto, broker, database, scope_set, settings)
    except BaseException:
        for process in reversed(processes):
            process.stop()
        raise


def _seed_database(bao: OpenBao, scope_set: ScopeSet, say: Callable[[str], None]) -> str | None:
    host = POSTGRES_ADMIN_URL.split("@", 1)[-1].split("/", 1)[0]
    try:
        seed_postgres(POSTGRES_ADMIN_URL, scope_set)
        reachable = True
    except psycopg.Error:
        reachable = False
        say(
            f"PostgreSQL is not reachable at {host}: database credentials will answer 503 "
            "until it is (set BROKER_DEV_POSTGRES to point elsewhere)"
        )
    seed_vault_databases(bao.client(), scope_set, host, verify=reachable)
    return f"{host}/broker_dev" if reachable else None


def stop_stack(stack: Stack) -> None:
    for process in (stack.broker, stack.moto, stack.bao):
        process.stop()


def banner(stack: Stack) -> str:
    """The banner for the scopes actually loaded (docs use the same demo agent)."""
    scope = demo_scope(stack.scope_set, stack.agent)
    demo = demo_requests(scope, stack.settings.approvers_for) if scope is not None else None
    endpoints = Endpoints(
        stack.url,
        stack.bao.url,
        stack.moto.url,
        stack.moto.process.log_path,
        stack.database,
        stack.config_path,
    )
    windows = windows_in_force(stack.scope_set, time.time())
    return render(endpoints, stack.agent, stack.token, demo, windows)


def run_dev(scopes: Path, state_dir: Path, port: int, echo: Callable[[str], None]) -> None:
    """Run until interrupted (SIGINT or SIGTERM); always stop what was started."""
    _private(state_dir)
    with single_instance(state_dir) as lock:
        stack = start_stack(scopes, state_dir, port, echo)
        alerts = LogFollower(state_dir / ALERT_LOG)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} at {stack.url}\n")
        lock.flush()
        echo(banner(stack))
        stopping = {"now": False}

        def stop(_signum: int, _frame: object) -> None:
            stopping["now"] = True

        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping["now"]:
                if stack.broker.process is not None and stack.broker.process.poll() is not None:
                    echo(
                        "the broker exited; see its log in "
                        f"{stack.broker.log_path}; stopping the stack"
                    )
                    break
                for line in alerts.alerts():
                    echo(line)
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            echo("stopping the broker, moto and OpenBao ...")
            stop_stack(stack)
            echo("stopped.")
