"""Declared schemas for the broker's YAML files: pydantic validates, problems keep their place.

A file is read by :mod:`broker.yamldoc` (size, depth, aliases and tags refused: the hardening
no library does) into positioned nodes, turned into plain data, then validated by pydantic
against frozen dataclasses that declare each field once: its YAML key, type, bounds and
default. Every error pydantic finds becomes a :class:`Problem` at the line and column of
the value (or key) it is about, worded as the broker always has ("limits.circuit_failures
must be between 1 and 100, got 0"); all of them are reported in one pass.

A dataclass takes part by deriving from :class:`Declared`; its fields use the types below
as ``Annotated`` metadata (:func:`Text`, :func:`Integer`, :func:`Duration`, :data:`Flag`,
:class:`Entries`, :data:`HttpUrl`...), so a wrong YAML type is refused instead of coerced,
in the broker's wording.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import (
    AliasPath,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError, Url, core_schema

from broker.errors import Problem
from broker.yamldoc import Document, Loc, clip, format_duration, parse_duration

T = TypeVar("T")

# The alias under which a keyed mapping hands each entry its own key (see :func:`keyed`).
# Keys holding a NUL are refused when a file is read, so no file can write this one.
KEY = "\x00key"
# The alias of a field no file may set (the broker fills it in, such as a file's name).
NOT_IN_FILE = "\x00internal"
# How a validator's message is worded: continuing the value's name ("must be ..."), a whole
# sentence, or about a key of a mapping (after the mapping's name, at the key).
_PHRASE, _SENTENCE, _KEY = "phrase", "sentence", "key"
_OURS = (_PHRASE, _SENTENCE, _KEY)


def problem(
    message: str, *at: str | int, sentence: bool = False, key: bool = False
) -> InitErrorDetails:
    """One error at ``at`` below the value being validated.

    The message continues the value's name ("must be ..."), or is a whole ``sentence``, or
    is about the ``key`` that ``at`` ends with.
    """
    kind = _SENTENCE if sentence else _KEY if key else _PHRASE
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=at, input=None)


def refuse(*errors: InitErrorDetails) -> ValidationError:
    """A validator raises this; pydantic files each error under the value's location."""
    return ValidationError.from_exception_data("broker", list(errors))


# -- field types: metadata for ``Annotated[<type>, ...]`` ------------------------------------


def Text(  # noqa: N802 - used like a type
    pattern: str | None = None, hint: str = "", max_length: int = 2048
) -> PlainValidator:
    """A string, optionally matching ``pattern`` (the ``hint`` says what is expected)."""
    compiled = re.compile(pattern) if pattern else None

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise refuse(problem(f"must be a string{hint and f' ({hint})'}"))
        if len(value) > max_length:
            raise refuse(problem(f"is longer than {max_length} characters"))
        if compiled is not None and not compiled.fullmatch(value):
            raise refuse(problem(f"'{clip(value)}' is invalid{hint and f': {hint}'}"))
        return value

    return PlainValidator(check)


