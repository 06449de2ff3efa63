"""The README's gallery and docs/img agree: every picture shown exists, every picture made is shown, a mail per kind."""

from __future__ import annotations

import hashlib
import json
import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from anomalies.events import EventKind
from inventory import load_inventory
from tests.reader_text import pictures_module, problems, shown

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")


def _shown(markdown: Path) -> set[Path]:
    return {(markdown.parent / link).resolve() for link in _IMAGE.findall(markdown.read_text(encoding="utf-8"))}



def test_every_picture_shown_exists_and_every_picture_is_shown() -> None:
    readme = _shown(ROOT / "README.md")
    docs = set().union(*(_shown(page) for page in (ROOT / "docs").glob("*.md")))
    made = {p.resolve() for p in IMG.glob("*.png")}
    assert made
    assert sorted(str(p) for p in (readme | docs) - made) == [], "shown but not in docs/img"
    assert sorted(p.name for p in made - readme) == [], "in docs/img but not in the README"


def test_the_gallery_has_the_alert_mail_of_every_kind() -> None:
    readme = _shown(ROOT / "README.md")
    for kind in EventKind:
        assert (IMG / f"mail-{kind.value.replace('_', '-')}.png").resolve() in readme, kind
    assert (IMG / "mail-resolved.png").resolve() in readme
    assert (IMG / "mail-digest.png").resolve() in readme


def test_scripts_pictures_refuses_a_missing_kind() -> None:
    pictures = pictures_module()
    assert set(pictures.MAILED_KINDS) == {k.value for k in EventKind}
    every = [pictures.Mail(f"mail-{k.value.replace('_', '-')}", EmailMessage()) for k in EventKind]
    notices = [pictures.Mail("mail-resolved", EmailMessage()), pictures.Mail("mail-digest", EmailMessage())]
    assert pictures.missing_kinds(every + notices) == []
    assert pictures.missing_kinds([m for m in every if m.name != "mail-sensor-drift"] + notices) == ["sensor_drift"]
    assert pictures.missing_kinds(notices) == sorted(k.value for k in EventKind)


def test_the_pictures_are_those_of_the_manifest_and_what_they_show_reads_right() -> None:
    # Review round 2: the gallery showed "Attendu 4,2 m³ / Observé 23 m³ / Surconsommation 19 m³" after the code
    # was fixed. Rendering them again takes minutes; scripts/pictures writes, beside them, each PNG's hash and the
    # text it shows, checked here as the content tests check a fresh mail or report.
    manifest = json.loads((IMG / "pictures.json").read_text(encoding="utf-8"))
    # A building has a name: the demo commune's ids (maternelle-aulnes...) are no words for the readers.
    commune = load_inventory(ROOT / "examples" / "commune.yaml")
    assert sorted(manifest) == sorted(p.name for p in IMG.glob("*.png")), "docs/img and pictures.json disagree"
    for name, entry in manifest.items():
        assert hashlib.sha256((IMG / name).read_bytes()).hexdigest() == entry["sha256"], f"{name} changed since"
        text = entry["text"]
        assert text.strip(), name
        if not name.endswith(tuple(f"-p{n}.png" for n in range(1, 10))):  # PDF text has no typography to check
            assert not problems(text, commune), (name, problems(text, commune))
        if "\nSurconsommation\n" in text:
            (observed, step), (expected, step_expected), (excess, step_excess) = (
                shown(text, label) for label in ("Observé", "Attendu", "Surconsommation"))
            assert step == step_expected == step_excess, (name, text)
            assert 0 < excess <= observed, (name, text)
            assert expected + excess == pytest.approx(observed, abs=1.5 * step + 1e-9), (name, text)
    leak = manifest["mail-water-leak.png"]["text"]
    assert "Surconsommation" in leak
