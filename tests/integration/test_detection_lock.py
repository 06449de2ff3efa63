"""One live detection per data directory: a second ``econome run`` on it exits 2 naming the first's PID.

The first process is a small child holding :class:`anomalies.lock.DetectionLock`
(as ``econome run`` does), killed with SIGKILL to show the lock needs no cleanup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from anomalies.lock import DetectionLock

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "commune.yaml"

_HOLDER = (
    "import sys; from pathlib import Path; from anomalies.lock import DetectionLock\n"
    "DetectionLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); sys.stdin.read()\n"
)


@pytest.mark.parametrize("detection", ["true", "false"])
def test_a_second_run_on_one_data_dir_exits_2_naming_it_and_the_pid(tmp_path: Path, detection: str) -> None:
    """With detection off too (``ECONOME_DETECT_ENABLED=false``): two runs would share the delivery log and the
    processors' state of the data directory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ECONOME_DATA_DIR": str(tmp_path), "ECONOME_DETECT_ENABLED": detection}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run(
            [sys.executable, "-m", "econome.cli", "run", str(EXAMPLE), "--duration", "5"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"PID {holder.pid}" in second.stderr
        assert str(tmp_path) in second.stderr
        assert "stopped:" not in second.stdout  # it collected nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)  # waits for it, and closes its pipes
    # The kernel released the lock of the killed process: the next start takes it.
    with DetectionLock(tmp_path) as lock:
        assert lock.path.read_text().strip() == str(os.getpid())
