"""Validate and compile 1,000 scope files, IAM database load included (target: < 2 s).

Each run is a fresh Python process (so imports and the IAM database load are counted) that
loads, lints and compiles every file. Reported: the median of the runs, and its parts.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from broker.scopes.registry import default_workers

ROOT = Path(__file__).resolve().parents[1]
FILES = 1000
RUNS = 5

WORKER = """
import json, sys, time
start = time.perf_counter()
from pathlib import Path
from broker.policy.iam_actions import iam_database
from broker.scopes.lint import LintContext
from broker.scopes.registry import load_scope_set
iam = iam_database()
loaded_iam = time.perf_counter()
result = load_scope_set(Path(sys.argv[1]), LintContext(iam=iam), workers=int(sys.argv[2]))
done = time.perf_counter()
assert not result.problems, result.problems[:3]
print(json.dumps({"scopes": len(result.scope_set.compiled), "import_and_iam": loaded_iam - start,
                  "validate_and_compile": done - loaded_iam, "total": done - start}))
"""


def make_scopes(directory: Path, count: int) -> None:
    """`count` distinct services cloned from the example scopes.

    Each clone gets its own service name and its own resource names (so nothing compiled
    for one file can be reused for another), and its own accounts.
    """
    examples = sorted((ROOT / "scopes").glob("*.yaml"))
    for i in range(count):
        source = examples[i % len(examples)]
        text = source.read_text()
        service = text.split("\n  service: ", 1)[1].split("\n", 1)[0]
        clone = f"{service}{i:04d}"
        text = text.replace(f"\n  service: {service}\n", f"\n  service: {clone}\n")
        for prefix in ("payments-", "acme-", "ledger/", "ledger."):
            text = text.replace(prefix, f"{prefix[:-1]}{i:04d}{prefix[-1]}")
        text = text.replace("111111111111", f"1111{i:08d}").replace("222222222222", f"2222{i:08d}")
        (directory / f"{clone}.yaml").write_text(text)


def main() -> None:
    workers = default_workers()
    with tempfile.TemporaryDirectory() as tmp:
        make_scopes(Path(tmp), FILES)
        runs: dict[int, list[dict[str, float]]] = {1: [], workers: []}
        for _ in range(RUNS):  # interleaved, so both settings see the same machine state
            for count in runs:
                output = subprocess.run(
                    [sys.executable, "-c", WORKER, tmp, str(count)],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=ROOT,
                ).stdout
                runs[count].append(json.loads(output))
    print(f"{FILES} scope files, {RUNS} fresh processes each, median seconds:")
    for count, results in runs.items():
        assert all(r["scopes"] == FILES for r in results)
        median = {
            key: statistics.median(r[key] for r in results)
            for key in ("import_and_iam", "validate_and_compile", "total")
        }
        figures = "  ".join(f"{key} {value:.3f}" for key, value in median.items())
        verdict = "meets" if median["total"] < 2.0 else "misses"
        print(f"  {count} process(es): {figures}  -> {verdict} the 2 s target")


if __name__ == "__main__":
    main()
