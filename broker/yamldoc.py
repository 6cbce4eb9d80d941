"""Safe, positioned YAML reading shared by scope files and the broker's config.

Why not ``yaml.safe_load``: we need the line and column of every value to report
``file:line:column: reason`` for *all* problems, and we must survive hostile input
(alias bombs, deep nesting, huge or binary files) with a clear error, bounded memory and
no hang. So a file is read with a size cap, decoded strictly, pre-scanned as a stream of
events (no anchors or aliases, bounded depth and node count), then composed into nodes
that keep their positions. :class:`Document` turns the nodes into plain data and finds the
node behind any location, so :mod:`broker.schema` can validate the data and still point at
the line and column of each problem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from broker.errors import Problem

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_EVENTS = 200_000
MAX_FLOW_BRACKETS = 2_000
# Block nesting needs indentation or an indicator ('- ', '? ', 'key: ') on the same line,
# so its depth is at most about twice the longest line: files with longer lines are scanned.
MAX_DIRECT_LINE = 1_000
ALIAS_REASON = "YAML anchors and aliases are not allowed in this file"

STANDARD_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("str", "int", "bool", "null", "float", "timestamp", "seq", "map")
)


class _FastResolverLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader with implicit-tag resolution memoized: scope files repeat scalars."""

    _resolved: dict[tuple[object, str, object], str] = {}

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is not yaml.ScalarNode or not isinstance(value, str) or len(value) > 256:
            return super().resolve(kind, value, implicit)
        key = (kind, value, tuple(implicit))
        tag = self._resolved.get(key)
        if tag is None:
            if len(self._resolved) > 100_000:
                self._resolved.clear()
            tag = self._resolved[key] = super().resolve(kind, value, implicit)
        return tag


_Loader: Any = _FastResolverLoader
_constructor = yaml.constructor.SafeConstructor()
_YAML = _constructor
_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"

Loc = tuple[str | int, ...]


