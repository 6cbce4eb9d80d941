"""Fuzzing the scope loader: whatever a file holds, the answer is a list of problems.

Scope files come from people (and from pull requests), so the loader must survive
anything: arbitrary text, YAML-looking text built from the tokens YAML gives meaning to
(anchors, aliases, tags, flow brackets, block scalars, directives, document markers),
structured junk of every YAML type, and the real example scopes with one part replaced by
junk, which gets past the structure checks into lint and the policy compiler. Each file
goes through the whole pipeline (``load_scope_set``: read, parse, check, lint, compile);
the property is that it returns, with either a loaded scope or problems that each name the
file, a line and column inside it, and a one-line reason. Nothing else may escape, and
memory stays bounded (measured with tracemalloc on the largest inputs).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.scopes.lint import LintContext
from broker.scopes.registry import load_scope_set
from tests.fixtures.broker import ROOT
from tests.scopes.factory import lint_context

pytestmark = pytest.mark.timeout(180)  # a hang guard for the whole module's tests

FUZZ = settings(
    max_examples=80,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EXAMPLES = {path.name: path.read_text() for path in sorted((ROOT / "scopes").glob("*.yaml"))}
SCOPE_KEYS = [
    "apiVersion",
    "kind",
    "metadata",
    "service",
    "requesters",
    "subject",
    "claims",
    "environments",
    "prod",
    "aws",
    "account",
    "regions",
    "roles",
    "read",
    "write",
    "delete",
    "vault",
    "kv",
    "mount",
    "paths",
    "database",
    "objects",
    "tiers",
    "ttl",
    "actions",
    "resources",
    "approval",
    "approvers",
    "groups",
    "required",
    "delay",
    "freezes",
    "recurring",
    "days",
    "start",
    "end",
    "timezone",
    "max_resources",
    "rate_limit",
]
SCALARS = [
    "broker/v1",
    "Scope",
    "payments",
    "agent:x",
    "111111111111",
    "us-east-1",
    "1h",
    "15m",
    "0",
    "-1",
    "99999999999999999999999",
    "1e309",
    ".nan",
    ".inf",
    "~",
    "null",
    "yes",
    "no",
    "on",
    "0x1f",
    "0o17",
    "1_000",
    "2026-02-30",
    "2026-12-20T25:00",
    "24:00",
    "25:61",
    "s3:GetObject",
    "s3:*",
    "*",
    "arn:aws:s3:::${env}-*",
    "${nope}",
    "${",
    "$",
    "10/h",
    "0/h",
    "5/0m",
    "mon",
    "Mars/Olympus",
    "",
    "''",
    '""',
    "'\\u0000'",
    '"\\ud800"',
    "\\N",
]
YAML_TOKENS = [
    ": ",
    "- ",
    "? ",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "!!python/object:os.system ",
    "!x ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "|",
    ">",
    "|-",
    ">+",
    "#",
    "'",
    '"',
    "---",
    "...",
    "%YAML 1.2",
    "%TAG ! tag:x,2000:",
    "\t",
    "\\",
    "@",
    "`",
    "%",
    "\ufeff",
    "\u2028",
    "\r",
]


@pytest.fixture(scope="module")
def ctx() -> LintContext:
    return lint_context()


@pytest.fixture()
def scope_dir(tmp_path: Path) -> Path:
    return tmp_path


def check(directory: Path, ctx: LintContext, content: str | bytes) -> list[str]:
    """Load ``content`` as the one scope file; every problem well-formed; return them."""
    path = directory / "fuzz.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    result = load_scope_set(path, ctx)
    text = path.read_bytes().decode("utf-8", errors="replace")
    breaks = sum(text.count(c) for c in "\n\r\x85\u2028\u2029")  # every YAML line break
    for problem in result.problems:
        assert problem.path == str(path), problem
        assert 1 <= problem.line <= breaks + 2 and problem.column >= 1, problem
        assert problem.reason and "\n" not in problem.reason, problem
        assert "Traceback" not in problem.reason, problem
    if result.problems:
        assert not result.scope_set.scopes
    else:
        assert len(result.scope_set.scopes) == 1
    return [str(p) for p in result.problems]


# -- strategies -------------------------------------------------------------------------

yaml_ish = st.lists(
    st.tuples(
        st.integers(0, 6).map(lambda n: " " * n),
        st.lists(
            st.sampled_from(YAML_TOKENS) | st.sampled_from(SCOPE_KEYS) | st.sampled_from(SCALARS),
            max_size=6,
        ).map("".join),
    ).map("".join),
    max_size=40,
).map("\n".join)

junk_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(SCALARS)
    | st.dates()
    | st.datetimes(timezones=st.sampled_from([dt.UTC, None]))
)
junk = st.recursive(
    junk_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(SCOPE_KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    """A real example scope with one value (at any depth) replaced, removed or duplicated."""
    data = yaml.safe_load(EXAMPLES[draw(st.sampled_from(sorted(EXAMPLES)))])
    for _ in range(draw(st.integers(1, 3))):
        node: Any = data
        path: list[Any] = []
        while isinstance(node, dict | list) and node and draw(st.integers(0, 3)) > 0:
            key = draw(
                st.sampled_from(
                    sorted(node, key=str) if isinstance(node, dict) else range(len(node))
                )
            )
            path.append(key)
            node = node[key]
        if not path:
            continue
        parent: Any = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "remove", "junk-key", "copy"]))
        if action == "replace":
            parent[path[-1]] = draw(junk)
        elif action == "remove":
            del parent[path[-1]]
        elif action == "junk-key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(SCOPE_KEYS) | st.text(max_size=8))] = draw(junk)
        elif action == "copy" and isinstance(parent, list):
            parent.append(parent[path[-1]])
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


# -- the properties ---------------------------------------------------------------------


@FUZZ
@given(content=st.text(max_size=3000) | st.binary(max_size=3000))
def test_arbitrary_text_and_bytes(scope_dir: Path, ctx: LintContext, content: str | bytes) -> None:
    check(scope_dir, ctx, content)


@FUZZ
@given(content=yaml_ish)
def test_yaml_looking_text(scope_dir: Path, ctx: LintContext, content: str) -> None:
    check(scope_dir, ctx, content)


@FUZZ
@given(data=st.dictionaries(st.sampled_from(SCOPE_KEYS) | st.text(max_size=8), junk, max_size=8))
def test_structured_junk(scope_dir: Path, ctx: LintContext, data: dict[Any, Any]) -> None:
    check(scope_dir, ctx, yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(content=mutated_examples())
def test_real_scopes_with_one_part_replaced(
    scope_dir: Path, ctx: LintContext, content: str
) -> None:
    check(scope_dir, ctx, content)


def test_the_unmutated_examples_load(scope_dir: Path, ctx: LintContext) -> None:
    """The mutation test starts from scopes that load: a problem there is the mutation's."""
    for text in EXAMPLES.values():
        assert check(scope_dir, ctx, text) == []


