"""Benchmark: what a hostile or oversized inventory costs ``econome check`` (issue 10).

Each case runs ``econome check`` in a child process and reports its exit code,
wall time and peak RSS (``ru_maxrss`` of the child):

- a 50 MB inventory (refused by its size, before it is read);
- a file just under the 10 MiB limit: the example commune's buildings
  repeated (a valid portfolio of about 3,000 buildings, parsed and validated);
- a billion-laughs alias bomb (refused before expansion);
- the example commune, for scale.

Run: ``.venv/bin/python bench/inventory_limits.py``. The last line is one JSON object.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "commune.yaml"
LIMIT = 10 * 1024 * 1024


def _run(path: Path) -> dict[str, object]:
    # Each child is waited for alone, so RUSAGE_CHILDREN's maximum grows only if this one is larger:
    # run each case in its own wrapper process to read its own peak.
    code = (
        "import resource, subprocess, sys, time;"
        "t = time.perf_counter();"
        "r = subprocess.run([sys.executable, '-m', 'econome.cli', 'check', sys.argv[1]], capture_output=True, text=True);"
        "print(r.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "print(r.stderr.splitlines()[0] if r.stderr else r.stdout.splitlines()[0])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, check=True)
    first, message = out.stdout.splitlines()[:2]
    rc, seconds, rss_kb = first.split()
    return {
        "exit": int(rc),
        "seconds": round(float(seconds), 2),
        "peak_rss_mb": round(int(rss_kb) / 1024, 1),
        "says": message[:160],
    }


def _suffixed(match: re.Match[str], n: int) -> str:
    return f"{match.group(1)}: [" + ", ".join(f"{x.strip()}-c{n}" for x in match.group(2).split(",")) + "]"


def _suffixed(match: re.Match[str], n: int) -> str:
    return f"{match.group(1)}: [" + ", ".join(f"{x.strip()}-c{n}" for x in match.group(2).split(",")) + "]"


def _big_valid(target: int) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    head, _, sites = text.partition("\nsites:\n")
    copies: list[str] = []
    n = 0
    while sum(len(c) for c in copies) + len(head) < target - 4 * len(sites):
        # Unique ids, point references and anchors per copy.
        copy = re.sub(r"(\b(?:id|submeter_of|zone): )([a-z0-9_-]+)", rf"\g<1>\g<2>-c{n}", sites)
        copy = re.sub(r"([&*])(id[0-9]+)", rf"\g<1>\g<2>-c{n}", copy)
        copies.append(re.sub(r"(add|subtract): \[([^\]]*)\]", lambda m, n=n: _suffixed(m, n), copy))
        n += 1
    return head + "\nsites:\n" + "".join(copies)


def main() -> None:
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        big = base / "fifty-mb.yaml"
        with big.open("w", encoding="utf-8") as fh:
            fh.write(EXAMPLE.read_text(encoding="utf-8"))
            line = "# " + "x" * 1021 + "\n"
            fh.write(line * (50 * 1024))
        bomb = base / "bomb.yaml"
        levels = "".join(f"  {c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
        bomb.write_text(
            f"organisation: {{name: x}}\nx:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n{levels}sites: []\n"
        )
        under = base / "under-limit.yaml"
        under.write_text(_big_valid(LIMIT), encoding="utf-8")
        for name, path in [("example", EXAMPLE), ("50MB", big), ("alias_bomb", bomb), ("just_under_10MiB", under)]:
            started = time.perf_counter()
            results[name] = {"bytes": path.stat().st_size, **_run(path)}
            print(f"{name:>18}: {results[name]}  ({time.perf_counter() - started:.1f}s)", file=sys.stderr)
        # The refusal itself, in process, without the CLI's start-up.
        sys.path.insert(0, str(ROOT))
        from inventory import InventoryError, load_inventory

        started = time.perf_counter()
        try:
            load_inventory(big)
        except InventoryError:
            results["50MB"]["in_process_ms"] = round((time.perf_counter() - started) * 1000, 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
