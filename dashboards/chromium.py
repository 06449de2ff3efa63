"""Find the headless Chromium that renders the pictures of the e-mails and reports.

:func:`find_chromium` looks, in order, for:

1. ``$ECONOME_CHROMIUM``, a path or a command name (an error if it names nothing);
2. ``chromium`` on the PATH (Debian's package), unless it is a snap: Ubuntu ships Chromium
   only as a snap, whose private ``/tmp`` hides the pages it is asked to render;
3. the Chromium Playwright downloaded (``python -m playwright install chromium``, what
   ``scripts/install`` does where apt has no ``chromium``): the newest
   ``chromium-<revision>/chrome-linux*/chrome`` under ``$PLAYWRIGHT_BROWSERS_PATH``, else
   ``~/.cache/ms-playwright``.

>>> find_chromium({"ECONOME_CHROMIUM": "/bin/sh", "PATH": ""})
'/bin/sh'
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

__all__ = ["find_chromium"]

_PLAYWRIGHT_CACHE = Path(".cache") / "ms-playwright"


def _is_snap(path: str) -> bool:
    """A snap's command: ``/snap/bin/x``, a link to ``/usr/bin/snap``, or a wrapper that runs ``snap``."""
    real = os.path.realpath(path)
    return path.startswith("/snap/") or real.startswith("/snap/") or Path(real).name == "snap"


def _playwright_chromium(env: Mapping[str, str]) -> str | None:
    root = env.get("PLAYWRIGHT_BROWSERS_PATH")
    if root in (None, "", "0"):
        home = env.get("HOME")
        if not home:
            return None
        root = str(Path(home) / _PLAYWRIGHT_CACHE)
    found: list[tuple[int, Path]] = []
    for chrome in Path(root).glob("chromium-*/chrome-linux*/chrome"):
        revision = re.fullmatch(r"chromium-(\d+)", chrome.parent.parent.name)
        if revision and os.access(chrome, os.X_OK):
            found.append((int(revision.group(1)), chrome))
    return str(max(found)[1]) if found else None


def find_chromium(env: Mapping[str, str] | None = None) -> str:
    """The Chromium executable to run headless; see the module docstring for the order.

    Args:
        env: The environment to read (``ECONOME_CHROMIUM``, ``PATH``, ``PLAYWRIGHT_BROWSERS_PATH``,
            ``HOME``); None: the process's.

    Returns:
        The executable's path.

    Raises:
        FileNotFoundError: ``ECONOME_CHROMIUM`` names nothing runnable, or no Chromium was found.
    """
    env = os.environ if env is None else env
    path = env.get("PATH", "")
    wanted = env.get("ECONOME_CHROMIUM")
    if wanted:
        found = shutil.which(wanted, path=path)
        if found is None:
            msg = f"ECONOME_CHROMIUM={wanted}: no such executable"
            raise FileNotFoundError(msg)
        return found
    debian = shutil.which("chromium", path=path)
    if debian is not None and not _is_snap(debian):
        return debian
    playwright = _playwright_chromium(env)
    if playwright is not None:
        return playwright
    snap = " (the snap's is skipped: it cannot read the pages in /tmp)" if debian else ""
    msg = (
        f"no Chromium{snap}: run scripts/install (Debian's package chromium, else Playwright's Chromium) "
        "or set ECONOME_CHROMIUM"
    )
    raise FileNotFoundError(msg)