class DocumentError(Exception):
    """The file cannot be read as YAML at all; carries one positioned problem."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def read_text(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """Read a file as UTF-8 text, refusing files over the cap without reading them whole."""
    name = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as e:
        raise DocumentError(Problem(name, 1, 1, f"cannot read file: {e.strerror}")) from e
    if len(raw) > max_bytes:
        raise DocumentError(
            Problem(name, 1, 1, f"file is larger than the {max_bytes // 1024} KiB limit")
        )
    if b"\x00" in raw:
        raise DocumentError(Problem(name, 1, 1, "file is binary (contains NUL bytes)"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DocumentError(Problem(name, line, 1, "file is not valid UTF-8")) from e


def parse(text: str, name: str) -> yaml.Node | None:
    """Parse one YAML document into positioned nodes, refusing hostile structures.

    Files that could hold anchors, aliases, custom tags or deep nesting (many flow
    brackets, or a line long enough for '- - - - ...') go through an event-by-event scan
    first, which refuses them with a precise position: libyaml composes recursively (a
    100 KB line of '- ' overflowed the C stack and killed the process) and shares aliased
    nodes, so neither may reach it. Ordinary scope files hold none of these and are
    composed directly, at C speed. (An alias without an anchor is an error libyaml
    reports itself.)
    """
    # Without an anchor (&) there can be no valid alias, and without '!' no tag.
    if (
        "&" in text
        or "!" in text
        or text.count("[") + text.count("{") > MAX_FLOW_BRACKETS
        or max(map(len, text.split("\n"))) > MAX_DIRECT_LINE
    ):
        _prescan(text, name)
    try:
        loader = _Loader(text)
        try:
            node: yaml.Node | None = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        raise DocumentError(_problem_from_yaml_error(e, name)) from e
    except yaml.YAMLError as e:
        raise DocumentError(_problem_from_other_error(e, name, text)) from e
    return node


class Document:
    """A YAML file as plain data, with the nodes it came from for positions."""

    def __init__(self, name: str, root: yaml.Node | None) -> None:
        self.name = name
        self.root = root
        # (the mapping, reason, the key's node) for each key no schema could take
        self.problems: list[tuple[yaml.Node, str, yaml.Node]] = []
        self.data: object = self._convert(root) if root is not None else None

    def _convert(self, node: yaml.Node) -> object:
        if type(node) is yaml.ScalarNode:
            return node.value if node.tag == _STR else _scalar(node)
        if type(node) is yaml.SequenceNode:
            return [self._convert(item) for item in node.value]
        mapping: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if type(key_node) is not yaml.ScalarNode or key_node.tag != _STR:
                self.problems.append((node, "keys must be strings", key_node))
            elif key in mapping or "\x00" in key:
                reason = "duplicate key" if key in mapping else "invalid key"
                self.problems.append((node, f"{reason} '{clip(key)}'", key_node))
            else:
                mapping[key] = self._convert(value_node)
        return mapping

    def location(self, target: yaml.Node) -> Loc:
        """Where a node is in the document (a search: for the rare problem, not each value)."""
        stack: list[tuple[yaml.Node, Loc]] = [(self.root, ())] if self.root else []
        while stack:
            node, loc = stack.pop()
            if node is target:
                return loc
            if isinstance(node, yaml.SequenceNode):
                stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
            elif isinstance(node, yaml.MappingNode):
                stack.extend((v, (*loc, k.value)) for k, v in node.value if type(k.value) is str)
        return ()

    def node(self, loc: Loc, key: bool = False) -> yaml.Node | None:
        """The node at ``loc`` (its key's node with ``key``), or the deepest one on the way."""
        node, found = self.root, self.root
        for index, part in enumerate(loc):
            if isinstance(node, yaml.MappingNode):
                pair = next((p for p in node.value if p[0].value == part), None)
                if pair is None:
                    break
                last = index == len(loc) - 1
                node = pair[0] if key and last else pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
            else:
                break
            found = node
        return found

    def problem(
        self, loc: Loc, reason: str, key: bool = False, at: yaml.Node | None = None
    ) -> Problem:
        """A problem about the value at ``loc`` (its key with ``key``; ``at`` a given node)."""
        node = at or self.node(loc, key)
        mark = node.start_mark if node is not None else None
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return Problem(self.name, line, column, one_line(reason))


def _scalar(node: yaml.ScalarNode) -> object:
    """A scalar's value; YAML 1.1's base-60 numbers (18:00) and bad dates stay text."""
    tag = node.tag
    if tag == _INT and ":" in node.value:
        return node.value
    try:
        return _YAML.yaml_constructors[tag](_YAML, node)
    except (ValueError, OverflowError, KeyError, yaml.YAMLError):
        return node.value


def read_document(path: Path) -> Document:
    """Read and parse a file (raises :class:`broker.yamldoc.DocumentError` when it is not YAML)."""
    return Document(str(path), parse(read_text(path), str(path)))


def _prescan(text: str, name: str) -> None:
    """Walk the event stream: no aliases or custom tags, bounded depth and size, one document."""
    depth = 0
    events = 0
    documents = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            events += 1
            if events > MAX_EVENTS:
                raise DocumentError(_at(name, event, f"more than {MAX_EVENTS} YAML nodes"))
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise DocumentError(_at(name, event, ALIAS_REASON))
            tag = getattr(event, "tag", None)
            if tag and tag not in STANDARD_TAGS:
                raise DocumentError(_at(name, event, f"YAML tag '{tag}' is not allowed"))
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise DocumentError(_at(name, event, "only one YAML document per file"))
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise DocumentError(_at(name, event, f"nesting deeper than {MAX_DEPTH} levels"))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.MarkedYAMLError as e:
        raise DocumentError(_problem_from_yaml_error(e, name)) from e
    except yaml.YAMLError as e:
        raise DocumentError(_problem_from_other_error(e, name, text)) from e


def _at(name: str, event: yaml.Event, reason: str) -> Problem:
    mark = event.start_mark
    if mark is None:
        return Problem(name, 1, 1, reason)
    return Problem(name, mark.line + 1, mark.column + 1, reason)


def _problem_from_other_error(e: yaml.YAMLError, name: str, text: str) -> Problem:
    """An unmarked YAML error (a forbidden character) as one positioned, one-line problem."""
    if isinstance(e, yaml.reader.ReaderError) and isinstance(e.position, int):
        # PyYAML counts characters; libyaml counts bytes of the UTF-8 encoding.
        offset = e.position
        if e.encoding != "unicode":
            offset = len(text.encode("utf-8")[:offset].decode("utf-8", errors="ignore"))
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        character = f"#x{e.character:04x}" if isinstance(e.character, int) else "a character"
        return Problem(name, line, column, f"invalid YAML: {character}: {e.reason}")
    return Problem(name, 1, 1, "invalid YAML: " + " ".join(str(e).split()))


def _problem_from_yaml_error(e: yaml.MarkedYAMLError, name: str) -> Problem:
    mark = e.problem_mark or e.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    reason = e.problem or e.context or "invalid YAML"
    if "maximum nesting depth" in reason:
        # The libyaml of PyYAML 6.0.4 stops at its own depth limit while scanning ahead,
        # before the event scan reaches ours: the same refusal, said the same way.
        return Problem(name, line, column, f"nesting deeper than {MAX_DEPTH} levels")
    return Problem(name, line, column, f"invalid YAML: {reason}")


_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> int | None:
    """'1h30m' / '900s' / '900' -> seconds; None when the text is not a duration."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not match or not text:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def format_duration(seconds: int) -> str:
    """Seconds -> the shortest '1h30m' style text."""
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """Control characters and line separators escaped (\\n, \\x1b...), the rest kept."""
    return _LINE_BREAKING.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def clip(value: str, length: int = 80) -> str:
    printable = value.encode("unicode_escape").decode("ascii")
    return printable if len(printable) <= length else printable[: length - 3] + "..."
