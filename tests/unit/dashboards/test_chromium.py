"""Where the pictures' Chromium is found: ECONOME_CHROMIUM, Debian's chromium, then Playwright's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dashboards.chromium import find_chromium


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_the_order_of_the_lookup(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cache = tmp_path / "home" / ".cache" / "ms-playwright"
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home")}
    with pytest.raises(FileNotFoundError, match="run scripts/install"):
        find_chromium(env)
    # Playwright's, the newest revision; its headless shell and a non-executable file are not it.
    _executable(cache / "chromium-1140" / "chrome-linux" / "chrome")
    newest = _executable(cache / "chromium-1169" / "chrome-linux64" / "chrome")
    _executable(cache / "chromium_headless_shell-1200" / "chrome-linux" / "chrome")
    (cache / "chromium-1300" / "chrome-linux").mkdir(parents=True)
    (cache / "chromium-1300" / "chrome-linux" / "chrome").write_text("")
    assert find_chromium(env) == str(newest)
    other = _executable(tmp_path / "browsers" / "chromium-1001" / "chrome-linux" / "chrome")
    assert find_chromium({**env, "PLAYWRIGHT_BROWSERS_PATH": str(tmp_path / "browsers")}) == str(other)
    # Ubuntu's snap on the PATH is skipped: its private /tmp hides the page.
    snap = _executable(tmp_path / "usr" / "bin" / "snap")
    (bin_dir / "chromium").symlink_to(snap)
    assert find_chromium(env) == str(newest)
    (bin_dir / "chromium").unlink()
    # Debian's chromium comes before Playwright's.
    debian = _executable(bin_dir / "chromium")
    assert find_chromium(env) == str(debian)
    # ECONOME_CHROMIUM first, and an error when it names nothing.
    mine = _executable(tmp_path / "mine" / "chrome")
    assert find_chromium({**env, "ECONOME_CHROMIUM": str(mine)}) == str(mine)
    with pytest.raises(FileNotFoundError, match="ECONOME_CHROMIUM=/nowhere/chrome"):
        find_chromium({**env, "ECONOME_CHROMIUM": "/nowhere/chrome"})


def test_the_snap_alone_is_said(tmp_path: Path) -> None:
    snap = _executable(tmp_path / "snap")
    (tmp_path / "bin").mkdir()
    os.symlink(snap, tmp_path / "bin" / "chromium")
    with pytest.raises(FileNotFoundError, match="the snap's is skipped"):
        find_chromium({"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)})
