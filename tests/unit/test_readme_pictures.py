"""The README's gallery and docs/img agree: every picture shown exists, every picture made is shown, a mail per kind."""

from __future__ import annotations

import importlib.util
import re
import sys
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType

from anomalies.events import EventKind

ROOT = Path(__file__).resolve().parents[2]
IMG = ROOT / "docs" / "img"
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.png)\)")


def _shown(markdown: Path) -> set[Path]:
    return {(markdown.parent / link).resolve() for link in _IMAGE.findall(markdown.read_text(encoding="utf-8"))}


def _pictures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("econome_docs_pictures_unit", ROOT / "docs" / "pictures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


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
    pictures = _pictures()
    assert set(pictures.MAILED_KINDS) == {k.value for k in EventKind}
    every = [pictures.Mail(f"mail-{k.value.replace('_', '-')}", EmailMessage()) for k in EventKind]
    notices = [pictures.Mail("mail-resolved", EmailMessage()), pictures.Mail("mail-digest", EmailMessage())]
    assert pictures.missing_kinds(every + notices) == []
    assert pictures.missing_kinds([m for m in every if m.name != "mail-sensor-drift"] + notices) == ["sensor_drift"]
    assert pictures.missing_kinds(notices) == sorted(k.value for k in EventKind)
