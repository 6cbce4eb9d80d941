"""docs/api.md is the reference generated from the OpenAPI document, kept in step."""

from __future__ import annotations

from pathlib import Path

from broker.api.openapi import spec
from broker.api.reference import render_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_docs_api_md_is_generated_from_the_openapi_document() -> None:
    """If this fails, run `broker openapi --markdown > docs/api.md` and commit the result."""
    assert DOCS.read_text() == render_markdown(spec())


def test_every_path_and_schema_appears_in_the_reference() -> None:
    document = spec()
    text = render_markdown(document)
    for path, item in document["paths"].items():
        for method in item:
            assert f"### `{method.upper()} {path}`" in text
    for name in document["components"]["schemas"]:
        assert f"### {name}\n" in text
