"""YAML loading that remembers line numbers, so a bad config is reported as `file:line: what is wrong`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """A configuration file is unusable; the message names the file and, where known, the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {message}")


class LineDict(dict):
    """A dict that knows the 1-based source line of each of its keys (and of itself)."""

    line: int | None = None
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int | None:
        return getattr(self, "key_lines", {}).get(key, self.line)


class _LineConstructor:
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        mapping = LineDict(super().construct_mapping(node, deep=deep))
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        for key_node, _ in node.value:
            mapping.key_lines[str(key_node.value)] = key_node.start_mark.line + 1
        return mapping


class _LineLoader(_LineConstructor, yaml.SafeLoader):
    pass


# libyaml's parser where PyYAML has it (the same constructor and resolver on top): the plant spec and the device
# configs parse about 10 times faster, which is most of a plant's start once the modules are imported. Errors are
# always reported by the pure-Python parser, so their wording does not depend on how PyYAML was built.
_FastLoader: type = (
    type("_FastLoader", (_LineConstructor, yaml.CSafeLoader), {}) if yaml.__with_libyaml__ else _LineLoader
)

for _loader in {_LineLoader, _FastLoader}:
    _loader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
        lambda loader, node: loader.construct_mapping(node, deep=True),
    )


def load_yaml(path: str | Path) -> Any:
    """Load a YAML file; syntax errors become ConfigError with the line of the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"cannot read: {exc}") from None
    return loads_yaml(text, path)


def loads_yaml(text: str, path: str | Path = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_FastLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError:
        pass  # reported below, as the pure-Python parser words it
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(path, f"invalid YAML: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"invalid YAML: {exc}") from None


def require(mapping: Any, key: str, path: str | Path, kind: type | tuple[type, ...] | None = None) -> Any:
    """Fetch a required key, with a file:line error naming it when missing or of the wrong type."""
    if not isinstance(mapping, dict):
        raise ConfigError(path, f"expected a mapping containing '{key}'", getattr(mapping, "line", None))
    if key not in mapping:
        line = mapping.line if isinstance(mapping, LineDict) else None
        raise ConfigError(path, f"missing required key '{key}'", line)
    value = mapping[key]
    if kind is not None and not isinstance(value, kind):
        line = mapping.line_of(key) if isinstance(mapping, LineDict) else None
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(path, f"'{key}' must be {names}, got {type(value).__name__}", line)
    return value
