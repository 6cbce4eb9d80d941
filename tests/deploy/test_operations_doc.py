"""docs/operations.md against what it documents: the gunicorn settings are broker/serve.py's,
every deploy/ path it names exists, and the Secrets it tells operators to create are the
ones the Deployment reads."""

from __future__ import annotations

import re
from typing import Any

import pytest

from broker.config import Settings
from broker.serve import BrokerServer
from tests.deploy.manifests import DEPLOY, ROOT, only, pod_spec, render_kustomization

DOC = ROOT / "docs" / "operations.md"


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text()


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_gunicorn_table_is_what_broker_serve_sets(text: str) -> None:
    rows = {}
    for line in section(text, "Gunicorn settings and sizing").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[1]
    options = BrokerServer(Settings()).options
    documented = {k: v for k, v in options.items() if not callable(v)}
    assert set(rows) == set(documented)
    for key, value in documented.items():
        assert rows[key] == f"`{value}`", key


def test_every_deploy_path_named_exists(text: str) -> None:
    named = set(re.findall(r"`(deploy/[\w./-]+)`", text))
    named |= set(re.findall(r"\]\(\.\./(deploy[\w./-]*)\)", text))
    assert named
    for path in sorted(named):
        assert (ROOT / path.split(" ")[0]).exists(), path


def test_secrets_and_configmaps_created_in_the_doc_are_those_the_pods_use(text: str) -> None:
    deployment = only(render_kustomization(DEPLOY / "kubernetes"), "Deployment")
    spec: dict[str, Any] | None = pod_spec(deployment)
    assert spec is not None
    used = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    used |= {
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in spec["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    created = set(re.findall(r"create secret generic ([\w-]+)", text))
    assert created == used
    configmaps = {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
    assert set(re.findall(r"create configmap ([\w-]+)", text)) == configmaps - {"broker-config"}
    for variable in re.findall(r"--from-literal=(BROKER_\w+)=", text):
        keys = {
            e["valueFrom"]["secretKeyRef"]["key"]
            for c in spec["containers"]
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert variable in keys, variable