def Integer(minimum: int = 0, maximum: int | None = None) -> PlainValidator:  # noqa: N802
    """A YAML integer (never a quoted number or a boolean) within bounds."""

    def check(value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise refuse(problem("must be an integer"))
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise refuse(problem(f"must be {bound}, got {value}"))
        return value

    return PlainValidator(check)


def seconds(value: object) -> int:
    """A duration: an integer number of seconds or text like '15m', '1h30m', '2d'."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    parsed = parse_duration(value) if isinstance(value, str) else None
    if parsed is None:
        raise refuse(problem("must be a duration such as 900, '15m', '1h' or '2d'"))
    return parsed


def Duration(minimum: int = 0, maximum: int | None = None) -> PlainValidator:  # noqa: N802
    """A duration in seconds, optionally within bounds."""

    def check(value: object) -> int:
        result = seconds(value)
        if maximum is not None and not minimum <= result <= maximum:
            span = f"{format_duration(minimum)} to {format_duration(maximum)}"
            raise refuse(problem(f"must be {span}"))
        return result

    return PlainValidator(check)


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise refuse(problem("must be true or false"))
    return value


def _http_url(value: object) -> str:
    """An absolute http(s) URL with a host, kept as written (the value is never echoed)."""
    try:
        url = Url(value) if isinstance(value, str) and len(value) <= 2048 else None
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise refuse(problem("must be an http(s) URL"))
    return value  # type: ignore[return-value]


def _file_path(value: object, info: ValidationInfo) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise refuse(problem("must be a path"))
    path = Path(value)
    base = (info.context or {}).get("base")
    return path if path.is_absolute() or base is None else base / path


Flag = PlainValidator(_flag)
HttpUrl = PlainValidator(_http_url)
Seconds = Duration()
# A path written in a file, relative to that file's directory.
FilePath = PlainValidator(_file_path)


@dataclass(frozen=True)
class Entries:
    """A YAML list (of strings, unless the tuple says otherwise): not empty unless allowed,
    every entry distinct unless allowed."""

    allow_empty: bool = False
    unique: bool = True

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def check(value: object, items: ValidatorFunctionWrapHandler) -> object:
            if not isinstance(value, list | tuple):
                raise refuse(problem("must be a list"))
            result = items(value)
            if not result and not self.allow_empty:
                raise refuse(problem("must not be empty"))
            if self.unique:
                _unique(result)
            return result

        return core_schema.no_info_wrap_validator_function(check, handler(source))


def _unique(items: tuple[object, ...]) -> None:
    seen: set[object] = set()
    errors = []
    for index, item in enumerate(items):
        if item in seen:
            errors.append(problem(f"duplicate entry '{clip(str(item))}'", index, key=True))
        seen.add(item)
    if errors:
        raise refuse(*errors)


def alias(key: str | AliasPath, **options: Any) -> FieldInfo:
    """The YAML key of a field, when it differs from the attribute's name."""
    result: FieldInfo = Field(validation_alias=key, **options)
    return result


def section(*path: str) -> FieldInfo:
    """A flat attribute written in a nested mapping of the file (``limits: {...}``)."""
    return alias(AliasPath(*path))


def keyed(entries: object) -> object:
    """Hand each entry of a mapping its own key (under :data:`KEY`)."""
    if not isinstance(entries, dict):
        return entries
    return {k: {**v, KEY: k} if isinstance(v, dict) else v for k, v in entries.items()}


Keyed = BeforeValidator(keyed)


# -- declared dataclasses -------------------------------------------------------------------


@dataclass(frozen=True)
class _Keys:
    """The YAML keys a declared dataclass takes: its own, and those of its sections."""

    direct: frozenset[str]
    sections: Mapping[str, frozenset[str]]
    header: frozenset[str]
    prepares: bool  # the class adjusts the mapping (it gets a copy)
    checks: bool  # the class has rules across fields

    @property
    def every(self) -> frozenset[str]:
        return self.direct | frozenset(self.sections) | self.header

    @property
    def accepted(self) -> frozenset[str]:
        return self.direct | {KEY}

    @property
    def plain(self) -> bool:
        """A mapping holding only this class's own keys may go to pydantic as it is."""
        return not (self.prepares or self.sections or self.header)


class Declared:
    """A frozen dataclass validated from a YAML mapping (``TypeAdapter(cls)``).

    Unknown keys are refused with a suggestion, sections checked like mappings of their own;
    a subclass may adjust the raw mapping in :meth:`prepare` and check fields against each
    other in :meth:`problems` (cross-field rules), both positioned like any other error.
    Constructing the dataclass in code does not validate: only files are validated.
    """

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")
    # Keys the file must write though no field needs them (a field's section, say).
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    # Keys whose value is fixed (a document's version and kind); checked, then set aside.
    HEADER: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def prepare(cls, data: dict[str, Any]) -> Iterator[InitErrorDetails]:
        """Adjust the file's mapping before its fields are validated; yield any problems."""
        return iter(())

    def problems(self) -> Iterator[InitErrorDetails]:
        """Rules across fields, checked once every field is valid."""
        return iter(())

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: Callable[[Any], core_schema.CoreSchema]
    ) -> core_schema.CoreSchema:
        keys = _keys_of(source)

        def validate(data: object, fields: ValidatorFunctionWrapHandler) -> object:
            return data if isinstance(data, source) else _declared(source, keys, data, fields)

        return core_schema.no_info_wrap_validator_function(validate, handler(source))


