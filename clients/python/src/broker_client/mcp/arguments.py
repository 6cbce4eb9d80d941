"""The tools' arguments: one pydantic model per tool, which gives the input schema a host
shows the model and the validation whose failures become structured refusals with a
sentence a person can act on (never a raw pydantic error string)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

BackendName = Literal["aws", "vault", "database"]
REQUEST_ID_PATTERN = r"^req_[a-z0-9]{26}$"


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Destination(_Arguments):
    profile: str | None = Field(
        default=None, description="AWS profile (or env file) name; default broker-<service>-..."
    )
    env_file: bool = Field(default=False, description="Write AWS credentials to an env file")


class ScopeArguments(Destination):
    service: str = Field(description="The scope's service, e.g. payments", min_length=1)
    environment: str = Field(description="The environment, e.g. prod", min_length=1)
    backend: BackendName = Field(default="aws", description="aws, vault or database")
    region: str | None = Field(default=None, description="AWS region (aws only)")
    duration_seconds: int | None = Field(
        default=None, description="Lifetime wanted in seconds; clamped to the tier's", gt=0
    )


class IntentArguments(ScopeArguments):
    intent: dict[str, Any] | None = Field(
        default=None,
        description="What you will do, instead of resources: {operations: [{action, "
        "resource}]} (aws), {operations: [{path, capabilities}]} (vault), {operations: "
        "[{object, privileges}]} (database), {terraform_plan: <terraform show -json>} or "
        "{cloudformation_change_set: <describe-change-set>}. The credential can do exactly "
        "that; the intent decides the tier",
    )
    intent_file: str | None = Field(
        default=None,
        description="Path of a JSON file holding the intent, or the output of terraform "
        "show -json PLAN or aws cloudformation describe-change-set (for large plans)",
        min_length=1,
    )


class CredentialsArguments(IntentArguments):
    resources: list[str] | None = Field(
        default=None, description="Narrow to these ARNs, KV paths or schema.table names"
    )


class ElevationArguments(IntentArguments):
    tier: Literal["write", "delete"] = Field(description="write or delete")
    justification: str = Field(
        description="Why, in one or two sentences: shown to the human approvers",
        min_length=10,
        max_length=2000,
    )
    resources: list[str] | None = Field(
        default=None, description="The exact ARNs, KV paths or tables to change (fewer is faster)"
    )


class StatusArguments(_Arguments):
    request_id: str = Field(
        description="The request_id from request_elevation", pattern=REQUEST_ID_PATTERN
    )
    wait_seconds: int = Field(
        default=0, description="Wait up to this long for a change", ge=0, le=30
    )


class NoArguments(_Arguments):
    pass


_HINTS = {
    "justification": "say why in one or two sentences (10 to 2000 characters): the approvers "
    "read it",
    "tier": "request_elevation is for write or delete; read comes from request_credentials",
    "backend": "the backend is aws, vault or database",
    "request_id": "a request id looks like req_ followed by 26 letters and digits, as "
    "request_elevation returned it",
    "wait_seconds": "wait_seconds is a whole number from 0 to 30",
    "duration_seconds": "duration_seconds is a positive whole number of seconds",
    "intent": "an intent is an object holding one of operations, terraform_plan or "
    "cloudformation_change_set",
}


def explain(error: ValidationError) -> tuple[str, str]:
    """The first bad field and a sentence about it (never echoing the rejected value)."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "arguments"
    name = str(first["loc"][0]) if first["loc"] else ""
    kind = first["type"]
    if kind == "missing":
        sentence = f"{field} is required"
    elif kind == "extra_forbidden":
        sentence = f"{field} is not an argument of this tool"
    else:
        sentence = f"{field} is not valid"
    hint = _HINTS.get(name)
    return field, f"{sentence}: {hint}" if hint else f"{sentence} ({first['msg'].lower()})"


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for value in schema.get("properties", {}).values():
        value.pop("title", None)
    return schema
