"""docs/scopes.md keeps up with the code: every lint rule the broker can report has its
section, and what `plan --against` compares is what the page says it compares."""

from __future__ import annotations

import re
from pathlib import Path

import broker.scopes.lint as lint_module

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "scopes.md").read_text()


def test_every_lint_rule_has_a_section() -> None:
    here = Path(lint_module.__file__).parent
    source = "".join(p.read_text() for p in sorted(here.glob("lint*.py")))
    rule_ids = set(re.findall(r'"([a-z]+(?:-[a-z]+)+)"', source))
    assert {"unknown-group", "unsatisfiable-approval", "destructive-outside-delete"} <= rule_ids
    assert {"escalation-action", "delete-delay", "environment-overlap"} <= rule_ids
    headings = " ".join(re.findall(r"^### (.+)$", DOC, re.MULTILINE))
    undocumented = sorted(r for r in rule_ids if f"`{r}`" not in headings)
    assert not undocumented


def test_the_plan_section_no_longer_says_requesters_and_freezes_are_not_compared() -> None:
    plan = DOC.split("### `broker scopes plan", 1)[1]
    assert "are not compared" not in plan and 'prints "No changes"' not in plan
    for compared in ("requester", "freeze", "slack_approval", "pending_expiry", "rate_limit"):
        assert compared in plan