@st.composite
def big_hostile(draw: st.DrawFn) -> str:
    """Large inputs of the shapes that cost memory: wide flow collections, long scalars,
    many keys, deep block nesting, repeated anchors."""
    n = draw(st.integers(1000, 20_000))
    shape = draw(st.sampled_from(["flow", "scalar", "keys", "deep", "anchors", "list", "compact"]))
    if shape == "compact":  # nesting on one line: '- - - ... x'
        return "- " * (n // 10) + "x\n"
    if shape == "flow":
        return "a: [" + ", ".join(["[1, {b: 2}]"] * n) + "]\n"
    if shape == "scalar":
        return "a: " + "x" * (n * 40) + "\n"
    if shape == "keys":
        return "".join(f"k{i}: v{i}\n" for i in range(n))
    if shape == "deep":
        return "".join("  " * i + f"k{i}:\n" for i in range(min(n, 900)))
    if shape == "anchors":
        return "a: &x [1]\n" + "".join(f"b{i}: *x\n" for i in range(n))
    return "a:\n" + "- item\n" * n


@settings(FUZZ, max_examples=12)
@given(content=big_hostile())
def test_large_inputs_use_bounded_memory(scope_dir: Path, ctx: LintContext, content: str) -> None:
    assert len(content.encode()) <= 1024 * 1024
    tracemalloc.start()
    try:
        problems = check(scope_dir, ctx, content)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems
    assert peak < 64 * 1024 * 1024, f"{peak / 2**20:.0f} MiB for {len(content)} characters"


def test_a_forbidden_character_is_one_positioned_line(scope_dir: Path, ctx: LintContext) -> None:
    """Regression: a control character was reported at 1:1 over two lines (PyYAML's text)."""
    text = EXAMPLES["payments.yaml"].replace("owners: [team-payments]", "owners: [té\x07am]")
    line = text.splitlines().index("  owners: [té\x07am]") + 1
    [problem] = check(scope_dir, ctx, text)
    assert problem.endswith(
        f"fuzz.yaml:{line}:14: invalid YAML: #x0007: control characters are not allowed"
    )


@pytest.mark.parametrize(
    ("command", "content"),
    [
        (["scopes", "validate"], "- " * 100_000 + "x\n"),
        (["scopes", "validate"], "? " * 100_000 + "x\n"),
        (["config", "check"], "approvers:\n  " + "- " * 100_000 + "x\n"),
    ],
    ids=["sequences", "complex-keys", "config"],
)
def test_one_long_line_of_nesting_is_refused_not_a_crash(
    tmp_path: Path, command: list[str], content: str
) -> None:
    """Regression: 200 KB of '- - - ...' overflowed libyaml's recursive composer's C stack:
    a segmentation fault of `broker scopes validate`, and of the service reloading it.

    Run as the real command in a process of its own, so a crash fails this test only.
    """
    path = tmp_path / "deep.yaml"
    path.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", *command, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, (done.returncode, done.stderr[-500:])
    assert f"{path}:" in done.stdout + done.stderr
    assert "nesting deeper than 32 levels" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
