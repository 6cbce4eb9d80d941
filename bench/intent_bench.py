"""Reading an intent: Terraform plans of 10, 100 and 1,000 resources, and hostile ones.

Side by side, in one process: parse (bounds, plan, mappings), check against a scope, and
summarize, for plans of growing size; then the cost of refusing a hostile plan (200,000
JSON values, the most a plan may hold, and one value past it; 100 levels of nesting). The
IAM database is loaded first and not counted. Reported: the median of the runs.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker.errors import BrokerError
from broker.intent.classify import summarize
from broker.intent.fields import MAX_NODES
from broker.intent.model import AwsTarget
from broker.intent.parse import parse_intent
from broker.intent.scope import check_scope
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import load_scope_set

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "intent" / "fixtures" / "plan_s3_object_update.json"
TARGET = AwsTarget("111111111111", "us-east-1")
# (resources in the plan, of which changed): a plan lists every resource of the state.
SIZES = ((10, 10), (100, 100), (300, 300), (3000, 10))
RUNS = 7


def plan_of(size: int, changed: int | None = None) -> dict[str, Any]:
    """A plan of ``size`` objects of an artifact bucket, the first ``changed`` updated."""
    base = json.loads(FIXTURE.read_text())
    change = base["resource_changes"][1]
    config = base["configuration"]["root_module"]["resources"][1]
    base["resource_changes"], base["configuration"]["root_module"]["resources"] = [], []
    for n in range(size):
        entry = copy.deepcopy(change)
        entry["address"] = f"aws_s3_object.artifact_{n}"
        entry["name"] = f"artifact_{n}"
        if n >= (size if changed is None else changed):
            entry["change"]["actions"] = ["no-op"]
        for side in ("before", "after"):
            entry["change"][side].update(bucket="acme-prod-deploy-artifacts", key=f"build/{n}.zip")
        block = copy.deepcopy(config)
        block.update(address=entry["address"], name=entry["name"])
        block["expressions"]["bucket"] = {"constant_value": "acme-prod-deploy-artifacts"}
        base["resource_changes"].append(entry)
        base["configuration"]["root_module"]["resources"].append(block)
    return base


def median_ms(work: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def refused(plan: dict[str, Any]) -> Callable[[], None]:
    def work() -> None:
        try:
            parse_intent({"terraform_plan": plan}, "aws", iam_database(), TARGET)
        except BrokerError:
            return
        raise AssertionError("a hostile plan was accepted")

    return work


def main() -> None:
    iam = iam_database()
    scope = load_scope_set(ROOT / "scopes", LintContext(iam=iam)).scope_set.scopes["deploy"]
    env = scope.environments["prod"]
    print(f"{'plan':<34} {'parse':>10} {'+ scope check':>14} {'per resource':>13}")
    results: list[tuple[int, int, float]] = []
    for size, changed in SIZES:
        plan = plan_of(size, changed)

        def parse(plan: dict[str, Any] = plan) -> object:
            return parse_intent({"terraform_plan": plan}, "aws", iam, TARGET)

        def parse_and_check(plan: dict[str, Any] = plan) -> object:
            intent = parse_intent({"terraform_plan": plan}, "aws", iam, TARGET)
            # The deploy scope grants no s3:GetObjectTagging (Terraform's read-back), so
            # these operations come out outside it: the check's cost is the same.
            check_scope(intent, scope, env, "us-east-1", iam)
            return summarize(intent)

        parsed, checked = median_ms(parse), median_ms(parse_and_check)
        per_resource = checked / size * 1000
        results.append((size, changed, checked))
        label = f"{size:,} objects, {changed:,} updated"
        print(f"{label:<34} {parsed:>8.1f} ms {checked:>11.1f} ms {per_resource:>9.0f} µs")
    padded = plan_of(10)
    padded["planned_values"]["padding"] = [0] * (MAX_NODES - 2000)
    over = copy.deepcopy(padded)
    over["planned_values"]["padding"] += [0] * 3000
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(10_000):
        cursor["x"] = {}
        cursor = cursor["x"]
    nested = plan_of(10)
    nested["configuration"]["deep"] = deep
    accepted = median_ms(lambda: parse_intent({"terraform_plan": padded}, "aws", iam, TARGET))
    too_big, too_deep = median_ms(refused(over)), median_ms(refused(nested))
    under = f"hostile: just under {MAX_NODES:,} values"
    print(f"{under:<34} {accepted:>8.1f} ms (accepted)")
    print(f"{'hostile: past the value limit':<34} {too_big:>8.1f} ms (refused)")
    print(f"{'hostile: 10,000 levels deep':<34} {too_deep:>8.1f} ms (refused)")
    changed_most = max(results, key=lambda r: r[1])
    print(
        f"intent: {changed_most[1]} changed resources parsed and checked in "
        f"{changed_most[2]:.0f} ms; a 3,000-resource state with 10 changes in "
        f"{results[-1][2]:.0f} ms; the largest plan allowed {accepted:.0f} ms, "
        f"one past the limit refused in {too_big:.0f} ms"
    )
