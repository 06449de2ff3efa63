"""The ``econome`` command runs numpy's BLAS on one thread unless the operator's environment sets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# A child that starts with two BLAS threads (as a 2-core machine does), runs the command, prints what is left.
CHILD = """
import json
import numpy  # loads its BLAS
from threadpoolctl import threadpool_info, threadpool_limits
threadpool_limits(limits=2, user_api="blas")
assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {2}
import sys
from econome.cli import main
sys.argv = ["econome", "--help"]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})))
"""


def _threads_left(**env: str) -> list[int]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=clean | env, capture_output=True, text=True,
                          check=True)
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_command_runs_blas_on_one_thread() -> None:
    assert _threads_left() == [1]


def test_an_operator_s_thread_setting_is_left_as_it_is() -> None:
    assert _threads_left(OMP_NUM_THREADS="2") == [2]
