"""YAML that remembers where each value came from, and errors that say so.

YAML's own loader forgets the line of a value; a spec file's user with 60 lines to look through
wants "line 23: unknown setting 'dropuot'". `load` returns plain dicts and lists that carry the
line of each key (LinedMap.lines) and their own (.line); `SpecFile.fail` raises the ConfigError
that names the file and the line.
"""

from __future__ import annotations

from typing import Any

import yaml

from xlrec.errors import ConfigError


class LinedMap(dict):
    """A YAML mapping that remembers the line of each key (and its own)."""

    line: int = 0
    lines: dict[Any, int]


class LinedList(list):
    line: int = 0


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LinedMap:
    loader.flatten_mapping(node)
    out, out.lines, out.line = LinedMap(), {}, node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in out.lines:  # YAML would keep the last silently; a spec with two `grid:` is a mistake
            raise ConfigError(f"line {line}: {key!r} is given twice (first on line {out.lines[key]}); keep one.")
        out.lines[key] = line
        out[key] = loader.construct_object(value_node, deep=True)
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LinedList:
    out = LinedList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


class SpecFile:
    """Error messages that name the file and the line."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, line: int, message: str) -> None:
        raise ConfigError(
            f"Sweep spec {self.path}, line {line}: {message} Fix the spec and run again; nothing was started."
        )

    def at(self, mapping: LinedMap, key: str) -> int:
        return mapping.lines.get(key, mapping.line)

    def mapping(self, parent: LinedMap, key: str, known: tuple[str, ...] | None = None) -> LinedMap:
        value = parent[key]
        if not isinstance(value, LinedMap):
            self.fail(self.at(parent, key), f"{key!r} must be a mapping (key: value lines), got {show(value)}.")
        if known is not None:
            self.known(value, known, key)
        return value

    def known(self, mapping: LinedMap, known: tuple[str, ...], where: str) -> None:
        for key in mapping:
            if key not in known:
                self.fail(self.at(mapping, key), f"unknown key {key!r} in {where}. Known keys: {', '.join(known)}.")

    def names(self, parent: LinedMap, key: str) -> list[str]:
        value = parent[key]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            self.fail(self.at(parent, key), f"{key!r} must be a name or a non-empty list of names, got {show(value)}.")
        return list(values)

    def integer(self, parent: LinedMap, key: str, low: int) -> int:
        value = parent[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            self.fail(self.at(parent, key), f"{key!r} must be an integer >= {low}, got {show(value)}.")
        return int(value)

    def number(self, parent: LinedMap, key: str) -> float:
        value = parent[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.fail(self.at(parent, key), f"{key!r} must be a number, got {show(value)}.")
        return float(value)


def show(value: Any) -> str:
    return repr(dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value)


def load(text: str) -> Any:
    """Parse YAML text into LinedMap/LinedList values (a duplicate key is a ConfigError)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
