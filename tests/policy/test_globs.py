"""IAM-style pattern matching: coverage and overlap, including tricks."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.policy.globs import covers, overlaps, placeholders_in, substitute


@pytest.mark.parametrize(
    ("pattern", "requested", "expected"),
    [
        ("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y", True),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::b/2026/*", True),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::B/x", False),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::b", False),
        ("arn:aws:s3:::b/?", "arn:aws:s3:::b/x", True),
        ("arn:aws:s3:::b/?", "arn:aws:s3:::b/*", False),
        ("arn:aws:s3:::a*b", "arn:aws:s3:::a*", False),
        ("arn:aws:s3:::a*", "arn:aws:s3:::ab*", True),
        ("arn:aws:s3:::b/*", "arn:aws-cn:s3:::b/x", False),
    ],
)
def test_covers(pattern: str, requested: str, expected: bool) -> None:
    assert covers(pattern, requested) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("a-*", "a-prod", True),
        ("a-prod-*", "a-staging-*", False),
        ("*-x", "y-*", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a*b*c", "a*c", True),
        ("abc", "abd", False),
    ],
)
def test_overlaps(first: str, second: str, expected: bool) -> None:
    assert overlaps(first, second) is expected
    assert overlaps(second, first) is expected


def test_placeholders() -> None:
    assert placeholders_in("arn:${env}:${region}") == ["env", "region"]
    assert substitute("x-${env}-${account}", {"env": "prod", "account": "1"}) == "x-prod-1"
    with pytest.raises(KeyError):
        substitute("${nope}", {})


ALPHABET = st.sampled_from("ab*?")
CONCRETE = st.text(alphabet="ab", max_size=6)


@given(
    st.text(alphabet=ALPHABET, max_size=6),
    st.text(alphabet=ALPHABET, max_size=6),
    st.lists(CONCRETE, max_size=30),
)
def test_overlap_agrees_with_concrete_witnesses(first: str, second: str, words: list[str]) -> None:
    """Whenever some concrete string matches both patterns, overlaps() must say so."""
    for word in words:
        if fnmatch.fnmatchcase(word, first) and fnmatch.fnmatchcase(word, second):
            assert overlaps(first, second)


@given(
    st.text(alphabet=ALPHABET, max_size=6),
    st.text(alphabet=ALPHABET, max_size=6),
    st.lists(CONCRETE, max_size=30),
)
def test_covers_is_sound(pattern: str, requested: str, words: list[str]) -> None:
    """If pattern covers requested, every concrete string requested matches, pattern matches."""
    if covers(pattern, requested):
        for word in words:
            if fnmatch.fnmatchcase(word, requested):
                assert fnmatch.fnmatchcase(word, pattern)
