"""Load the inventory from one YAML file, with errors that name file, line and path.

>>> from pathlib import Path
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> inv.organisation.timezone
'Europe/Paris'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inventory.model import CrossReferenceError, Inventory, Loc

__all__ = ["InventoryError", "Problem", "load_inventory", "parse_inventory"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the inventory file."""

    line: int | None
    path: str
    message: str


class InventoryError(ValueError):
    """The inventory file cannot be used; every problem names its line and path."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One ``file:line path: message`` line per problem."""
        out = []
        for problem in self.problems:
            where = f"{self.source}:{problem.line}" if problem.line else self.source
            path = f" {problem.path}" if problem.path else ""
            out.append(f"{where}{path}: {problem.message}")
        return out


def load_inventory(path: Path) -> Inventory:
    """Read and validate an inventory file.

    Args:
        path: the YAML file.

    Returns:
        The validated inventory.

    Raises:
        InventoryError: the file is missing, is not YAML, or breaks a rule.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(str(path), [Problem(None, "", f"cannot read: {exc.strerror}")]) from exc
    return parse_inventory(text, source=str(path))


def parse_inventory(text: str, source: str = "<inventory>") -> Inventory:
    """Validate inventory YAML text; see :func:`load_inventory`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise InventoryError(source, [Problem(line, "", f"not valid YAML: {reason}")]) from exc
    if node is None:
        raise InventoryError(source, [Problem(None, "", "the file is empty")])
    lines: dict[Loc, int] = {}
    problems: list[Problem] = []
    _index(node, (), lines, problems)
    if problems:
        raise InventoryError(source, problems)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise InventoryError(source, [Problem(1, "", "the top level must be a mapping")])
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(source, _problems(exc, lines)) from exc


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem]) -> None:
    """Record the line of every mapping key and sequence item; catch duplicate keys."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            here = key_node.start_mark.line + 1
            if key in seen:
                problems.append(Problem(here, _path((*loc, key)), f"duplicate key (first at line {seen[key]})"))
            seen[key] = here
            lines[(*loc, key)] = here
            _index(value_node, (*loc, key), lines, problems)
            lines[(*loc, key)] = here
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines, problems)


def _problems(exc: ValidationError, lines: dict[Loc, int]) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        base: Loc = tuple(part for part in err["loc"] if _is_path(part, lines))
        if isinstance(cause, CrossReferenceError):
            for loc, msg in cause.problems:
                full = (*base, *loc)
                problems.append(Problem(_line(full, lines), _path(full), msg))
            continue
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "missing required key"
        problems.append(Problem(_line(base, lines), _path(base), message))
    problems.sort(key=lambda p: (p.line or 0, p.path))
    return problems


def _is_path(part: str | int, lines: dict[Loc, int]) -> bool:
    # pydantic inserts validator and union-member names in ``loc``; they are not YAML keys.
    return isinstance(part, int) or not any(c in str(part) for c in "[]()")


def _line(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        found = lines.get(loc[:end])
        if found is not None:
            return found
    return None


def _path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
