"""The ingest quarantine never holds more than ``quarantine.max_bytes`` on disk, whatever arrives.

Found in a long run: ``max_bytes: 4000000`` ended with 39 MB in one file, because the bound only ever removed whole
*older* files and one UTC day is one file. The quarantine now rotates its active file at a fraction of the budget,
drops the oldest files, counts what it dropped (per reason, persisted beside the files) and cuts one oversized entry
down with a marker. These tests write far more than the budget through the real ``Quarantine`` (and, in the last one,
through the real ingest pipeline from real MQTT messages) and check the disk, the newest entries and the counts the
API shows.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.records import Rejected
from twin.quarantine import Quarantine

REASONS = ("malformed_json", "schema", "nan", "out_of_range", "unit")


def bytes_on_disk(directory: Path) -> int:
    """Everything the quarantine keeps in its directory, its bookkeeping included."""
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def rejected(i: int, raw_len: int = 300) -> Rejected:
    reason = REASONS[i % len(REASONS)]
    raw = (f"#{i:07d} " + "x" * raw_len)[:raw_len].encode()
    return Rejected(reason, f"entry {i}", f"mqtt:pilotline/PL1/formation/CH-{i % 8:02d}/telemetry", raw,
                    time.time_ns())


def serial(entry: dict[str, Any]) -> int:
    return int(entry["detail"].split()[1])


def test_far_more_than_max_bytes_stays_within_it_and_keeps_the_newest(tmp_path: Path) -> None:
    max_bytes = 64 * 1024
    q = Quarantine(tmp_path / "q", max_bytes=max_bytes)
    sent: Counter[str] = Counter()
    n = 0
    for batch in range(200):  # ~30 x the budget, in batches of 1..37 entries as ingest hands them over
        size = 1 + batch % 37
        items = [rejected(n + k) for k in range(size)]
        q.add_many(items)
        sent.update(r.reason for r in items)
        n += size
        assert bytes_on_disk(tmp_path / "q") <= max_bytes, f"after batch {batch}"
    assert n * 400 > 20 * max_bytes
    counts, newest = q.summary(limit=50)
    # the API's counts are per reason since the quarantine began: dropped entries still count
    assert counts == dict(sent)
    assert [serial(e) for e in newest] == list(range(n - 50, n))
    kept = list(q.entries())
    assert [serial(e) for e in kept] == list(range(n - len(kept), n)), "kept entries are the newest, contiguous"
    assert len(kept) * 400 > max_bytes // 2, "the budget is used, not emptied"
    dropped = q.dropped()
    assert dropped["entries"] == n - len(kept) and dropped["entries"] > 0
    assert sum(dropped["by_reason"].values()) == dropped["entries"]
    assert dropped["bytes"] > 0
    usage = q.usage()  # what a status page shows
    assert usage["bytes"] == bytes_on_disk(tmp_path / "q") <= usage["max_bytes"] == max_bytes
    assert usage["dropped"] == dropped and usage["files"] >= 2
    q.close()

    # a restart keeps the bound, the drop counts and the order
    q2 = Quarantine(tmp_path / "q", max_bytes=max_bytes)
    assert q2.dropped() == dropped
    q2.add_many([rejected(n + k) for k in range(500)])
    sent.update(REASONS[(n + k) % len(REASONS)] for k in range(500))
    assert bytes_on_disk(tmp_path / "q") <= max_bytes
    counts2, newest2 = q2.summary(limit=1)
    assert counts2 == dict(sent) and serial(newest2[-1]) == n + 499
    assert q2.count_by_reason() == dict(sent)
    q2.close()


def test_an_oversized_entry_is_cut_with_a_marker_and_keeps_the_budget(tmp_path: Path) -> None:
    max_bytes = 16 * 1024
    q = Quarantine(tmp_path / "q", max_bytes=max_bytes, keep_raw_bytes=10 * 1024 * 1024)
    q.add_many([rejected(i) for i in range(10)])
    huge = Rejected("malformed_json", "entry 10", "mqtt:pilotline/PL1/formation/CH-01/telemetry",
                    b"{" + b"\x00\xff" * 500_000, time.time_ns())
    huge_text = Rejected("schema", "entry 11 " + "d" * 100_000, "src", "y" * 3_000_000, time.time_ns())
    q.add_many([huge, huge_text])
    assert bytes_on_disk(tmp_path / "q") <= max_bytes
    last = q.list(limit=2)
    assert [e["reason"] for e in last] == ["malformed_json", "schema"]
    for e in last:
        assert e["entry_truncated_from_bytes"] > max_bytes
        assert e["raw_truncated"] is True
    assert last[0]["detail"] == "entry 10" and last[0]["raw_base64"]
    assert last[1]["detail"].startswith("entry 11 d")
    counts, _ = q.summary()
    assert counts["malformed_json"] == 3 and counts["schema"] == 3
    q.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(max_bytes=st.integers(4096, 40_000),
       batches=st.lists(st.lists(st.integers(0, 30_000), min_size=1, max_size=12), min_size=1, max_size=25))
def test_any_sequence_of_entries_keeps_the_bound_the_newest_and_the_counts(
        tmp_path_factory: Any, max_bytes: int, batches: list[list[int]]) -> None:
    d = tmp_path_factory.mktemp("q")
    q = Quarantine(d, max_bytes=max_bytes, keep_raw_bytes=65536)
    sent: Counter[str] = Counter()
    n = 0
    for sizes in batches:
        items = [rejected(n + k, raw_len=size) for k, size in enumerate(sizes)]
        q.add_many(items)
        sent.update(r.reason for r in items)
        n += len(items)
        assert bytes_on_disk(d) <= max_bytes
    counts, newest = q.summary(limit=1)
    assert counts == dict(sent)
    assert newest and serial(newest[-1]) == n - 1, "the newest entry is always kept"
    kept = [serial(e) for e in q.entries()]
    assert kept == list(range(n - len(kept), n))
    assert q.dropped()["entries"] == n - len(kept)
    q.close()


async def test_bad_payloads_through_real_ingest_stay_within_max_bytes_and_the_api_counts_all(
        tmp_path: Path, influxd: Any, mosquitto: Any) -> None:
    """Real MQTT garbage through the real pipeline: the quarantine's disk stays bounded, /api/quarantine counts all."""
    import paho.mqtt.client as mqtt
    from fastapi.testclient import TestClient

    from tests.twin.test_api import Env
    from twin.api import create_app
    from twin.config import Config
    from twin.ingest import IngestPipeline

    db = f"q{time.time_ns() % 10**9}"
    max_bytes = 64 * 1024
    cfg = Config.model_validate({
        "line": {"id": db},
        "influx": {"url": influxd.url, "database": db, "flush_interval_s": 0.1},
        "spool": {"dir": str(tmp_path / "spool"), "fsync": "never"},
        "quarantine": {"dir": str(tmp_path / "quarantine"), "max_bytes": max_bytes},
        "opcua": {"enabled": False},
        "mqtt": {"url": mosquitto.url, "client_id": f"ingest-{db}", "topics": [f"pilotline/{db}/#"]},
    })
    pipe = IngestPipeline(cfg)
    await pipe.start()
    n_bad = 1500  # ~2 KB each: ~45 x the budget
    try:
        for _ in range(200):
            if pipe.mqtt.state.connected:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # SUBACK
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{db}")
        pub.max_inflight_messages_set(1000)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.loop_start()
        infos = [pub.publish(f"pilotline/{db}/formation/CH-01/telemetry",
                             b"\x00not json #%07d " % i + b"z" * 2000, qos=1) for i in range(n_bad)]
        for info in infos:
            await asyncio.to_thread(info.wait_for_publish, 10)
        pub.loop_stop()
        pub.disconnect()
        deadline = time.monotonic() + 60
        while pipe.stats()["counts"]["rejected"] < n_bad and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert pipe.stats()["counts"]["rejected"] == n_bad
        assert bytes_on_disk(tmp_path / "quarantine") <= max_bytes

        env = Env(tmp_path / "api")
        env.ctx.quarantine = pipe.quarantine
        env.client = TestClient(create_app(env.ctx))
        body = env.client.get("/api/quarantine", params={"limit": 5}, headers=env.h("viewer")).json()
        assert body["counts"] == {"malformed_json": n_bad}
        last = body["entries"][-1]
        raw = last.get("raw") or base64.b64decode(last["raw_base64"]).decode(errors="replace")
        assert f"#{n_bad - 1:07d}" in raw, "the newest bad payload is kept"
        usage = body["usage"]  # the API says how full the quarantine is and what rotation dropped
        assert usage["max_bytes"] == max_bytes and usage["bytes"] <= max_bytes
        assert usage["dropped"]["entries"] > 0 and usage["dropped"]["by_reason"].get("malformed_json", 0) > 0
    finally:
        await pipe.stop()
