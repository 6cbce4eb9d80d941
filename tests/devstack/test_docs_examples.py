"""The docs' examples work for `make dev`'s demo agent (agent:payments-copilot): every
scope and environment they ask for is one it may request in the example scopes. (The CI
section's examples are for a pipeline identity, not the demo agent.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from broker.identity.model import AgentIdentity
from broker.identity.requesters import may_request
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import load_scope_set

ROOT = Path(__file__).resolve().parents[2]
DEMO = AgentIdentity(issuer="local", subject="agent:payments-copilot")
CLIENT_CALL = re.compile(r'broker\.\w+\(\s*"([a-z][a-z0-9-]*)",\s*"([a-z][a-z0-9-]*)"')
CLI_FLAGS = re.compile(r"--service ([a-z][a-z0-9-]*) --environment ([a-z][a-z0-9-]*)")
JSON_BODY = re.compile(r'"service":\s*"([a-z][a-z0-9-]*)",\s*"environment":\s*"([a-z][a-z0-9-]*)"')


def examples(name: str) -> list[tuple[str, str]]:
    text = (ROOT / "docs" / name).read_text().split("\n## CI jobs", 1)[0]
    return [
        m.groups()
        for pattern in (CLIENT_CALL, CLI_FLAGS, JSON_BODY)
        for m in pattern.finditer(text)
    ]


@pytest.mark.parametrize("name", ["agents.md", "quickstart.md"])
def test_the_docs_ask_only_for_what_the_demo_agent_may_request(name: str) -> None:
    scope_set = load_scope_set(ROOT / "scopes", LintContext(iam=iam_database())).scope_set
    found = examples(name)
    assert found
    for service, environment in found:
        scope = scope_set.get(service)
        assert scope is not None, (name, service)
        assert environment in scope.environments, (name, service, environment)
        assert may_request(scope, DEMO), (name, service)


def test_the_python_example_reads_vault_where_the_demo_agent_may() -> None:
    assert ("payments", "prod") in examples("agents.md")
    assert all(service != "ledger" for service, _ in examples("agents.md"))


SHELL_BUILTINS = {"export", "source", "cd", "echo", "broker"}  # broker: what make dev installs


def test_the_quickstart_lists_every_tool_its_commands_use() -> None:
    text = (ROOT / "docs" / "quickstart.md").read_text()
    needs = text.split("\n## ", 1)[0]
    used = set()
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for segment in re.split(r"\|", line.split("#", 1)[0]):
                words = segment.split()
                if words and re.fullmatch(r"[a-z][a-z0-9-]*", words[0]):
                    used.add(words[0])
    assert {"curl", "jq"} <= used
    missing = sorted(tool for tool in used - SHELL_BUILTINS if f"`{tool}`" not in needs)
    assert not missing
