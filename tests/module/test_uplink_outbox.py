"""Outbox, sinks and publisher without a broker: real SQLite files, real threads, a real JSONL file."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from module.errors import UplinkUnavailable
from module.uplink import Outbox, OutboxLockedError, Publisher, open_sink


def payloads(outbox: Outbox, n: int = 1000) -> list[dict]:
    return [json.loads(data) for _, data in outbox.peek(n)]


def test_seq_persists_across_reopen_and_is_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        assert [outbox.put({"run_id": "r", "frame_id": i}) for i in range(3)] == [1, 2, 3]
        assert outbox.ack([1, 2, 3]) == 3
        assert outbox.depth() == 0
    with Outbox(path) as outbox:
        assert outbox.last_seq == 3
        assert outbox.put({"run_id": "r", "frame_id": 3}) == 4
        assert payloads(outbox) == [{"run_id": "r", "frame_id": 3, "seq": 4}]


def test_overflow_drops_oldest_and_counts_persistently(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path, max_messages=3) as outbox:
        for i in range(5):
            outbox.put({"frame_id": i})
        assert outbox.depth() == 3
        assert outbox.dropped == 2
        assert [seq for seq, _ in outbox.peek(10)] == [3, 4, 5]
    with Outbox(path, max_messages=3) as outbox:
        assert outbox.dropped == 2
        outbox.put({"frame_id": 5})
        assert outbox.dropped == 3
        assert [seq for seq, _ in outbox.peek(10)] == [4, 5, 6]


def test_runs_and_dropped_ranges_are_on_record_across_processes(tmp_path: Path) -> None:
    """What a delivery check needs: each run's seq range, and exactly which seqs overflow dropped."""
    path = tmp_path / "outbox.db"
    with Outbox(path, max_messages=4, run_id="first") as outbox:
        for i in range(6):
            outbox.put({"frame_id": i})
        outbox.ack([4])  # acknowledged out of order: the next drop skips it
        assert outbox.dropped_ranges() == [(1, 2)]
    with Outbox(path, max_messages=4, run_id="second") as outbox:
        for i in range(3):
            outbox.put({"frame_id": i})
        assert [(r["run_id"], r["first_seq"], r["last_seq"]) for r in outbox.runs()] == [("first", 1, 6),
                                                                                       ("second", 7, 9)]
        assert [seq for seq, _ in outbox.peek(10)] == [6, 7, 8, 9]
        assert outbox.dropped_ranges() == [(1, 3), (5, 5)]
        assert outbox.dropped == 4
        assert outbox.file_bytes() > 0


def test_peek_after_and_ack_of_unknown_seqs(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox.db") as outbox:
        for i in range(5):
            outbox.put({"frame_id": i})
        assert [seq for seq, _ in outbox.peek(2, after=2)] == [3, 4]
        assert outbox.ack([2, 99, 2]) == 1
        assert outbox.acked == 1
        assert outbox.depth() == 4


def test_wal_mode_and_single_owner(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        outbox.put({"frame_id": 0})
        assert outbox.journal_mode() == "wal"
        assert (tmp_path / "outbox.db-wal").exists()
        with pytest.raises(OutboxLockedError):
            Outbox(path)
    # The mode is stored in the file itself, so any later opener gets WAL too.
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Outbox(tmp_path / "a.db", synchronous="OFF")
    with pytest.raises(ValueError, match="max_messages"):
        Outbox(tmp_path / "b.db", max_messages=0)
    with Outbox(tmp_path / "c.db") as outbox, pytest.raises(TypeError):
        outbox.put({"not json": object()})
    with Outbox(tmp_path / "c.db") as outbox:
        assert outbox.last_seq == 0  # a payload that failed to encode consumed no seq


def test_concurrent_puts_peeks_and_acks(tmp_path: Path) -> None:
    """Four producer threads put while a consumer thread peeks and acks: every seq unique, none lost."""
    producers, per_producer = 4, 150
    total = producers * per_producer
    outbox = Outbox(tmp_path / "outbox.db", synchronous="NORMAL")
    assigned: list[int] = []
    assigned_lock = threading.Lock()
    acked: list[int] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def produce(pid: int) -> None:
        try:
            for i in range(per_producer):
                seq = outbox.put({"producer": pid, "frame_id": i})
                with assigned_lock:
                    assigned.append(seq)
        except BaseException as exc:
            errors.append(exc)

    def consume() -> None:
        try:
            while len(acked) < total:
                rows = outbox.peek(50, after=acked[-1] if acked else 0)
                seqs = [seq for seq, _ in rows]
                assert seqs == sorted(seqs)
                outbox.ack(seqs)
                acked.extend(seqs)
                if not rows and done.wait(0.005) and outbox.depth() == 0:
                    break
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(pid,)) for pid in range(producers)]
    consumer = threading.Thread(target=consume)
    consumer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    done.set()
    consumer.join(30)
    assert not consumer.is_alive()
    assert not errors
    assert sorted(assigned) == list(range(1, total + 1))
    assert acked == list(range(1, total + 1))
    assert outbox.depth() == 0
    assert outbox.acked == total
    outbox.close()


def test_publisher_drains_into_jsonl_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    out = tmp_path / "out" / "uplink.jsonl"
    publisher = Publisher(outbox, open_sink(f"jsonl:{out}"), batch=7).start()
    for i in range(50):
        outbox.put({"run_id": "r", "frame_id": i})
        publisher.notify()
    assert publisher.wait_drained(10)
    stats = publisher.stats()
    assert publisher.stop(5)
    outbox.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["seq"] for m in lines] == list(range(1, 51))
    assert [m["frame_id"] for m in lines] == list(range(50))
    assert stats["sent"] == 50
    assert stats["acked"] == 50
    assert stats["depth"] == 0
    assert stats["dropped"] == 0


def test_open_sink_rejects_unknown_schemes() -> None:
    with pytest.raises(ValueError, match=r"supported: jsonl:PATH, file:PATH, mqtt://host\[:port\]/topic, iotedge"):
        open_sink("amqp://broker/queue")
    with pytest.raises(ValueError, match="mqtt://host"):
        open_sink("mqtt://127.0.0.1:1883")  # no topic


def test_file_scheme_accepts_a_url(tmp_path: Path) -> None:
    sink = open_sink(f"file://{tmp_path}/x.jsonl")
    assert sink.path == f"{tmp_path}/x.jsonl"  # type: ignore[attr-defined]


def test_iotedge_sink_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IOTEDGE_DEVICEID", "IOTEDGE_MODULEID", "EdgeHubConnectionString"):
        monkeypatch.delenv(name, raising=False)
    try:
        import azure.iot.device  # noqa: F401
    except ImportError:
        expected = "azure-iot-device package is not installed"
    else:
        expected = "not running inside an IoT Edge module, missing environment variables IOTEDGE_"
    with pytest.raises(UplinkUnavailable, match=expected):
        open_sink("iotedge:output1")
