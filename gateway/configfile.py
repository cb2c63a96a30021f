"""Loading YAML configuration into frozen pydantic models, with errors that point at the file.

Every problem is reported as `file:line:column: field: message`, all at once, so a facilities
person can fix a broken file in one pass. Below this module nobody reads raw dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

__all__ = ["ConfigError", "ConfigProblem", "load_model", "read_yaml"]

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)
#: A check across fields that pydantic cannot express per field: (where, what is wrong).
CrossCheck = Callable[[M], Iterable[tuple[Loc, str]]]


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration file."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ConfigError(Exception):
    """A configuration file could not be used; `problems` lists every reason."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class YamlDocument:
    """Parsed YAML plus the positions of its nodes, for error messages."""

    path: Path
    data: Any

    def locate(self, loc: Loc) -> tuple[int, int, Loc]:
        """1-based (line, column) of the deepest node of `loc` in the file, and the path as the
        file spells it.

        Path elements the file does not have are left out (a union's tag such as `mqtt` in
        `source.mqtt.topic`), except a last one: a missing field points at the mapping that
        should hold it and keeps its name.
        """
        node = self.data
        line, column = 1, 1
        spelled: list[str | int] = []
        for i, key in enumerate(loc):
            lc = getattr(node, "lc", None)
            found = (isinstance(node, dict) and key in node) or (
                isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
            )
            if found:
                if lc is not None:
                    pos = lc.key(key) if isinstance(node, dict) else lc.item(key)
                    line, column = pos[0] + 1, pos[1] + 1
                node = node[key]
                spelled.append(key)
            elif i == len(loc) - 1:
                spelled.append(key)
        return line, column, tuple(spelled)

    def problem(self, loc: Loc, message: str) -> ConfigProblem:
        line, column, spelled = self.locate(loc)
        return ConfigProblem(str(self.path), line, column, format_loc(spelled), message)


def format_loc(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def read_yaml(path: Path) -> YamlDocument:
    """Parse a YAML file, keeping node positions. Raises `ConfigError` on syntax errors."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), 0, 0, "", f"cannot read: {exc.strerror}")]
        ) from exc
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise ConfigError(
            [ConfigProblem(str(path), line, column, "", f"YAML syntax: {exc.problem}")]
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(str(path), 1, 1, "", "the file must hold a mapping")])
    return YamlDocument(path=path, data=data)


def _plain(node: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists (pydantic wants plain data)."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def load_model(model: type[M], doc: YamlDocument, check: CrossCheck[M] | None = None) -> M:
    """Validate `doc` into `model`, turning every error into a located problem.

    `check` runs after field validation succeeded and reports cross-references (a sensor naming
    a room that does not exist, two equally specific rule rows) at the field that is wrong.
    """
    try:
        result = model.model_validate(_plain(doc.data), context={"config_path": doc.path})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            problems.append(doc.problem(loc, message))
        raise ConfigError(problems) from exc
    if check is not None:
        problems = [doc.problem(loc, message) for loc, message in check(result)]
        if problems:
            raise ConfigError(problems)
    return result
