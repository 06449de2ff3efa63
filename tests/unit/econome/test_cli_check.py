from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from econome.cli import app

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "commune.yaml"


def test_check_example_summarises() -> None:
    result = CliRunner().invoke(app, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "buildings      14" in result.output
    assert "points         108: 2 enedis, 1 grdf, 52 modbus, 53 mqtt" in result.output
    assert "floor area     19,020 m2" in result.output


def test_check_wrong_field_names_file_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "commune.yaml"
    text = EXAMPLE.read_text(encoding="utf-8").replace("floor_area_m2: 650", "floor_area_m2: -650", 1)
    bad.write_text(text, encoding="utf-8")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "floor_area_m2: -650" in t)
    result = CliRunner().invoke(app, ["check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:{line} sites[0].buildings[1].floor_area_m2: Input should be greater than 0" in result.output


def test_check_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_check_warns_of_a_linky_summed_with_a_meter_of_ours(tmp_path: Path) -> None:
    # wp-reports review: a Linky added to the town hall, whose Modbus meter is behind it, joined the reports "like
    # any other" meter: both general, the hall's electricity was their sum, twice its consumption, nothing said.
    text = EXAMPLE.read_text(encoding="utf-8")
    anchor = "    - id: mairie-elec-energy\n"
    assert anchor in text
    linky = ("    - id: mairie-linky\n      quantity: active_energy\n      unit: kWh\n      usage: general\n"
             "      cumulative: true\n      energy: electricity\n      enedis: {prm: '30009999999999'}\n")
    path = tmp_path / "commune.yaml"
    path.write_text(text.replace(anchor, linky + anchor, 1), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert ("warning: building mairie: its electricity is the sum of mairie-linky (enedis) and mairie-elec-energy: "
            "if one meter is behind the other, the reports count it twice") in result.stderr
    assert "warning: building" not in CliRunner().invoke(app, ["check", str(EXAMPLE)]).stderr
