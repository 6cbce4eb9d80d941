"""The API reference in Markdown, generated from the OpenAPI document (docs/api.md).

`broker openapi --markdown > docs/api.md` regenerates it; a test keeps the committed file
equal to what this module renders, so the reference cannot drift from the API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")


def _ref(schema: Mapping[str, Any]) -> str:
    ref = schema.get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else ""


def _type(schema: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        return f"[{_ref(schema)}](#{_ref(schema).lower()})"
    kind = str(schema.get("type", "object"))
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        kind += " (" + " \\| ".join(f"`{v}`" for v in schema["enum"]) + ")"
    if schema.get("nullable"):
        kind += " or null"
    return kind


def _one_line(text: object) -> str:
    return " ".join(str(text or "").split()).replace("|", "\\|")


def _resolve(spec: Mapping[str, Any], item: Mapping[str, Any]) -> Mapping[str, Any]:
    name = _ref(item)
    if not name:
        return item
    section = str(item["$ref"]).split("/")[2]
    resolved: Mapping[str, Any] = spec["components"][section][name]
    return resolved


def _operation(
    spec: Mapping[str, Any], path: str, method: str, operation: Mapping[str, Any]
) -> Iterator[str]:
    yield f"### `{method.upper()} {path}`"
    yield ""
    yield _one_line(operation.get("summary"))
    yield ""
    if operation.get("security"):
        yield "Authentication: `Authorization: Bearer <agent JWT>`."
        yield ""
    parameters = [_resolve(spec, p) for p in operation.get("parameters", [])]
    if parameters:
        yield "| parameter | in | type | required | description |"
        yield "| --- | --- | --- | --- | --- |"
        for p in parameters:
            yield (
                f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} | "
                f"{'yes' if p.get('required') else 'no'} | {_one_line(p.get('description'))} |"
            )
        yield ""
    body = operation.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        yield f"Request body (JSON): {_type(schema)}"
        yield ""
    yield "| status | meaning | body |"
    yield "| --- | --- | --- |"
    for status, response in sorted(operation.get("responses", {}).items()):
        response = _resolve(spec, response)
        content = response.get("content", {}).get("application/json", {})
        schema = content.get("schema")
        yield (
            f"| {status} | {_one_line(response.get('description'))} | "
            f"{_type(schema) if schema else ''} |"
        )
    yield ""


def _schema(name: str, schema: Mapping[str, Any]) -> Iterator[str]:
    yield f"### {name}"
    yield ""
    if schema.get("description"):
        yield _one_line(schema["description"])
        yield ""
    properties = schema.get("properties", {})
    if not properties:
        yield f"{_type(schema)}"
        yield ""
        return
    required = set(schema.get("required", []))
    yield "| field | type | required | description |"
    yield "| --- | --- | --- | --- |"
    for field, spec in properties.items():
        yield (
            f"| `{field}` | {_type(spec)} | {'yes' if field in required else 'no'} | "
            f"{_one_line(spec.get('description'))} |"
        )
    yield ""


def render_markdown(spec: Mapping[str, Any]) -> str:
    info = spec["info"]
    lines = [
        f"# {info['title']}: API reference",
        "",
        "Generated from `broker/openapi.yaml` by `broker openapi --markdown`; do not edit by "
        "hand. The same document is served at `/v1/openapi.json`.",
        "",
        _one_line(info.get("description")),
        "",
        "Every error has the body [Error](#error): `{error, message, request_id}` plus, where "
        "it applies, `field`, `backend`, `window` or `retry_after`.",
        "",
        "## Endpoints",
        "",
    ]
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                lines.extend(_operation(spec, path, method, item[method]))
    lines += ["## Schemas", ""]
    for name, schema in spec["components"]["schemas"].items():
        lines.extend(_schema(name, schema))
    return "\n".join(lines).rstrip() + "\n"
