"""The config's files: zelador.yaml, then its drop-ins (zelador.d/*.yaml) in name order, composed
into one tree of YAML nodes that still knows, for each value, which file and line it came from.

Merging: mappings (programs, jobs, checks, alerts.channels, and any other mapping) are merged by
key, so a drop-in adds a program or a channel, or a key to an existing one; `alerts.rules` lists
are joined; any other key given in two files is an error naming both FILE:LINE. A drop-in never
overrides: what a terminal runs is never a question of which file won.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import yaml

from zelador.errors import ConfigError

JOINED = ("alerts.rules",)  # lists whose items from several files are kept, in file order


@dataclass(frozen=True)
class Source:
    """One file as read: its path and its bytes (what the config identity hashes)."""

    path: str
    data: bytes


def dropin_dir(path: str) -> str:
    """/etc/zelador/zelador.yaml -> /etc/zelador/zelador.d"""
    return os.path.splitext(path)[0] + ".d"


def dropin_paths(path: str) -> list[str]:
    """The drop-ins of the config at `path`, in name order (only `*.yaml`; none: [])."""
    folder = dropin_dir(path)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ConfigError("is not a directory (drop-ins live in a directory)", file=folder) from None
    except OSError as exc:
        raise ConfigError(f"cannot list: {exc.strerror}", file=folder) from exc
    return [os.path.join(folder, name) for name in names
            if name.endswith(".yaml") and not name.startswith(".")]


def read_source(path: str) -> Source:
    try:
        with open(path, "rb") as stream:
            return Source(path, stream.read())
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from exc


def identity(sources: list[Source]) -> str:
    """sha256 over every file read, each as its path, a NUL, its length and its bytes."""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.path.encode() + b"\0" + str(len(source.data)).encode() + b"\0")
        digest.update(source.data)
    return digest.hexdigest()


def compose(text: str, path: str) -> yaml.Node | None:
    """`text` as YAML nodes whose marks name `path` (errors then point into the right file)."""
    stream = io.StringIO(text)
    stream.name = path  # PyYAML names its marks after the stream
    try:
        return yaml.compose(stream, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        context = ""
        if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            context = f"{exc.context} (line {exc.context_mark.line + 1}): "
        raise ConfigError(f"YAML syntax: {context}{exc.problem}", file=path, line=line) from exc


def where(node: yaml.Node) -> str:
    return f"{node.start_mark.name}:{node.start_mark.line + 1}"


def merge(base: yaml.Node, extra: yaml.Node, key: str = "") -> yaml.Node:
    """`extra` (a later file) merged into `base`; neither is changed."""
    if not isinstance(base, yaml.MappingNode) or not isinstance(extra, yaml.MappingNode):
        raise ConfigError(f"expected a mapping, as in {where(base)}", file=extra.start_mark.name,
                          line=extra.start_mark.line + 1, key=key)
    pairs = list(base.value)
    for key_node, value in extra.value:
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
        dotted = f"{key}.{name}" if key else str(name)
        at = next((i for i, (k, _) in enumerate(pairs)
                   if isinstance(k, yaml.ScalarNode) and k.value == name), None)
        if at is None:
            pairs.append((key_node, value))
            continue
        first_key, first = pairs[at]
        if isinstance(first, yaml.MappingNode) and isinstance(value, yaml.MappingNode):
            pairs[at] = (first_key, merge(first, value, dotted))
        elif (dotted in JOINED and isinstance(first, yaml.SequenceNode)
              and isinstance(value, yaml.SequenceNode)):
            pairs[at] = (first_key, yaml.SequenceNode(first.tag, first.value + value.value,
                                                      first.start_mark, first.end_mark))
        else:
            raise ConfigError(f"set twice: here and at {where(first_key)} (a drop-in adds keys, "
                              "it cannot change one; move the value to one file)",
                              file=key_node.start_mark.name, line=key_node.start_mark.line + 1,
                              key=dotted)
    return yaml.MappingNode(base.tag, pairs, base.start_mark, base.end_mark)
