"""deploy/Dockerfile, read instruction by instruction (no Docker engine runs here)."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY, ROOT, Instruction, dockerfile_instructions

DOCKERFILE = DEPLOY / "Dockerfile"
PINNED_BASE = re.compile(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?")


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE)


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """Global ARG defaults (before the first FROM), as FROM lines may use them."""
    args = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            name, _, default = instruction.arguments.partition("=")
            args[name] = default
    return args


def base_images(instructions: list[Instruction]) -> list[str]:
    args = build_args(instructions)
    images = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            image = instruction.arguments.split()[0]
            for name, value in args.items():
                image = image.replace("${" + name + "}", value).replace("$" + name, value)
            images.append(image)
    return images


def test_multi_stage_on_a_pinned_slim_python(instructions: list[Instruction]) -> None:
    images = base_images(instructions)
    assert len(images) >= 2
    for image in images:
        assert PINNED_BASE.fullmatch(image), f"{image}: pin python:3.11.N-slim (and a digest)"
    names = [i.arguments.split()[-1] for i in instructions if i.keyword == "FROM"]
    assert names[0] == "builder"


def test_wheels_are_built_in_the_builder_and_installed_offline(
    instructions: list[Instruction],
) -> None:
    builder, *_, runtime = stages(instructions)
    assert any(i.keyword == "RUN" and "pip wheel" in i.arguments for i in builder)
    installs = [i for i in runtime if i.keyword == "RUN" and "pip install" in i.arguments]
    assert installs
    for install in installs:
        assert "--no-index" in install.arguments and "from=builder" in install.arguments
    # The runtime copies nothing from the build context: only the builder's wheels.
    assert not [i for i in runtime if i.keyword in ("COPY", "ADD")]


def test_no_remote_add_and_copies_exist(instructions: list[Instruction]) -> None:
    for instruction in instructions:
        assert instruction.keyword != "ADD", (
            f"line {instruction.line}: use COPY (or curl + checksum)"
        )
        if instruction.keyword == "COPY" and "--from" not in instruction.arguments:
            *sources, _ = instruction.arguments.split()
            for source in sources:
                assert (ROOT / source).exists(), f"line {instruction.line}: {source} is missing"


def test_dockerignore_lets_in_exactly_what_is_copied(instructions: list[Instruction]) -> None:
    rules = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
                keep = negate
        return keep

    for instruction in instructions:
        if instruction.keyword == "COPY" and "--from" not in instruction.arguments:
            for source in instruction.arguments.split()[:-1]:
                assert included(source), f"{source} is excluded from the build context"
    for private in ("tests", ".git", ".broker", "scopes", ".venv"):
        assert not included(private), f"{private} would be sent to the builder"


def test_runs_as_a_non_root_user_after_the_last_root_step(
    instructions: list[Instruction],
) -> None:
    runtime = stages(instructions)[-1]
    users = [i for i in runtime if i.keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    last_user = users[-1]
    uid, _, gid = last_user.arguments.partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric uid lets Kubernetes check runAsNonRoot"
    assert gid.isdigit() and int(gid) != 0
    assert not [i for i in runtime if i.keyword == "RUN" and i.line > last_user.line]
    assert [i for i in runtime if i.keyword == "RUN" and f"--uid {uid}" in i.arguments]


def test_healthcheck_and_entrypoint(instructions: list[Instruction]) -> None:
    runtime = stages(instructions)[-1]
    (health,) = [i for i in runtime if i.keyword == "HEALTHCHECK"]
    command = json.loads(health.arguments.split("CMD", 1)[1])
    env = " ".join(i.arguments for i in runtime if i.keyword == "ENV")
    assert command[0] == "python"  # the slim image has no curl
    assert "BROKER_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz" in env
    (entrypoint,) = [i for i in runtime if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint.arguments) == [
        "broker",
        "serve",
        "--config",
        "/etc/broker/broker.yaml",
    ]
    assert "EXPOSE" in {i.keyword for i in runtime}


def test_writable_paths_are_under_tmp_or_the_state_volume(
    instructions: list[Instruction],
) -> None:
    runtime = stages(instructions)[-1]
    env = " ".join(i.arguments for i in runtime if i.keyword == "ENV")
    multiproc = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", env)
    assert multiproc and Path(multiproc.group(1)).is_relative_to("/tmp")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    setup = " ".join(i.arguments for i in runtime if i.keyword == "RUN")
    assert "-m 0700 /var/lib/broker" in setup
