"""What the pod's volumes look like to the broker, reproduced on disk.

kubelet writes ConfigMap and Secret volumes with its "atomic writer": the files live in a
timestamped ``..<date>`` directory, ``..data`` is a symlink to it, and each key is a
symlink ``<key> -> ..data/<key>``; an update writes a new directory and swaps ``..data``.
With ``fsGroup`` set, Secret files are group-readable (0440). These tests build that layout
and run the broker's own loaders, and the init container's exact command, against it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from broker.config import Settings
from broker.keys import (
    AGENT_KEY_FILE,
    LINK_SECRET_FILE,
    RETIRED_KEYS_FILE,
    load_keys,
    rotate_agent_key,
)
from broker.policy.iam_actions import iam_database
from broker.scopes.holder import ScopeHolder
from broker.scopes.lint import LintContext
from broker.scopes.registry import fingerprint, load_scope_set
from tests.deploy.manifests import DEPLOY, ROOT, only, pod_spec, render_kustomization
from tests.deploy.test_kubernetes import mount_for

EXAMPLE_SCOPES = sorted((ROOT / "scopes").glob("*.yaml"))


def atomic_write(volume: Path, files: dict[str, bytes], generation: int, mode: int) -> None:
    """Write (or update) a volume the way kubelet does."""
    volume.mkdir(exist_ok=True)
    stamp = volume / f"..2026_01_01_00_00_0{generation}.{1000 + generation}"
    stamp.mkdir()
    for name, content in files.items():
        (stamp / name).write_bytes(content)
        (stamp / name).chmod(mode)
    temporary = volume / "..data_tmp"
    temporary.symlink_to(stamp.name)
    old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
    os.replace(temporary, volume / "..data")
    for name in files:
        if not (volume / name).is_symlink():
            (volume / name).symlink_to(f"..data/{name}")
    if old is not None:
        shutil.rmtree(volume / old)


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return only(render_kustomization(DEPLOY / "kubernetes"), "Deployment")


@pytest.fixture(scope="module")
def configured() -> Settings:
    """The settings of the ConfigMap's broker.yaml."""
    from broker.config import load_settings

    return load_settings(DEPLOY / "kubernetes" / "broker.yaml", environ={})


def scope_view(configured: Settings, deployment: dict[str, Any], volume: Path) -> Path:
    """The configured scopes_dir, relative to its mount, placed inside ``volume``."""
    spec = pod_spec(deployment)
    assert spec is not None
    (container,) = [c for c in spec["containers"] if c["name"] == "broker"]
    mount = Path(mount_for(container, configured.scopes_dir)["mountPath"])
    return volume / configured.scopes_dir.relative_to(mount)


def test_configured_scopes_dir_sees_each_scope_once(
    tmp_path: Path, configured: Settings, deployment: dict[str, Any]
) -> None:
    volume = tmp_path / "scopes"
    atomic_write(volume, {p.name: p.read_bytes() for p in EXAMPLE_SCOPES}, 1, 0o644)
    ctx = LintContext(iam=iam_database(), directory=configured)
    result = load_scope_set(scope_view(configured, deployment, volume), ctx)
    assert [str(p) for p in result.problems] == []
    assert sorted(result.scope_set.scopes) == ["deploy", "ledger", "payments"]
    assert result.files == len(EXAMPLE_SCOPES)


def test_a_configmap_update_is_seen_and_reloaded(
    tmp_path: Path, configured: Settings, deployment: dict[str, Any]
) -> None:
    volume = tmp_path / "scopes"
    files = {p.name: p.read_bytes() for p in EXAMPLE_SCOPES}
    atomic_write(volume, files, 1, 0o644)
    view = scope_view(configured, deployment, volume)
    holder = ScopeHolder(view, LintContext(iam=iam_database(), directory=configured))
    before = fingerprint(view)
    changed = dict(files)
    changed["payments.yaml"] = files["payments.yaml"].replace(b"ttl: 30m", b"ttl: 20m")
    assert changed["payments.yaml"] != files["payments.yaml"]
    atomic_write(volume, changed, 2, 0o644)
    assert holder.changed_on_disk() and fingerprint(view) != before
    outcome = holder.reload()
    assert outcome.applied and outcome.problems == ()
    assert outcome.changed == frozenset({"payments"})


def test_init_container_turns_the_secret_into_keys_the_broker_accepts(
    tmp_path: Path, deployment: dict[str, Any]
) -> None:
    spec = pod_spec(deployment)
    assert spec is not None
    (init,) = spec["initContainers"]
    secret_mount = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "keys")
    state_mount = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "state")

    # The Secret, as kubelet presents it with fsGroup: group-readable files behind symlinks.
    # Its keys were rotated once (broker token rotate-key), so one key is retired.
    secret = tmp_path / "secret"
    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / AGENT_KEY_FILE).write_bytes(
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "ed25519"], check=True, capture_output=True
        ).stdout
    )
    (origin / AGENT_KEY_FILE).chmod(0o600)
    retired_kid = load_keys(origin).agent_key_id
    rotate_agent_key(origin, 3600, time.time())
    files = {n: (origin / n).read_bytes() for n in (AGENT_KEY_FILE, RETIRED_KEYS_FILE)}
    link = os.urandom(32)
    atomic_write(secret, {**files, LINK_SECRET_FILE: link}, 1, 0o440)
    state = tmp_path / "state"
    state.mkdir(mode=0o770)

    def local(path: str) -> str:
        for mount, here in ((secret_mount, secret), (state_mount, state)):
            if path == mount or path.startswith(mount + "/"):
                return str(here) + path[len(mount) :]
        return path

    subprocess.run([local(part) for part in init["command"]], check=True)
    for name in (AGENT_KEY_FILE, RETIRED_KEYS_FILE, LINK_SECRET_FILE):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
        assert not (state / name).is_symlink()
    keys = load_keys(state)
    assert keys.link_secret == link
    assert keys.agent_key_id == load_keys(origin).agent_key_id
    assert [r.key_id for r in keys.retired] == [retired_kid]
    # Two replicas given the same Secret get the same keys: tokens and links work across them.
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(
        [local(part).replace(str(state), str(other)) for part in init["command"]], check=True
    )
    assert load_keys(other).agent_key_id == keys.agent_key_id


def test_init_container_fails_when_the_secret_lacks_a_key(
    tmp_path: Path, deployment: dict[str, Any]
) -> None:
    spec = pod_spec(deployment)
    assert spec is not None
    (init,) = spec["initContainers"]
    secret = tmp_path / "secret"
    atomic_write(secret, {LINK_SECRET_FILE: os.urandom(32)}, 1, 0o440)
    state = tmp_path / "state"
    state.mkdir()
    secret_mount = next(m["mountPath"] for m in init["volumeMounts"] if m["name"] == "keys")
    command = [
        part.replace(secret_mount, str(secret)).replace(str(Path(init["command"][-1])), str(state))
        for part in init["command"]
    ]
    completed = subprocess.run(command, capture_output=True)
    # The pod stays in Init: it never starts with a key of its own making.
    assert completed.returncode != 0