def _declared(
    cls: type[Declared], keys: _Keys, data: object, fields: ValidatorFunctionWrapHandler
) -> Declared:
    """A declared dataclass from a file's mapping, or every problem with it."""
    if not isinstance(data, dict):
        raise refuse(problem("must be a mapping"))
    errors: list[InitErrorDetails] = []
    missing = [key for key in cls.REQUIRED if key not in data]
    errors += [problem(f": missing required key '{key}'") for key in missing]
    for key, expected in cls.HEADER.items():
        if key in data and data[key] != expected:
            errors.append(problem(f"must be '{expected}'", key))
    known = data if keys.plain and keys.accepted.issuperset(data) else _known(data, keys, errors)
    if keys.prepares:
        errors.extend(cls.prepare(known))
    if keys.sections:  # an empty section sets nothing (pydantic would call it unknown)
        known = {k: v for k, v in known.items() if v or k not in keys.sections}
    try:
        result: Declared = fields(known)
    except ValidationError as e:
        # A missing section was reported once, not once for each of its fields.
        found = (d for d in _details(e) if d["type"] != "missing" or d["loc"][0] not in missing)
        raise refuse(*found, *errors) from None
    if keys.checks:
        errors.extend(result.problems())
    if errors:
        raise refuse(*errors)
    return result


def _known(data: dict[str, Any], keys: _Keys, errors: list[InitErrorDetails]) -> dict[str, Any]:
    """The entries of ``data`` the class declares; a problem for each other one."""
    known: dict[str, Any] = {}
    for key, value in data.items():
        inner = keys.sections.get(key)
        if key in keys.header:
            continue
        if key in keys.direct or key == KEY:
            known[key] = value
        elif inner is None:
            errors.append(problem(_unknown(key, keys.every), key, key=True))
        elif not isinstance(value, dict):
            errors.append(problem("must be a mapping", key))
        else:
            known[key] = {k: v for k, v in value.items() if k in inner}
            for k in value:
                if k not in inner:
                    errors.append(problem(_unknown(k, inner), key, k, key=True))
    return known


def _unknown(key: str, allowed: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = (
        f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(sorted(allowed))}"
    )
    return f"unknown key '{clip(key)}' ({hint})"


_KEYS: dict[type, _Keys] = {}


def _keys_of(cls: type) -> _Keys:
    if cls not in _KEYS:
        hints = typing.get_type_hints(cls, include_extras=True)
        direct: set[str] = set()
        sections: dict[str, frozenset[str]] = {}
        for f in dataclasses.fields(cls):
            infos = [
                m for m in getattr(hints[f.name], "__metadata__", ()) if isinstance(m, FieldInfo)
            ]
            key = next((i.validation_alias for i in infos if i.validation_alias), f.name)
            if isinstance(key, AliasPath):
                first, second = key.path
                sections[str(first)] = sections.get(str(first), frozenset()) | {str(second)}
            elif not str(key).startswith("\x00"):
                direct.add(str(key))
        _KEYS[cls] = _Keys(
            frozenset(direct),
            sections,
            frozenset(getattr(cls, "HEADER", {})),
            prepares=_overrides(cls, "prepare"),
            checks=_overrides(cls, "problems"),
        )
    return _KEYS[cls]


def _overrides(cls: type, name: str) -> bool:
    """Whether ``cls`` defines ``name`` itself rather than taking Declared's."""
    mro = cls.__mro__
    return any(name in vars(c) for c in mro[: mro.index(Declared)] if Declared in mro)


