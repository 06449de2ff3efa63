"""The dead-letter store is bounded, rotated and counted (issue 10: 1 MB payloads made a 25 MB file)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from streams.deadletter import DeadLetter, DeadLetterStore
from streams.metrics import PrometheusSensor


def test_a_big_payload_is_kept_as_a_prefix_with_its_size_and_hash(tmp_path: Path) -> None:
    payload = b"\xff" + "é".encode() * 500_000  # 1 MB, invalid UTF-8 first
    store = DeadLetterStore(tmp_path / "dead-letters.jsonl")
    store.add(DeadLetter.now("mqtt", "valmont/x", payload, "payload is not UTF-8"))
    line = json.loads((tmp_path / "dead-letters.jsonl").read_text(encoding="utf-8"))
    assert len(line["payload"].encode()) <= 4096
    assert line["payload_bytes"] == len(payload)
    assert line["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert line["truncated"] is True
    assert (tmp_path / "dead-letters.jsonl").stat().st_size < 20_000
    assert len(store.recent[0].payload) <= 4096


def test_a_letter_built_by_hand_is_bounded_too(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "dl.jsonl", max_payload_bytes=100)
    from datetime import UTC, datetime

    store.add(DeadLetter("sink", "reading,point=p", "x" * 10_000, "400", datetime.now(UTC)))
    letter = store.recent[0]
    assert letter.payload == "x" * 100
    assert letter.payload_bytes == 10_000
    assert letter.truncated


def test_the_file_is_rotated_and_counts_survive_rotation_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "dead-letters.jsonl"
    sensor = PrometheusSensor()
    store = DeadLetterStore(path, max_file_bytes=20_000, keep_files=2, sensor=sensor)
    for i in range(300):
        store.add(DeadLetter.now("mqtt" if i % 3 else "sink", f"t/{i}", os.urandom(2000), "random bytes"))
    files = sorted(tmp_path.glob("dead-letters*.jsonl"))
    assert all(f.stat().st_size <= 20_000 for f in files)
    assert len(files) == 3  # the live file and two rotated ones
    assert store.rotations > 2
    assert store.count == 300
    assert store.by_source == {"mqtt": 200, "sink": 100}
    assert b'econome_dead_letters_stored{source="mqtt"} 200.0' in sensor.exposition()
    again = DeadLetterStore(path, max_file_bytes=20_000, keep_files=2)
    assert again.count == 300
    assert again.by_source == {"mqtt": 200, "sink": 100}
    again.add(DeadLetter.now("sink", "k", "p", "r"))
    assert DeadLetterStore(path, max_file_bytes=20_000, keep_files=2).totals()["by_source"] == {"mqtt": 200, "sink": 101}


def test_a_crash_between_rename_and_counts_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "dead-letters.jsonl"
    store = DeadLetterStore(path, max_file_bytes=5000)
    for i in range(10):
        store.add(DeadLetter.now("mqtt", f"t/{i}", "x" * 100, "not JSON"))
    # The state a process killed right after renaming the live file leaves on disk.
    os.replace(path, store.rotated_path(store.rotations + 1))
    again = DeadLetterStore(path, max_file_bytes=5000)
    assert again.count == 10
    assert again.rotations == store.rotations + 1
