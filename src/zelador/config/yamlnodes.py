"""Reading YAML nodes (not plain dicts) so every value keeps its line for error messages."""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from zelador.config.durations import parse_duration
from zelador.errors import ConfigError


class NodeReader:
    """Reads PyYAML nodes into values; every complaint carries file:line and the dotted key."""

    def __init__(self, path: str, check_files: bool) -> None:
        self.path = path
        self.check_files = check_files
        self._constructor = yaml.SafeLoader("")
        self._key_line: dict[int, int] = {}  # id(value node) -> line of its key

    def error(self, node: yaml.Node, key: str, message: str) -> ConfigError:
        """An error at `node`; a mapping or list is placed on its key's line, where people look."""
        line = node.start_mark.line + 1
        if not isinstance(node, yaml.ScalarNode):
            line = self._key_line.get(id(node), line)
        return ConfigError(message, file=file_of(node, self.path), line=line, key=key)

    def mapping(self, node: yaml.Node, key: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        """The mapping's entries by key, refusing unknown and repeated keys."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, key, f"expected a mapping, got {kind_of(node)}")
        entries: dict[str, yaml.Node] = {}
        for key_node, value in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
            where = f"{key}.{name}" if key else name
            if allowed and name not in allowed:
                hint = close_matches(name, allowed, n=1)
                fix = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(allowed)})"
                raise self.error(key_node, where, f"unknown key{fix}")
            if name in entries:
                raise self.error(key_node, where, "given twice")
            entries[name] = value
            self._key_line[id(value)] = key_node.start_mark.line + 1
        return entries

    def scalar(self, node: yaml.Node, key: str) -> object:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, key, f"expected a single value, got {kind_of(node)}")
        return self._constructor.construct_object(node)

    def string(self, node: yaml.Node, key: str) -> str:
        value = self.scalar(node, key)
        if not isinstance(value, str) or not value:
            raise self.error(node, key, f"expected a non-empty string, got {value!r}")
        return value

    def boolean(self, node: yaml.Node, key: str) -> bool:
        value = self.scalar(node, key)
        if not isinstance(value, bool):
            raise self.error(node, key, f"expected true or false, got {value!r}")
        return value

    def choice(self, node: yaml.Node, key: str, choices: tuple[str, ...]) -> str:
        value = self.scalar(node, key)
        if value not in choices:
            raise self.error(node, key, f"{value!r} is not one of "
                             + ", ".join(repr(c) for c in choices))
        return str(value)

    def duration(self, node: yaml.Node, key: str, *, minimum: float = 0.0) -> float:
        value = self.scalar(node, key)
        try:
            seconds = parse_duration(value)  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            raise self.error(node, key, str(exc) if isinstance(exc, ValueError) else
                             f"{value!r} is not a time span (use e.g. 500ms, 10s, 5m)") from exc
        if seconds < minimum:
            raise self.error(node, key, f"{value!r} is too short (at least {minimum:g}s)")
        return seconds

    def names(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        if isinstance(node, yaml.ScalarNode):
            return (self.string(node, key),)
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, key, f"expected a name or a list of names, got {kind_of(node)}")
        return tuple(self.string(item, key) for item in node.value)


def file_of(node: yaml.Node, default: str) -> str:
    """The file `node` was read from (drop-ins: config/dropins.py names each stream)."""
    name = str(node.start_mark.name)
    return default if name.startswith("<") else name


def kind_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(node.value)


def close_matches(word: str, candidates: Iterable[str], n: int = 1) -> list[str]:
    """Did-you-mean candidates (difflib is imported only when an error needs it)."""
    import difflib

    return difflib.get_close_matches(word, list(candidates), n=n)
