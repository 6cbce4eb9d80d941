"""The issuance step is the one place a credential is minted and recorded.

Behaviour is tested through the API (tests/api, tests/issuers, tests/approvals); this
checks the shape that later guarantees rely on: no other module calls an issuer's
``issue`` or stores an issuance record, so whatever :mod:`broker.issuance` does around the
upstream call (audit, the store's record, the cache) happens to every credential.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "broker"


def calls(path: Path, method: str) -> list[str]:
    """Receivers of ``<receiver>.method(...)`` calls in a module, as source text."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        ast.unparse(node.func.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == method
    ]


def test_only_the_issuance_step_calls_an_issuer_or_stores_an_issuance() -> None:
    minted, recorded = {}, {}
    for path in PACKAGE.rglob("*.py"):
        name = str(path.relative_to(PACKAGE))
        issues = [r for r in calls(path, "issue") if "issuance" not in r]
        if issues:
            minted[name] = issues
        if calls(path, "record_issued"):
            recorded[name] = calls(path, "record_issued")
    assert minted == {"issuance.py": ["issuer"]}
    assert recorded == {"issuance.py": ["self.store"]}
