"""Every secret the broker compares is compared in constant time.

Two checks. A static scan of the broker's source (``ast``) finds every ``==`` / ``!=``
whose operands look like a secret, signature, token, digest or MAC (by the last word of a
name, attribute, subscript key or called method) and fails listing them: such a comparison
returns as soon as a byte differs, and the time it takes tells an attacker how much of a
forged value was right. The only exceptions are listed below, each with why the value is
public. And the libraries the broker leaves its secret comparisons to (CSRF tokens,
approval-link and agent JWTs, Slack signatures) are checked to use
:func:`hmac.compare_digest` themselves.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import flask_wtf.csrf
import itsdangerous.signer
import jwt.algorithms
import slack_sdk.signature

PACKAGE = Path(__file__).resolve().parents[2] / "broker"

# The last word of a name that makes it look secret: csrf_token, signing_secret,
# record.hash, expected_sig, hmac.new(...).hexdigest() ...
SECRET_WORDS = frozenset(
    {
        "secret",
        "secrets",
        "signature",
        "signatures",
        "sig",
        "token",
        "tokens",
        "digest",
        "hexdigest",
        "hmac",
        "mac",
        "csrf",
        "password",
        "passwd",
        "nonce",
        "hash",
    }
)

# Comparisons of values that only look secret, each with why it is public. Keyed by file
# (relative to the package) and the comparison's source text.
PUBLIC: dict[tuple[str, str], str] = {
    ("audit/chain.py", "record.prev_hash != expected_prev"): (
        "unkeyed SHA-256 of public audit records: tamper evidence, nothing to guess"
    ),
    ("audit/chain.py", "record_hash(record, record.seq, record.prev_hash) != record.hash"): (
        "unkeyed SHA-256 of public audit records: tamper evidence, nothing to guess"
    ),
    ("audit/chain.py", "head_hash != expected_prev"): (
        "unkeyed SHA-256 of public audit records: tamper evidence, nothing to guess"
    ),
    ("audit/copy.py", "record.hash != digest"): (
        "an operator's exported copy of audit hashes, compared with the store: public"
    ),
}


@dataclass(frozen=True)
class Comparison:
    path: str
    line: int
    source: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return (
            f"broker/{self.path}:{self.line}: {self.source}  (looks like: {', '.join(self.words)})"
        )


def _last_word(name: str) -> str:
    words = [w for w in re.split(r"[_\W]+", name.lower()) if w]
    return words[-1] if words else ""


def _names(node: ast.AST) -> Iterator[str]:
    """The names an operand is known by: variables, attributes, string keys, called methods."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
        yield from _names(node.value)
    elif isinstance(node, ast.Subscript):
        if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            yield node.slice.value
        yield from _names(node.value)
    elif isinstance(node, ast.Call):
        yield from _names(node.func)
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def _sql_column(node: ast.AST) -> bool:
    """``table.c.name``: SQLAlchemy builds a WHERE clause from it; the database compares."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "c"
    )


def _secret_words(node: ast.AST) -> set[str]:
    return {w for w in map(_last_word, _names(node)) if w in SECRET_WORDS}


def secret_comparisons(package: Path) -> list[Comparison]:
    """Every ``==`` / ``!=`` in the package with an operand that looks secret."""
    found = []
    for file in sorted(package.rglob("*.py")):
        text = file.read_text()
        tree = ast.parse(text, filename=str(file))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for index, op in enumerate(node.ops):
                left, right = operands[index], operands[index + 1]
                if not isinstance(op, ast.Eq | ast.NotEq) or _sql_column(left):
                    continue
                words = _secret_words(left) | _secret_words(right)
                if words:
                    source = ast.get_source_segment(text, node) or ""
                    found.append(
                        Comparison(
                            str(file.relative_to(package)),
                            node.lineno,
                            " ".join(source.split()),
                            tuple(sorted(words)),
                        )
                    )
                    break
    return found


def test_no_secret_is_compared_with_eq() -> None:
    found = secret_comparisons(PACKAGE)
    leaks = [c for c in found if (c.path, c.source) not in PUBLIC]
    assert not leaks, "compare secrets with hmac.compare_digest:\n" + "\n".join(map(str, leaks))


def test_every_public_exception_still_exists() -> None:
    """A stale exception would silently excuse the next comparison written with its text."""
    seen = {(c.path, c.source) for c in secret_comparisons(PACKAGE)}
    assert not set(PUBLIC) - seen, sorted(set(PUBLIC) - seen)


NAIVE = """
import hmac

def check(request, secret, expected_sig, session):
    if request.headers["X-Signature"] != expected_sig:
        return False
    if session.get("csrf_token") == request.form.get("csrf_token"):
        pass
    computed = hmac.new(secret, b"x", "sha256").hexdigest()
    if computed == request.args["signature"]:
        pass
    if hmac.compare_digest(computed, expected_sig):  # the right way: not reported
        return True
    return request.token != None
"""


def test_the_scan_catches_naive_comparisons(tmp_path: Path) -> None:
    """The scan itself can fail: a module with four naive comparisons is reported four times."""
    (tmp_path / "naive.py").write_text(NAIVE)
    found = secret_comparisons(tmp_path)
    assert [c.line for c in found] == [5, 7, 10, 14], [str(c) for c in found]


def test_the_libraries_doing_our_comparisons_use_compare_digest() -> None:
    """CSRF (Flask-WTF, itsdangerous), link and agent JWTs (PyJWT's HMAC), Slack signatures."""
    for function in (
        flask_wtf.csrf.validate_csrf,
        itsdangerous.signer.SigningAlgorithm.verify_signature,
        jwt.algorithms.HMACAlgorithm.verify,
        slack_sdk.signature.SignatureVerifier.is_valid,
    ):
        assert "hmac.compare_digest(" in inspect.getsource(function), function.__qualname__


def test_the_broker_verifies_through_those_libraries() -> None:
    """Links are HS256 JWTs checked by PyJWT, Slack clicks by slack_sdk, forms by Flask-WTF."""
    links = (PACKAGE / "approvals" / "links.py").read_text()
    assert 'algorithms=["HS256"]' in links and "jwt.decode(" in links
    assert "verifier.is_valid(" in (PACKAGE / "api" / "slack.py").read_text()
    assert "validate_csrf(" in (PACKAGE / "api" / "pages.py").read_text()
