"""Helpers of :mod:`.config`: durations, ``${VAR}`` substitution, secret masking, and
the bounded YAML reader and the error that carries every problem of a file."""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from crackseg.utils.deployment.durations import parse_duration
from crackseg.utils.deployment.errors import ConfigError
from crackseg.utils.deployment.redact import redact_value

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "ConfigFileError",
    "FileSection",
    "parse_duration",
    "read_yaml",
    "redact_value",
    "substitute_env",
    "valid_or_none",
]

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


def substitute_env(
    data: Any,
    env: Mapping[str, str] | None = None,
    path: str = "",
    resolved: list[str] | None = None,
) -> tuple[Any, list[tuple[str, str]]]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of ``data``.

    A value that is nothing but one reference and comes out empty (``token: ${TOKEN:-}``
    with ``TOKEN`` unset) becomes ``None``, i.e. the option is not set.

    Returns the new data and the problems found, each ``(key path, message)``: a variable
    that is unset and has no default, or a ``${`` that is not a well-formed reference.
    ``resolved`` collects every value taken from ``env``: secrets to mask wherever a
    check's text shows them.
    """
    env = os.environ if env is None else env
    problems: list[tuple[str, str]] = []

    def sub_str(value: str, where: str) -> str:
        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            if name in env:
                if resolved is not None:
                    resolved.append(env[name])
                return env[name]
            if default is not None:
                return default
            problems.append((where, f"environment variable {name} is not set"))
            return ""

        out = _VAR.sub(repl, value)
        if "${" in _VAR.sub("", value):
            problems.append((where, "malformed ${...} reference; use ${NAME} or ${NAME:-default}"))
        return out

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, str):
            out = sub_str(node, where or "<root>")
            # A value that is only ``${VAR:-}`` and comes out empty means "not set".
            return None if out == "" and _VAR.fullmatch(node) and node != "$$" else out
        if isinstance(node, dict):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{where}[{i}]") for i, v in enumerate(node)]
        return node

    return walk(data, path), problems


class FileSection(BaseModel):
    """A section of the file: unknown keys refused, values frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_M = typing.TypeVar("_M", bound=BaseModel)


def valid_or_none(model: type[_M], raw: Any) -> _M | None:
    """``raw`` as ``model``, or None if it has a problem (the whole file's validation
    reports it): a section's own checks then run on every section that is well-formed."""
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


class ConfigFileError(ConfigError):
    """A configuration file with problems: ``problems`` holds one ``(key path, message)`` each.

    ``str()`` gives one line per problem, ``key.path: what is expected``.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        if not problems:
            problems = [("<root>", "invalid configuration")]
        # A hostile file must not make a hostile message: every line stays readable.
        problems = [(_cut(where, 200), _cut(what, 300)) for where, what in problems]
        super().__init__(*problems[0], more=problems[1:])
        self.source = source


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Largest configuration file read (bytes).
MAX_FILE_BYTES = 1024 * 1024
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 64
#: Most aliases (``*name``) in one file.
MAX_ALIASES = 1000
#: Most values the file may stand for once its aliases are expanded: a 505-byte alias bomb
#: stands for billions, which ``${VAR}`` substitution and validation would walk.
MAX_NODES = 200_000


class _Refused(yaml.MarkedYAMLError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the bounds above checked while composing, before any
    value is built (aliases compose to shared nodes, so the count below is linear)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(problem=f"more than {MAX_ALIASES} aliases", problem_mark=mark)
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None:
            _expanded_size(node)
        return node


def _expanded_size(root: yaml.Node) -> int:
    """Values ``root`` stands for with aliases expanded; :class:`_Refused` past MAX_NODES
    or for an alias that contains itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Refused(problem="an alias refers to itself", problem_mark=node.start_mark)
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        if total > MAX_NODES:
            raise _Refused(
                problem=f"its aliases expand to more than {MAX_NODES:,} values (an alias bomb?)",
                problem_mark=node.start_mark,
            )
        sizes[key] = total
        return total

    return size(root)


def _position(raw: bytes, offset: int) -> str:
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path``, read within the bounds above.

    Every refusal is a :class:`ConfigFileError` whose key path is ``FILE, line L, column C``
    (or ``FILE``), never a bare Python exception.
    """
    name = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(name, [(name, f"cannot read {path}: {exc.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigFileError(
            name, [(name, f"larger than {MAX_FILE_BYTES // 1024} KiB; is this the right file?")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = raw[exc.start]
        raise ConfigFileError(
            name,
            [(f"{name}, {_position(raw, exc.start)}",
              f"not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8")],
        ) from None  # fmt: skip
    try:
        loader = _BoundedLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}, line {mark.line + 1}, column {mark.column + 1}" if mark else name
        problem = exc.problem or exc.context or "cannot be parsed"
        raise ConfigFileError(name, [(where, f"invalid YAML: {problem}")]) from None
    except yaml.reader.ReaderError as exc:
        ch = exc.character
        code = ord(ch) if isinstance(ch, str) else int(ch)
        where = f"{name}, {_position(raw, len(text[: exc.position].encode()))}"
        what = f"invalid YAML: character #x{code:04x} is not allowed; remove it"
        raise ConfigFileError(name, [(where, what)]) from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ConfigFileError(
            name, [(name, f"invalid YAML: {type(exc).__name__}: {exc}")]
        ) from None
