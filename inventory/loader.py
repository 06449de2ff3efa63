"""Load the inventory from one YAML file, with errors that name file, line and path.

Whatever the file holds, loading ends either with an :class:`Inventory` or
with an :class:`InventoryError` whose every problem reads
``file:line path: message``; never with another exception. The loader guards
the resources a hostile or broken file could exhaust, before they are spent:

- a file larger than :data:`MAX_INVENTORY_BYTES` (10 MiB, about 3,000
  buildings) is refused from its size, before it is read;
- text must be UTF-8; a byte that is not is reported at its line;
- nesting deeper than :data:`MAX_DEPTH` levels, a recursive alias (an anchor
  that contains itself) and alias expansion beyond :data:`MAX_NODES` nodes
  ("billion laughs") are refused before anything is built from the nodes;
- an integer of more than :data:`MAX_INT_DIGITS` digits or 64 bits, an impossible date
  (2026-02-30) and a mapping or sequence used as a key are errors at their line;
  so is any other scalar a constructor cannot build (``!!timestamp foo``,
  ``!!int ''``, ``!!bool maybe``) and a YAML 1.1 base-60 number (``190:20:30``,
  which YAML 1.1 reads as 685230): write the number, or quote the text.

>>> from pathlib import Path
>>> inv = load_inventory(Path("examples/commune.yaml"))
>>> inv.organisation.timezone
'Europe/Paris'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inventory.model import CrossReferenceError, Inventory, Loc

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_INVENTORY_BYTES",
    "MAX_NODES",
    "InventoryError",
    "Problem",
    "load_inventory",
    "parse_inventory",
    "read_yaml",
]

MAX_INVENTORY_BYTES = 10 * 1024 * 1024
"""Largest inventory file read (10 MiB); the demo commune of 12 buildings is 37 kB."""
MAX_NODES = 2_000_000
"""Most YAML nodes once aliases are expanded: twice what a 10 MiB file can write out."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences; a real inventory nests about 10 levels."""
MAX_INT_DIGITS = 20
"""Longest decimal integer accepted; any integer must also fit in 64 bits."""


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


class _NodeError(yaml.YAMLError):
    """A scalar that cannot become a Python value, with the node it came from."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


class _GuardedConstructor(yaml.constructor.SafeConstructor):
    """SafeConstructor whose failures name the node instead of escaping as builtins."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        # Any failure of a constructor stays at its node (#10 review, finding 8): an
        # impossible date (ValueError), ``!!timestamp foo`` (AttributeError),
        # ``!!int ''`` (IndexError), ``!!bool maybe`` (KeyError)...
        except Exception as exc:
            what = node.tag.rsplit(":", 1)[-1]
            shown = repr(node.value)[:60] if isinstance(node, yaml.ScalarNode) else "this value"
            # A ValueError says why (day is out of range for month); the others only
            # tell how PyYAML's constructor broke, which is no help to the reader.
            why = f": {str(exc)[:80]}" if isinstance(exc, ValueError | OverflowError) else ""
            raise _NodeError(node, f"{shown} is not a valid {what}{why}") from exc

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        _refuse_sexagesimal(node)
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            # Python refuses int() of more than 4,300 digits with a bare ValueError.
            raise _NodeError(node, f"an integer of {digits} digits is too large (at most {MAX_INT_DIGITS})")
        value: int = super().construct_yaml_int(node)
        if not -(1 << 63) <= value < 1 << 64:
            raise _NodeError(node, "the integer is too large: it does not fit in 64 bits")
        return value

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        _refuse_sexagesimal(node)
        value: float = super().construct_yaml_float(node)
        return value


def _refuse_sexagesimal(node: yaml.ScalarNode) -> None:
    """Refuse YAML 1.1 base-60 numbers: ``190:20:30`` would silently be 685230."""
    if ":" in str(node.value):
        text = str(node.value)[:40]
        msg = f"{text!r} is a YAML 1.1 base-60 number (like a time of day); write the number itself, or quote it as text"
        raise _NodeError(node, msg)


# The stub bounds add_constructor to SafeConstructor itself, not its subclasses.
_GuardedConstructor.add_constructor("tag:yaml.org,2002:int", _GuardedConstructor.construct_yaml_int)  # type: ignore[type-var]
_GuardedConstructor.add_constructor("tag:yaml.org,2002:float", _GuardedConstructor.construct_yaml_float)  # type: ignore[type-var]


