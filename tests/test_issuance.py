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
        if name.startswith("store/"):
            continue  # the repositories themselves
        for method in ("record_issued", "begin_issue", "complete_issue", "claim"):
            if calls(path, method):
                recorded.setdefault(name, []).extend(f"{r}.{method}" for r in calls(path, method))
    assert minted == {"issuance.py": ["issuer"]}
    # The write-ahead, then the record: the issuance step's own; a collection writes its
    # write-ahead with its claim, in the hook the issuance step calls (begin=...).
    assert recorded == {
        "issuance.py": ["self.store.complete_issue"],
        "approvals/collect.py": ["svc.store.claim"],
    }
    writers = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if ".begin_issue" in p.read_text() and not str(p.relative_to(PACKAGE)).startswith("store/")
    ]
    assert writers == ["issuance.py"]
