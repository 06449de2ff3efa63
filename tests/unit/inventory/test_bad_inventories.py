"""Issue 10: every broken inventory gives ``file:line path: message`` and exit 2, never a traceback.

The corpus is ``tests/cases/bad_inventories/``: one file per case, whose second
line says ``# expect: <path> | <message fragment>`` and whose offending line
ends with ``# <-``. Byte-level cases (encodings, control characters) and the
oversized file are generated here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from econome.cli import app
from inventory import InventoryError, load_inventory, parse_inventory
from inventory.loader import MAX_INVENTORY_BYTES

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "tests" / "cases" / "bad_inventories"
CASES = sorted(CORPUS.glob("*.yaml"))
BASE = (CORPUS / "unit-mismatch.yaml").read_text(encoding="utf-8").replace("unit: m3", "unit: kWh")


def _expected(case: Path) -> tuple[int, str, str]:
    lines = case.read_text(encoding="utf-8").splitlines()
    path, fragment = (part.strip() for part in lines[1].removeprefix("# expect: ").split("|"))
    line = next(i for i, text in enumerate(lines, 1) if text.endswith("# <-"))
    return line, path, fragment


def _check(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args)
    # CliRunner catches what escapes; a traceback would show as result.exception.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def test_the_corpus_holds_at_least_30_cases() -> None:
    assert len(CASES) >= 30
    parse_inventory(BASE)  # the base the cases break is itself valid


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_econome_check_refuses_with_file_line_path(case: Path) -> None:
    line, path, fragment = _expected(case)
    code, output = _check(["check", str(case)])
    assert code == 2, output
    assert "Traceback" not in output
    assert "OK" not in output
    prefix = f"{case}:{line}" + (f" {path}" if path else "") + ": "
    matching = [text for text in output.splitlines() if text.startswith(prefix)]
    assert matching, f"no line starts with {prefix!r}:\n{output}"
    assert any(fragment in text for text in matching), output
    # Every output line has the file:line form.
    assert all(re.match(rf"{re.escape(str(case))}:\d+[ :]", text) for text in output.splitlines()), output


LATIN1 = BASE.encode("latin-1")
BYTE_CASES = {
    # name: (bytes, line, path, fragment)
    "latin-1": (LATIN1, BASE.splitlines().index("        name: École") + 1, "sites[0].buildings[0].name", "not UTF-8: byte 0xc9"),
    "utf-16": (BASE.encode("utf-16"), 1, "", "not UTF-8: byte 0xff"),
    "nul-byte": (BASE.replace("name: Site", "name: Si\0te").encode(), 10, "", "not valid YAML: control characters"),
    "escape-byte": (BASE.replace("name: Site", "name: Si\x1bte").encode(), 10, "", "not valid YAML"),
}


@pytest.mark.parametrize("name", sorted(BYTE_CASES))
def test_byte_level_cases(tmp_path: Path, name: str) -> None:
    data, line, path, fragment = BYTE_CASES[name]
    case = tmp_path / f"{name}.yaml"
    case.write_bytes(data)
    code, output = _check(["check", str(case)])
    assert code == 2, output
    assert output.startswith(f"{case}:{line}" + (f" {path}" if path else "") + ": "), output
    assert fragment in output


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n", encoding="utf-8")
    assert _check(["check", str(empty)]) == (2, f"{empty}: the file is empty\n")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n", encoding="utf-8")
    assert _check(["check", str(listing)]) == (2, f"{listing}:1: the top level must be a mapping\n")


def test_oversized_file_is_refused_by_its_size(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    # 50 MB of a valid-looking inventory: refused before parsing (bench/inventory_limits.py measures time and RSS).
    chunk = b"# " + b"x" * 1021 + b"\n"
    with big.open("wb") as fh:
        fh.write(BASE.encode())
        for _ in range(50 * 1024):
            fh.write(chunk)
    with pytest.raises(InventoryError) as info:
        load_inventory(big)
    assert info.value.lines() == [
        f"{big}: the file is {big.stat().st_size:,} bytes, more than the limit of {MAX_INVENTORY_BYTES:,} (10 MiB)"
    ]


# Fragments a typo, a bad export or a hostile file put where a value should be.
NASTY = st.sampled_from(
    [".nan", ".inf", "-.inf", "1e999", "9" * 5000, "0x" + "f" * 40, "2026-02-30", "[a, b]", "{a: 1}", "&x [*x]",
     "*undefined", "!!python/object:os.system", "!!binary AAAA", "~", "''", "-1s", "0s", "99999999999d", "1e3s",
     "{", "]", "? [a]", "\t", "true", "2026-13-01T25:61:00Z", "\ufeff", "\x85", "\"\\ud800\"", "1_000", "0o777"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.integers(min_value=0, max_value=BASE.count("\n") - 1), value=st.one_of(NASTY, st.text(max_size=20)))
def test_any_value_anywhere_gives_an_inventory_error_or_an_inventory(line: int, value: str) -> None:
    lines = BASE.splitlines()
    key, sep, _ = lines[line].partition(": ")
    lines[line] = f"{key}{sep}{value}" if sep else lines[line] + value
    problems: list[str] = []
    try:
        parse_inventory("\n".join(lines) + "\n", source="fuzz.yaml")
    except InventoryError as exc:
        problems = exc.lines()
    assert all(text.startswith("fuzz.yaml") for text in problems)


# Explicit tags make PyYAML's constructors run on text they never expect (#10 review, finding 8).
TAGS = st.sampled_from(
    ["!!int", "!!float", "!!bool", "!!timestamp", "!!null", "!!str", "!!binary", "!!python/object:os.system",
     "!!python/name:os.system", "!!python/tuple", "!!set", "!!omap", "!!pairs", "!!merge", "!!value", "!!yaml",
     "!unknown", "!<tag:example.com,2026:x>", "!!seq", "!!map"]
)  # fmt: skip
SCALARS = st.one_of(
    st.sampled_from(["", "_", "-", "+", ".", "0x", "0b", "0o", "1:2", "190:20:30", "1_", "maybe", "2026-02-30", "2026-13",
                     "1e", "-.inf", ".nan", "AAA", "====", "2026-01-05T25:00:00Z", "9" * 30, "~"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)  # fmt: skip


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=st.integers(min_value=0, max_value=BASE.count("\n") - 1),
    tag=TAGS,
    scalar=SCALARS,
    quote=st.booleans(),
)
def test_any_explicit_tag_on_any_scalar_gives_an_inventory_error_or_an_inventory(
    line: int, tag: str, scalar: str, quote: bool
) -> None:
    lines = BASE.splitlines()
    key, sep, _ = lines[line].partition(": ")
    value = f"{tag} {_quoted(scalar) if quote else scalar}"
    lines[line] = f"{key}{sep}{value}" if sep else lines[line] + value
    problems: list[str] = []
    try:
        parse_inventory("\n".join(lines) + "\n", source="fuzz.yaml")
    except InventoryError as exc:  # anything else escapes and fails the test
        problems = exc.lines()
    assert all(text.startswith("fuzz.yaml") for text in problems), problems


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("!!timestamp foo", "'foo' is not a valid timestamp"),
        ("!!int ''", "'' is not a valid int"),
        ("!!int '_'", "'_' is not a valid int"),
        ("!!float ''", "'' is not a valid float"),
        ("!!bool maybe", "'maybe' is not a valid bool"),
        ("190:20:30", "'190:20:30' is a YAML 1.1 base-60 number"),
        ("-1:30", "'-1:30' is a YAML 1.1 base-60 number"),
        ("1:30.5", "'1:30.5' is a YAML 1.1 base-60 number"),
    ],
)
def test_constructor_failures_name_line_and_path(value: str, fragment: str) -> None:
    text = BASE.replace("population: 1200", f"population: {value}")
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, source="inv.yaml")
    [line] = info.value.lines()
    assert line.startswith(f"inv.yaml:3 organisation.population: {fragment}"), line


def test_a_quoted_base_60_looking_text_is_text() -> None:
    inventory = parse_inventory(BASE.replace("name: Commune test", "name: '190:20:30'"))
    assert inventory.organisation.name == "190:20:30"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "econome.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", ["alias-bomb", "recursive-alias", "int-5000-digits", "date-feb-30"])
def test_econome_run_and_check_processes_exit_2(tmp_path: Path, name: str) -> None:
    case = CORPUS / f"{name}.yaml"
    line, path, fragment = _expected(case)
    for command in ("check", "run"):
        result = _cli(command, str(case))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert result.stderr.startswith(f"{case}:{line} {path}: "), result.stderr
        assert fragment in result.stderr