class _Guards(_GuardedConstructor):
    """Guards shared by both loaders: construction errors at their node, a depth limit."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        # Only the pure-Python composer comes through here, recursing once per
        # level; libyaml composes in C and refuses runaway nesting itself.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]  # from the Parser half
                raise yaml.composer.ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", mark)
            node: yaml.Node = super().compose_node(parent, index)  # type: ignore[misc]  # from the Composer half
            return node
        finally:
            self._depth -= 1


class _PyLoader(_Guards, yaml.SafeLoader):
    """yaml.SafeLoader with the guards: the fallback when libyaml is missing."""


_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = _PyLoader
if getattr(yaml, "__with_libyaml__", False):

    class _CLoader(_Guards, yaml.CSafeLoader):
        """yaml.CSafeLoader (libyaml, much faster) with the guards."""

    _Loader = _CLoader


def load_inventory(path: Path) -> Inventory:
    """Read and validate an inventory file.

    Args:
        path: the YAML file.

    Returns:
        The validated inventory.

    Raises:
        InventoryError: the file is missing, too large, not UTF-8, not YAML, or breaks a rule.
    """
    source = str(path)
    try:
        # Refuse by size before reading a byte; read one byte more than the limit
        # in case the file grows (or is a device) between stat and read.
        size = path.stat().st_size
        if size > MAX_INVENTORY_BYTES:
            raise InventoryError(source, [Problem(None, "", _too_large(size))])
        with path.open("rb") as fh:
            data = fh.read(MAX_INVENTORY_BYTES + 1)
    except OSError as exc:
        raise InventoryError(source, [Problem(None, "", f"cannot read: {exc.strerror or exc}")]) from exc
    if len(data) > MAX_INVENTORY_BYTES:
        raise InventoryError(source, [Problem(None, "", _too_large(len(data)))])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(source, [_not_utf8(data, exc)]) from exc
    return parse_inventory(text, source=source).located_at(path)


def _too_large(size: int) -> str:
    return f"the file is {size:,} bytes, more than the limit of {MAX_INVENTORY_BYTES:,} ({MAX_INVENTORY_BYTES >> 20} MiB)"


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> Problem:
    line = data.count(b"\n", 0, exc.start) + 1
    column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    message = f"not UTF-8: byte 0x{data[exc.start]:02x} at column {column}; save the file as UTF-8"
    # Name the path too: parse a copy with the bad bytes replaced, and take the
    # deepest key at or before the bad line.
    path = ""
    try:
        node = _Loader(data.decode("utf-8", errors="replace")).get_single_node()
    except yaml.YAMLError:
        node = None
    if node is not None:
        lines: dict[Loc, int] = {}
        if _check_graph(node) is None:
            _index(node, (), lines, [], {})
            before = [(ln, len(loc), loc) for loc, ln in lines.items() if ln <= line and loc]
            if before:
                path = _path(max(before)[2])
    return Problem(line, path, message)


def parse_inventory(text: str, source: str = "<inventory>") -> Inventory:
    """Validate inventory YAML text; see :func:`load_inventory`."""
    data, lines = read_yaml(text, source)
    if not isinstance(data, dict):
        raise InventoryError(source, [Problem(1, "", "the top level must be a mapping")])
    try:
        return Inventory.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(source, _problems(exc, lines)) from exc


def read_yaml(text: str, source: str, *, allow_empty: bool = False) -> tuple[Any, dict[Loc, int]]:
    r"""Safe YAML text as Python data, with the line of every key: the inventory's loading, for other files too.

    Refuses what the inventory refuses, each problem naming its line and path:
    duplicate keys, complex keys, recursive aliases, alias bombs, deep nesting,
    huge integers, sexagesimal numbers, more than :data:`MAX_INVENTORY_BYTES`.

    Args:
        text: the YAML text.
        source: the file's name, for the messages.
        allow_empty: an empty document (or comments only) reads as ``None`` instead of an error.

    Returns:
        The data and, per path (keys and sequence indices), its line (1-based).

    Raises:
        InventoryError: the text cannot be used.

    >>> read_yaml("a: 1\nb:\n  c: 2\n", "x.yaml")
    ({'a': 1, 'b': {'c': 2}}, {(): 1, ('a',): 1, ('b',): 2, ('b', 'c'): 3})
    >>> read_yaml("a: 1\na: 2\n", "x.yaml")
    Traceback (most recent call last):
    ...
    inventory.loader.InventoryError: x.yaml:2 a: duplicate key (first at line 1)
    """
    if len(text) > MAX_INVENTORY_BYTES:
        raise InventoryError(source, [Problem(None, "", _too_large(len(text)))])
    loader = _Loader(text)
    try:
        node = _compose(loader, text, source, allow_empty=allow_empty)
        if node is None:
            return None, {}
        lines: dict[Loc, int] = {}
        problems: list[Problem] = []
        locs: dict[int, Loc] = {}
        _index(node, (), lines, problems, locs)
        if problems:
            raise InventoryError(source, problems)
        try:
            data = loader.construct_document(node)
        except _NodeError as exc:
            loc = locs.get(id(exc.node), ())
            raise InventoryError(source, [Problem(exc.node.start_mark.line + 1, _path(loc), exc.message)]) from exc
        except yaml.YAMLError as exc:
            raise InventoryError(source, [_yaml_problem(exc, text)]) from exc
    finally:
        loader.dispose()
    return data, lines


def _compose(loader: Any, text: str, source: str, *, allow_empty: bool = False) -> yaml.Node | None:
    try:
        node: yaml.Node | None = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise InventoryError(source, [_yaml_problem(exc, text)]) from exc
    if node is None:
        if allow_empty:
            return None
        raise InventoryError(source, [Problem(None, "", "the file is empty")])
    problem = _check_graph(node)
    if problem is not None:
        raise InventoryError(source, [problem])
    return node


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        line: int | None = mark.line + 1
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
    else:
        line = None
    reason = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    return Problem(line, "", f"not valid YAML: {reason}")


def _children(node: yaml.Node) -> Iterator[tuple[str | int, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            yield key, key_node
            yield key, value_node
    elif isinstance(node, yaml.SequenceNode):
        yield from enumerate(node.value)


def _check_graph(root: yaml.Node) -> Problem | None:
    """Refuse recursive aliases, deep nesting and alias bombs, without expanding anything.

    Aliases make the node tree a graph: an anchored node is one object reached
    from every alias. A depth-first walk that remembers the size of each node
    already seen counts the expanded tree in time linear in the distinct nodes.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = {id(root)}
    stack: list[tuple[yaml.Node, Loc, Iterator[tuple[str | int, yaml.Node]]]] = [(root, (), _children(root))]
    while stack:
        node, loc, children = stack[-1]
        step = next(children, None)
        if step is None:
            stack.pop()
            on_path.discard(id(node))
            size = 1 + sum(sizes[id(child)] for _, child in _children(node))
            if size > MAX_NODES:
                return Problem(
                    node.start_mark.line + 1,
                    _path(loc),
                    f"aliases expand this to more than {MAX_NODES:,} nodes (an alias bomb?)",
                )
            sizes[id(node)] = size
            continue
        key, child = step
        if id(child) in on_path:
            return Problem(child.start_mark.line + 1, _path((*loc, key)), "recursive alias: the anchor contains itself")
        if id(child) in sizes:
            continue
        if len(stack) >= MAX_DEPTH:
            return Problem(child.start_mark.line + 1, _path((*loc, key)), f"nesting deeper than {MAX_DEPTH} levels")
        on_path.add(id(child))
        stack.append((child, (*loc, key), _children(child)))
    return None


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem], locs: dict[int, Loc]) -> None:
    """Record the line of every mapping key and sequence item; catch duplicate and complex keys.

    Called only on a graph :func:`_check_graph` accepted: finite and bounded.
    """
    lines[loc] = node.start_mark.line + 1
    locs.setdefault(id(node), loc)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            here = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Problem(here, _path(loc), "a key must be a plain value, not a mapping or a sequence"))
                continue
            key = key_node.value
            locs.setdefault(id(key_node), (*loc, key))
            if key in seen:
                problems.append(Problem(here, _path((*loc, key)), f"duplicate key (first at line {seen[key]})"))
            seen[key] = here
            lines[(*loc, key)] = here
            _index(value_node, (*loc, key), lines, problems, locs)
            lines[(*loc, key)] = here
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines, problems, locs)


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