def _details(error: ValidationError) -> Iterator[InitErrorDetails]:
    """A caught ValidationError's errors, to raise again with more."""
    for d in error.errors(include_url=False):
        kind = d["type"]
        yield InitErrorDetails(
            type=PydanticCustomError(kind, d["msg"]) if kind in _OURS else kind,
            loc=d["loc"],
            input=d.get("input"),
            ctx=d.get("ctx") or {},
        )


# -- documents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """How a document's problems name a location: the root's name, and the top-level
    mappings or lists whose entries are named by their key ("tier 'write' ttl")."""

    root: str
    named: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def of(self, loc: Loc, data: object) -> str:
        if not loc:
            return self.root
        parts = list(loc)
        head = ""
        if len(parts) >= 2 and parts[0] in self.named:
            entry = parts[1]
            if isinstance(entry, int):
                entries = data.get(parts[0]) if isinstance(data, dict) else None
                item = entries[entry] if isinstance(entries, list) else None
                name = item.get("name") if isinstance(item, dict) else None
                entry = name if isinstance(name, str) else f"#{entry + 1}"
            head = f"{self.named[str(parts[0])]} '{clip(str(entry))}'"
            parts = parts[2:]
        path = ""
        for part in parts:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += ("." if path else "") + clip(part)
        return f"{head} {path}".strip()


def validate(
    adapter: TypeAdapter[T],
    document: Document,
    labels: Labels,
    data: object,
    context: dict[str, Any] | None = None,
) -> tuple[T | None, list[Problem]]:
    """``data`` (the document's, perhaps adjusted) as a ``T``, or every problem in it."""
    problems = [
        document.problem((), f"{labels.of(document.location(mapping), data)}: {reason}", at=key)
        for mapping, reason, key in document.problems
    ]
    try:
        value = adapter.validate_python(data, context=context)
    except ValidationError as e:
        errors = [d for d in e.errors(include_url=False) if KEY not in d["loc"]]
        problems += [_problem(d, document, labels) for d in errors]
        return None, sorted(problems, key=lambda p: (p.line, p.column))
    return (None, problems) if problems else (value, [])


_PHRASES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "float_type": "must be a number",
    "dict_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "too_short": "must not be empty",
}


def _problem(error: Any, document: Document, labels: Labels) -> Problem:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    key = bool(loc) and loc[-1] == "[key]"
    if key:
        loc = loc[:-1]
    what = labels.of(loc, document.data)
    if kind == _SENTENCE:
        return document.problem(loc, error["msg"], key)
    if kind == _KEY:
        return document.problem(loc, f"{labels.of(loc[:-1], document.data)}: {error['msg']}", True)
    if kind == _PHRASE:
        message = error["msg"]
        if key:
            what = labels.of(loc[:-1], document.data) + ": name"
        return document.problem(loc, what + ("" if message[:1] == ":" else " ") + message, key)
    if kind == "missing":
        return document.problem(
            loc[:-1], f"{labels.of(loc[:-1], document.data)}: missing required key '{loc[-1]}'"
        )
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        parent = labels.of(loc[:-1], document.data)
        return document.problem(loc, f"{parent}: unknown key '{clip(str(loc[-1]))}'", True)
    if kind == "literal_error":
        expected = str(error["ctx"]["expected"]).replace("'", "").replace(" or ", ", ")
        value = clip(str(error["input"]))
        if key:
            parent = labels.of(loc[:-1], document.data)
            reason = f"{parent}: unknown key '{value}' (expected one of: {expected})"
        elif "," in expected:
            reason = f"{what} '{value}' is invalid: one of {expected}"
        else:
            reason = f"{what} must be '{expected}'"
        return document.problem(loc, reason, key)
    phrase = _PHRASES.get(kind, "is invalid: " + str(error["msg"]).lower())
    return document.problem(loc, f"{what} {phrase}", key)
