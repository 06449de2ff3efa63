"""A stop while InfluxDB hangs (accepts, never answers) ends within the stop bound, the process exit included.

The v1 writer posts in a thread (issue 15, writes during a burst): with
``asyncio.to_thread`` a post blocked on such a server held the exit for the
client's whole timeout after ``Pipeline.run`` had ended (9 s with a 2 s stop
bound; a hostile review's finding). The process is a child, as ``econome run`` is.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import asyncio, contextlib, socket, sys, tempfile, threading, time
    from datetime import timedelta
    from pathlib import Path
    from streams.buffer import DeliveryLog
    from streams.clock import ManualClock
    from streams.deadletter import DeadLetterStore
    from streams.influx import InfluxConfig, make_writer
    from streams.pipeline import Pipeline
    from tests.unit.streams.test_pipeline_backpressure import INV, T0, _reading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    posted = threading.Event()

    def hang(conn):
        if b"/write" in conn.recv(65536):
            posted.set()
        time.sleep(3600)

    def serve():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=hang, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()

    async def main():
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        if sys.argv[1] == "v1":
            config = InfluxConfig(url=url, database="x", timeout=timedelta(seconds=30))
        else:
            config = InfluxConfig(url=url, api="v2", token="t", org="o", bucket="b", timeout=timedelta(seconds=30))
        writer = make_writer(config)
        pipeline = Pipeline(INV, writer, ManualClock(T0 + timedelta(hours=1)), DeadLetterStore(),
                            DeliveryLog(Path(tempfile.mkdtemp()) / "log.sqlite"),
                            flush_interval=timedelta(milliseconds=10), stop_timeout=timedelta(seconds=1))
        await pipeline.put([_reading(i) for i in range(100)])
        task = asyncio.create_task(pipeline.run([], []))
        while not posted.is_set():
            await asyncio.sleep(0.05)
        global cancelled
        cancelled = time.monotonic()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.close()

    asyncio.run(main())
    print(f"exit {time.monotonic() - cancelled:.2f}")
    """
)


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_stop_while_influxdb_hangs_exits_within_the_stop_bound(api: str) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, api], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    seconds = float(result.stdout.split("exit ")[-1])
    # A 1 s stop bound and a 30 s client timeout: the exit must not wait for the post (before: ~30 s).
    assert seconds < 5.0, result.stdout + result.stderr[-2000:]
