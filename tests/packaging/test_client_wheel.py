"""The agent side installs alone: the client wheel in a fresh virtualenv, no server in it.

Both wheels are built from this checkout; the client's goes into a new virtualenv with
its ``[aws]`` extra only (requests and boto3 from the package index). Then a real AWS SDK
profile whose ``credential_process`` is that virtualenv's ``broker-creds`` gets
credentials from a running broker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.conftest import LiveBroker, start_live_broker

ROOT = Path(__file__).resolve().parents[2]
# What a wheel is not built from: VCS data, environments, caches, and the trees that ship
# in neither wheel (the server's wheel holds broker/ only, the client's src/ only).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "*.egg-info",
    "__pycache__",
    "node_modules",
    ".*_cache",
    ".broker",
    "tests",
    "bench",
    "docs",
    "deploy",
    "clients",
)
SERVER_ONLY = ("flask", "sqlalchemy", "alembic", "psycopg", "gunicorn", "policy-sentry", "mcp")


def run(*argv: str | Path, timeout: float = 600, **kwargs: object) -> str:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return str(done.stdout)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", out]
    # setuptools writes build/ and *.egg-info beside the sources: build from copies so the
    # checkout stays as it was (a stray build/ tree confuses mypy and ruff runs by hand).
    sources = tmp_path_factory.mktemp("sources")
    for name, tree in (("client", ROOT / "clients" / "python"), ("server", ROOT)):
        copy = sources / name
        shutil.copytree(tree, copy, ignore=_NOT_SOURCES)
        run(*pip, copy)
    built = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(built) == {"agent_credential_broker_client", "agent_credential_broker"}, built
    return built


@pytest.fixture(scope="module")
def fresh(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new virtualenv holding the client wheel with its [aws] extra, and nothing else."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    run(sys.executable, "-m", "venv", venv)
    started = time.monotonic()
    run(
        venv / "bin" / "pip",
        "install",
        "--quiet",
        f"{wheels['agent_credential_broker_client']}[aws]",
    )
    print(f"client wheel with [aws] installed in {time.monotonic() - started:.1f} s")
    yield venv


def test_the_client_wheel_needs_only_requests(wheels: dict[str, Path]) -> None:
    client = wheels["agent_credential_broker_client"]
    with zipfile.ZipFile(client) as archive:
        names = archive.namelist()
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert not [n for n in names if n.startswith("broker/")]  # no server module inside
    assert [r for r in requires if "extra ==" not in r] == ["requests>=2.31"]
    assert {r.split(";")[1].split("==")[1].strip(" '\"") for r in requires if "extra" in r} == {
        "aws",
        "vault",
        "mcp",
    }
    with zipfile.ZipFile(wheels["agent_credential_broker"]) as server:
        metadata = next(n for n in server.namelist() if n.endswith(".dist-info/METADATA"))
        assert "Requires-Dist: agent-credential-broker-client[" in server.read(metadata).decode()
    print(
        f"wheel sizes: client {client.stat().st_size} B, server "
        f"{wheels['agent_credential_broker'].stat().st_size} B"
    )


def test_the_fresh_virtualenv_has_no_server_dependency(fresh: Path) -> None:
    listed = json.loads(run(fresh / "bin" / "pip", "list", "--format", "json"))
    installed = {p["name"].lower().replace("_", "-") for p in listed}
    assert {"agent-credential-broker-client", "requests", "boto3"} <= installed
    assert not installed & set(SERVER_ONLY), installed & set(SERVER_ONLY)
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('flask', 'sqlalchemy', 'broker') if u.find_spec(m)])"
    )
    # Run outside the checkout, where ``broker`` would be importable from the directory.
    assert run(fresh / "bin" / "python", "-c", probe, cwd=fresh).strip() == "[]"


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[LiveBroker]:
    made, stop = start_live_broker(tmp_path)
    yield made
    stop()


def test_boto3_in_the_fresh_virtualenv_gets_credentials_through_broker_creds(
    fresh: Path, live: LiveBroker, tmp_path: Path
) -> None:
    config = tmp_path / "aws-config"
    config.write_text(
        "[profile broker-read]\n"
        f"credential_process = {fresh / 'bin' / 'broker-creds'} --service payments "
        "--environment prod --region us-east-1 --format credential-process\n"
        "region = us-east-1\n"
    )
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "BROKER_URL": live.url,
        "BROKER_TOKEN": live.token(),
        "BROKER_CACHE_DIR": str(tmp_path / "cache"),
    }
    script = (
        "import boto3, json\n"
        "found = boto3.Session(profile_name='broker-read').get_credentials()\n"
        "frozen = found.get_frozen_credentials()\n"
        "print(json.dumps([found.method, frozen.access_key, frozen.secret_key]))\n"
    )
    method, access_key, secret_key = json.loads(
        run(fresh / "bin" / "python", "-c", script, env=environment, cwd=tmp_path, timeout=120)
    )
    assert method == "custom-process" and access_key.startswith("ASIATEST")
    assert secret_key == live.issuers["aws"].secrets_issued[0]
    assert live.requests.count("POST /v1/credentials") == 1
