"""Read the deploy/ artifacts the way their tools would, offline.

- ``render_kustomization``: the objects ``kubectl apply -k deploy/kubernetes`` would send
  (the resources listed, the generated ConfigMaps, the namespace and image overrides). A
  small subset of kustomize, enough for our base; an unknown field fails the test rather
  than being ignored.
- ``dockerfile_instructions``: a Dockerfile as (instruction, arguments) pairs, continuation
  lines joined and comments dropped, as BuildKit reads it.
- ``load_hcl``: HCL (Terraform, Vault policies) as plain Python data.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import yaml
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "images",
}
_HCL = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render_kustomization(directory: Path) -> list[dict[str, Any]]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZE_FIELDS
    assert not unknown, f"this renderer does not know {sorted(unknown)}"
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        objects.extend(load_yaml_documents(directory / resource))
    for generator in spec.get("configMapGenerator", []):
        data = {Path(f).name: (directory / f).read_text() for f in generator.get("files", [])}
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    namespace = spec.get("namespace")
    images = {i["name"]: i for i in spec.get("images", [])}
    labels = {k: v for entry in spec.get("labels", []) for k, v in entry["pairs"].items()}
    rendered = []
    for original in objects:
        obj = copy.deepcopy(original)
        metadata = obj.setdefault("metadata", {})
        if namespace and obj["kind"] != "Namespace":
            metadata["namespace"] = namespace
        metadata.setdefault("labels", {}).update(labels)
        for container in pod_containers(obj):
            name, _, tag = container["image"].partition(":")
            if name in images:
                override = images[name]
                container["image"] = (
                    f"{override.get('newName', name)}:{override.get('newTag', tag or 'latest')}"
                )
        rendered.append(obj)
    return rendered


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        return spec
    return None


def pod_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def dockerfile_instructions(path: Path) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(part for part in pending if part)
        keyword, _, arguments = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = []
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return instructions


def load_hcl(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        data: dict[str, Any] = hcl2.load(handle, serialization_options=_HCL)
    return data
