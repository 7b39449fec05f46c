"""The durable spool: replay after a crash, torn tails cut, bounded size policies, cursor semantics (hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin.store.spool import Spool, SpoolFull


def payload(i: int, n: int = 3) -> bytes:
    return b"".join(f"m,k=v value={i}.{j} {i * 1000 + j}\n".encode() for j in range(n))


def drain(sp: Spool, max_lines: int = 7) -> list[bytes]:
    out: list[bytes] = []
    while (b := sp.read_batch(max_lines)) is not None:
        out.extend(b.payloads)
        sp.confirm(b)
    return out


def test_replay_after_reopen_and_only_unconfirmed(tmp_path: Path) -> None:
    sp = Spool(tmp_path, segment_bytes=4096)
    for i in range(100):
        sp.append(payload(i), 3)
    first = sp.read_batch(30)
    assert first is not None and first.lines == 30
    sp.confirm(first)
    sp.close()  # (a kill -9 leaves the same files: appends are written with os.write)
    sp2 = Spool(tmp_path, segment_bytes=4096)
    assert sp2.depth_lines == 300 - 30
    rest = drain(sp2)
    assert rest == [payload(i) for i in range(10, 100)]
    assert sp2.depth_lines == 0 and sp2.stats().segments == 1


def test_unconfirmed_batch_is_sent_again_after_restart(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.append(payload(1), 3)
    b = sp.read_batch(10)
    assert b is not None  # read but never confirmed: the database write did not succeed
    sp.close()
    assert drain(Spool(tmp_path)) == [payload(1)]


def test_torn_tail_is_cut_and_earlier_frames_kept(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    for i in range(5):
        sp.append(payload(i), 3)
    sp.close()
    seg = sorted(tmp_path.glob("seg-*.spl"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])  # a crash in the middle of the last append
    sp2 = Spool(tmp_path)
    assert sp2.stats().truncated_bytes > 0
    assert drain(sp2) == [payload(i) for i in range(4)]
    sp2.append(payload(9), 3)  # appending after the repair works and is readable
    assert drain(sp2) == [payload(9)]


def test_corrupt_byte_in_tail_is_detected_by_crc(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.append(payload(1), 3)
    sp.append(payload(2), 3)
    sp.close()
    seg = sorted(tmp_path.glob("seg-*.spl"))[-1]
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0xFF
    seg.write_bytes(bytes(data))
    assert drain(Spool(tmp_path)) == [payload(1)]


def test_block_policy_refuses_without_losing(tmp_path: Path) -> None:
    sp = Spool(tmp_path, fsync="never", segment_bytes=4096, max_bytes=65536, when_full="block")
    n = 0
    with pytest.raises(SpoolFull, match="block"):
        while True:
            sp.append(payload(n, 20), 20)
            n += 1
    assert sp.stats().full and sp.stats().dropped_lines == 0
    got = drain(sp, 1000)
    assert got == [payload(i, 20) for i in range(n)]
    sp.append(payload(0, 20), 20)  # room again


def test_drop_oldest_policy_counts_what_it_drops(tmp_path: Path) -> None:
    sp = Spool(tmp_path, fsync="never", segment_bytes=4096, max_bytes=65536, when_full="drop_oldest")
    for i in range(2000):
        sp.append(payload(i, 5), 5)
    st_ = sp.stats()
    assert st_.dropped_lines > 0 and sp.size_bytes <= 65536
    got = drain(sp, 1000)
    assert len(got) * 5 + st_.dropped_lines == 2000 * 5
    assert got[-1] == payload(1999, 5)  # the newest are kept


def test_reject_new_policy(tmp_path: Path) -> None:
    sp = Spool(tmp_path, fsync="never", segment_bytes=4096, max_bytes=65536, when_full="reject_new")
    with pytest.raises(SpoolFull):
        for i in range(10_000):
            sp.append(payload(i, 20), 20)
    assert sp.stats().rejected_lines == 20


def test_stats_show_depth_and_age_of_the_oldest_unsent_frame(tmp_path: Path) -> None:
    import time

    sp = Spool(tmp_path, fsync="never")
    assert sp.stats().depth_lines == 0 and sp.stats().oldest_age_s == 0
    sp.append(payload(1), 3)
    time.sleep(0.3)
    sp.append(payload(2), 3)
    s = sp.stats()
    assert s.depth_lines == 6 and s.depth_bytes > 0 and s.oldest_age_s >= 0.3
    b = sp.read_batch(3)  # the first frame only
    assert b is not None and b.lines == 3
    sp.confirm(b)
    assert sp.stats().depth_lines == 3 and sp.stats().oldest_age_s < 0.3  # now the younger frame is the oldest
    sp.close()
    again = Spool(tmp_path, fsync="never")  # after a restart the age still comes from the frame itself
    assert again.stats().depth_lines == 3 and 0 < again.stats().oldest_age_s < 0.3 + 5


ops = st.lists(st.one_of(st.tuples(st.just("append"), st.integers(1, 40)),
                         st.tuples(st.just("send"), st.integers(1, 60)),
                         st.tuples(st.just("fail"), st.integers(1, 60)),
                         st.just(("crash", 0))), max_size=60)


@given(ops)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_appended_frame_is_delivered_at_least_once_in_order(tmp_path_factory: pytest.TempPathFactory,
                                                                  script: list[tuple[str, int]]) -> None:
    d = tmp_path_factory.mktemp("spool")
    sp = Spool(d, segment_bytes=1024, fsync="never")
    appended: list[bytes] = []
    delivered: list[bytes] = []
    k = 0
    for op, n in script:
        if op == "append":
            p = payload(k, n)
            k += 1
            sp.append(p, n)
            appended.append(p)
        elif op == "send":
            b = sp.read_batch(n)
            if b:
                delivered.extend(b.payloads)
                sp.confirm(b)
        elif op == "fail":
            if sp.read_batch(n):
                sp.rewind()
        else:
            sp.close()
            sp = Spool(d, segment_bytes=1024, fsync="never")
    delivered.extend(drain(sp))
    assert delivered == appended  # exactly once here (no crash between write and confirm), in order
