"""Run benchmarks by name; with no name, run them all."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "scopes": "bench.scopes_bench",
    "issuance": "bench.issuance_bench",
    "cached": "bench.cached_bench",
    "burst": "bench.burst_bench",
    "intent": "bench.intent_bench",
    "intent_request": "bench.intent_request_bench",
    "decision": "bench.decision_bench",
    "killswitch": "bench.killswitch_bench",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    for name in names:
        print(f"== {name}")
        importlib.import_module(BENCHMARKS[name]).main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
