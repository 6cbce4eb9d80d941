"""Hostile or broken files: a clear error per file, no traceback, no hang, bounded memory."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from broker.cli import main
from broker.scopes.registry import load_scope_set
from tests.scopes.factory import lint_context, scope_data, write_scope

BILLION_LAUGHS = """\
apiVersion: broker/v1
kind: Scope
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def only_problem(directory: Path) -> str:
    result = load_scope_set(directory, lint_context())
    assert len(result.problems) == 1, result.problems
    assert not result.scope_set.scopes
    return str(result.problems[0])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("metadata: [unclosed\n", "invalid YAML"),
        ("a: 1\n  b: 2\n", "invalid YAML"),
        ("key: 'unterminated\n", "invalid YAML"),
        ("- just\n- a list\n", "scope must be a mapping"),
        ("", "file is empty"),
        ("---\na: 1\n---\nb: 2\n", "another document"),
        (BILLION_LAUGHS, "anchors and aliases are not allowed"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nesting deeper than"),
        ("a: !!python/object:os.system {}\n", "YAML tag"),
    ],
    ids=["unclosed", "indent", "quote", "list", "empty", "multi", "alias-bomb", "deep", "tag"],
)
def test_malformed_files_get_one_clear_problem(tmp_path: Path, content: str, expected: str) -> None:
    write_scope(tmp_path, content)
    problem = only_problem(tmp_path)
    assert problem.startswith(str(tmp_path / "shop.yaml") + ":")
    assert expected in problem


def test_alias_bomb_uses_bounded_memory(tmp_path: Path) -> None:
    write_scope(tmp_path, BILLION_LAUGHS)
    tracemalloc.start()
    only_problem(tmp_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 1024 * 1024


def test_fifty_megabyte_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.write(b"# padding\n" * (5 * 1024 * 1024))  # 50 MiB
    tracemalloc.start()
    problem = only_problem(tmp_path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "larger than the 1024 KiB limit" in problem
    assert peak < 4 * 1024 * 1024


def test_binary_junk_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.yaml").write_bytes(os.urandom(4096) + b"\x00")
    assert "binary" in only_problem(tmp_path)
    (tmp_path / "junk.yaml").write_bytes(b"metadata:\n  service: \xff\xfe\n")
    assert "not valid UTF-8" in only_problem(tmp_path)


def test_directory_without_scopes(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing here")
    assert "directory holds no scope files" in only_problem(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    assert "no such file or directory" in only_problem(tmp_path / "nope")


def test_one_bad_file_does_not_hide_the_others(tmp_path: Path) -> None:
    write_scope(tmp_path, "a: [\n", "broken.yaml")
    write_scope(tmp_path, scope_data(), "good.yaml")
    result = load_scope_set(tmp_path, lint_context())
    assert len(result.problems) == 1
    assert list(result.scope_set.scopes) == ["shop"]


def test_cli_prints_problems_and_exits_1_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_scope(tmp_path, BILLION_LAUGHS, "bomb.yaml")
    (tmp_path / "junk.yml").write_bytes(b"\x00\x01\x02")
    with pytest.raises(SystemExit) as exit_info:
        main(["scopes", "validate", str(tmp_path)])
    assert exit_info.value.code == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out.count(str(tmp_path)) == 2
    assert "2 problem(s) in 2 file(s)" in err


def test_hidden_files_and_directories_are_skipped(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as links into a hidden timestamped directory."""
    hidden = tmp_path / "..2026_11_23_08_00_00.123"
    hidden.mkdir()
    write_scope(hidden, scope_data())
    (tmp_path / "..data").symlink_to(hidden.name)
    (tmp_path / "shop.yaml").symlink_to("..data/shop.yaml")
    write_scope(tmp_path, "broken: [", ".shop.yaml.swp.yaml")
    result = load_scope_set(tmp_path, lint_context())
    assert result.problems == [] and list(result.scope_set.scopes) == ["shop"]


@pytest.mark.parametrize(
    "key", ["bad\nkey", "bad\rkey", "bell\x07", "esc\x1b[31mred", "sep\u2028arator", "x" * 500]
)
def test_a_problem_is_one_short_line_whatever_a_key_holds(tmp_path: Path, key: str) -> None:
    """Found by the scope fuzzer: an unknown key holding a newline made a two-line problem
    (and a terminal escape would have reached the operator's terminal)."""
    quoted = key.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    write_scope(tmp_path, f'apiVersion: broker/v1\n"{quoted}": 1\n')
    problems = [str(p) for p in load_scope_set(tmp_path, lint_context()).problems]
    unknown = [p for p in problems if "unknown key" in p]
    assert len(unknown) == 1, problems
    assert not any(c in unknown[0] for c in "\n\r\x07\x1b\u2028"), unknown[0]
    assert len(unknown[0]) < len(str(tmp_path)) + 300
