"""Declared schemas: YAML read into data, validated by pydantic, problems at file:line:column."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pytest
from pydantic import TypeAdapter
from pydantic_core import InitErrorDetails

from broker.schema import (
    KEY,
    Declared,
    Duration,
    Entries,
    FilePath,
    Flag,
    HttpUrl,
    Integer,
    Keyed,
    Labels,
    Text,
    alias,
    problem,
    section,
    validate,
)
from broker.yamldoc import Document, parse


@dataclass(frozen=True)
class Member(Declared):
    name: Annotated[str, alias(KEY)]
    email: Annotated[str | None, Text(r"[^@\s]+@[^@\s]+", "an email address")] = None
    admin: Annotated[bool, Flag] = False

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        if data.get(KEY) == "root":
            yield problem("is reserved", key=True)


@dataclass(frozen=True)
class Team(Declared):
    kind: Literal["team", "guild"]
    size: Annotated[int, Integer(1, 50)]
    members: Annotated[Mapping[str, Member], Keyed] = field(default_factory=dict)
    tags: Annotated[tuple[str, ...], Entries()] = ("none",)
    lead: Annotated[str | None, Text()] = None
    window: Annotated[int, alias("window"), Duration(60, 3600)] = 600
    home: Annotated[str | None, HttpUrl] = None
    notes: Annotated[Path | None, FilePath] = None
    retries: Annotated[int, section("limits", "retries"), Integer(0, 9)] = 3
    timeout: Annotated[int, section("limits", "timeout"), Duration()] = 30

    REQUIRED: ClassVar[tuple[str, ...]] = ("version",)
    HEADER: ClassVar[Mapping[str, str]] = {"version": "v1"}

    def problems(self) -> Iterator[InitErrorDetails]:
        if self.lead is not None and self.lead not in self.members:
            yield problem(f"names '{self.lead}', who is not a member", "lead")


LABELS = Labels("team", {"members": "member"})
GOOD = "version: v1\nkind: team\nsize: 3\n"


def load(text: str, **context: Any) -> tuple[Team | None, list[str]]:
    document = Document("t.yaml", parse(text, "t.yaml"))
    value, problems = validate(TypeAdapter(Team), document, LABELS, document.data, context)
    return value, [str(p).removeprefix("t.yaml:") for p in problems]


def problems_of(text: str) -> list[str]:
    value, found = load(text)
    assert value is None
    return found


def test_a_valid_document_becomes_the_dataclass(tmp_path: Path) -> None:
    team, found = load(
        GOOD + "members:\n  ann: {email: ann@example.com, admin: true}\n  bo: {}\n"
        "tags: [a, b]\nlead: ann\nwindow: 15m\nhome: https://team.example.com/\n"
        "notes: notes.md\nlimits: {retries: 0}\n",
        base=tmp_path,
    )
    assert found == []
    assert team is not None
    assert team.members["ann"] == Member("ann", "ann@example.com", True)
    assert team.members["bo"].name == "bo"
    assert (team.tags, team.window, team.home) == (("a", "b"), 900, "https://team.example.com/")
    assert team.notes == tmp_path / "notes.md"
    assert (team.retries, team.timeout) == (0, 30)


def test_every_problem_in_one_pass_at_its_place() -> None:
    assert problems_of(
        "version: v2\nkind: club\nsize: '3'\ntags: []\nwindow: 2h\ncolour: red\n"
        "members:\n  ann: {email: nope, admin: 1, age: 3}\n"
        "limits: {retries: 10, timeoot: 5}\n"
    ) == [
        "1:10: version must be 'v1'",
        "2:7: kind 'club' is invalid: one of team, guild",
        "3:7: size must be an integer",
        "4:7: tags must not be empty",
        "5:9: window must be 1m to 1h",
        "6:1: team: unknown key 'colour' (expected one of: home, kind, lead, limits, members, "
        "notes, size, tags, version, window)",
        "8:16: member 'ann' email 'nope' is invalid: an email address",
        "8:29: member 'ann' admin must be true or false",
        "8:32: member 'ann': unknown key 'age' (expected one of: admin, email)",
        "9:19: limits.retries must be between 0 and 9, got 10",
        "9:23: limits: unknown key 'timeoot' (did you mean 'timeout'?)",
    ]


def test_missing_keys_are_reported_at_their_mapping() -> None:
    assert problems_of("members:\n  ann: {}\n") == [
        "1:1: team: missing required key 'kind'",
        "1:1: team: missing required key 'size'",
        "1:1: team: missing required key 'version'",
    ]


def test_cross_field_rules_run_once_the_fields_are_valid() -> None:
    assert problems_of(GOOD + "lead: cy\n") == ["4:7: lead names 'cy', who is not a member"]
    assert problems_of(GOOD + "members: {root: {}}\n") == ["4:11: members: is reserved"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("limits: 5\n", "1:9: limits must be a mapping"),
        ("members: [ann]\n", "1:10: members must be a mapping"),
        ("members: {ann: 5}\n", "1:16: member 'ann' must be a mapping"),
        ("tags: [a, b, a]\n", "1:14: tags: duplicate entry 'a'"),
        ("tags: a\n", "1:7: tags must be a list"),
        ("tags: [1]\n", "1:8: tags[0] must be a string"),
        ("lead: " + "x" * 3000 + "\n", "1:7: lead is longer than 2048 characters"),
        ("size: true\n", "1:7: size must be an integer"),
        ("size: 51\n", "1:7: size must be between 1 and 50, got 51"),
        ("window: soon\n", "1:9: window must be a duration such as 900, '15m', '1h' or '2d'"),
        ("notes: 7\n", "1:8: notes must be a path"),
    ],
)
def test_wrong_values_are_refused_not_coerced(text: str, expected: str) -> None:
    rest = "version: v1\nkind: team\n" if text.startswith("size") else GOOD
    assert problems_of(text + rest) == [expected]


@pytest.mark.parametrize("url", ["ftp://x.example", "https://", "x.example", "http//x", "42"])
def test_urls_are_typed_and_never_echoed(url: str) -> None:
    (found,) = problems_of(GOOD + f"home: '{url}'\n")
    assert found == "4:7: home must be an http(s) URL"


def test_yaml_text_stays_text() -> None:
    """YAML 1.1 reads 18:00 as a base-60 number and 2026-02-30 as a broken date: both are
    kept as the text written, for the field to judge."""
    document = Document("t.yaml", parse("a: 18:00\nb: 2026-02-30\nc: 2026-02-03\nd: 0x10\n", "t"))
    assert document.data == {"a": "18:00", "b": "2026-02-30", "c": dt.date(2026, 2, 3), "d": 16}


def test_keys_a_schema_cannot_take() -> None:
    found = problems_of(GOOD + '? [a]\n: 1\nsize: 4\nmembers: {"a\\0b": {}}\n')
    assert found == [
        "4:3: team: keys must be strings",
        "6:1: team: duplicate key 'size'",
        "7:11: members: invalid key 'a\\x00b'",
    ]


def test_a_document_finds_the_node_behind_any_location() -> None:
    document = Document("t.yaml", parse("a:\n  b: [x, {c: 1}]\n", "t"))
    node = document.node(("a", "b", 1, "c"))
    assert node is not None and (node.start_mark.line, node.start_mark.column) == (1, 13)
    key = document.node(("a", "b"), key=True)
    assert key is not None and key.value == "b"
    deepest = document.node(("a", "nope", 3))
    assert deepest is not None and deepest.start_mark.line == 1  # a's mapping
    assert document.location(node) == ("a", "b", 1, "c")
